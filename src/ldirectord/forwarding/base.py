"""The forwarding-backend contract: the kernel table model, the ops, the Backend protocol.

Owns the normalised shape of an IPVS table (what desired.py produces, what a backend dumps)
and the op dataclasses the reconciler emits. Pure: no IO here; backends live beside it.

Normalisation rules every backend must follow when dumping:
- addresses are IP literals (IPv6 without brackets, compressed form via ipaddress);
- ``netmask`` is always filled: dotted quad for inet (default 255.255.255.255), prefix length
  as text for inet6 (default "128");
- ``persistent`` is the persistence timeout in seconds, or None when not persistent;
- ``sched_flags`` is a frozenset of ipvsadm -b names ("sh-fallback", "sh-port", "mh-fallback",
  "mh-port", "flag-1", ...); the kernel's internal "hashed" bit is never shown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol as TypingProtocol

from ldirectord.config.model import Family, Method, Protocol
from ldirectord.errors import BackendError


@dataclass(frozen=True, slots=True, order=True)
class ServiceKey:
    protocol: Protocol  # TCP, UDP or FWM
    family: Family
    address: str | None  # None for fwmark services
    port: int  # 0 for fwmark services
    fwmark: int | None = None

    def __str__(self) -> str:
        if self.fwmark is not None:
            return f"{self.fwmark}{' (IPv6)' if self.family is Family.INET6 else ''}"
        assert self.address is not None
        host = f"[{self.address}]" if self.family is Family.INET6 else self.address
        return f"{host}:{self.port}"


def default_netmask(family: Family) -> str:
    """The netmask a service without persistence has (and dumps): see the rules above."""
    return "128" if family is Family.INET6 else "255.255.255.255"


# --- scheduler flags (ipvsadm -b): the bits and the names ipvsadm -Ln shows per scheduler ----

_SCHED_BITS = (0x8, 0x10, 0x20)
_SCHED_NAMES = {
    "sh": ("sh-fallback", "sh-port", "flag-3"),
    "mh": ("mh-fallback", "mh-port", "flag-3"),
}
_GENERIC_NAMES = ("flag-1", "flag-2", "flag-3")
_NAME_BITS = {
    **{n: b for names in _SCHED_NAMES.values() for n, b in zip(names, _SCHED_BITS, strict=True)},
    **dict(zip(_GENERIC_NAMES, _SCHED_BITS, strict=True)),
}


def sched_flag_names(scheduler: str, bits: int) -> frozenset[str]:
    """The -b names ``ipvsadm -Ln`` shows for the scheduler-flag bits of a service."""
    names = _SCHED_NAMES.get(scheduler, _GENERIC_NAMES)
    return frozenset(n for n, b in zip(names, _SCHED_BITS, strict=True) if bits & b)


def sched_flag_bits(names: frozenset[str]) -> int:
    """The flag bits for -b names (any scheduler's spelling); unknown names raise ValueError."""
    bits = 0
    for name in names:
        if name not in _NAME_BITS:
            raise ValueError(f"unknown scheduler flag {name!r}")
        bits |= _NAME_BITS[name]
    return bits


def canonical_sched_flags(scheduler: str, names: frozenset[str]) -> frozenset[str]:
    """The names a dump will show for ``names`` on ``scheduler`` (any spelling accepted).

    ``schedflags=sh-port`` on an ``mh`` service dumps as ``mh-port``; without this the
    reconciler would see a difference on every pass. Unknown names are kept, so the backend
    refuses them loudly instead of this function dropping them silently.
    """
    known = frozenset(n for n in names if n in _NAME_BITS)
    return sched_flag_names(scheduler, sched_flag_bits(known)) | (names - known)


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    key: ServiceKey
    scheduler: str = "wrr"
    persistent: int | None = None
    netmask: str = "255.255.255.255"
    sched_flags: frozenset[str] = frozenset()
    ops: bool = False


@dataclass(frozen=True, slots=True, order=True)
class DestKey:
    address: str
    port: int

    def render(self, family: Family) -> str:
        host = f"[{self.address}]" if family is Family.INET6 else self.address
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Dest:
    key: DestKey
    method: Method
    weight: int = 1
    upper: int = 0  # u-threshold (ipvsadm -x)
    lower: int = 0  # l-threshold (ipvsadm -y)


@dataclass(frozen=True, slots=True)
class VirtualEntry:
    spec: ServiceSpec
    dests: Mapping[DestKey, Dest] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class KernelTable:
    """A whole IPVS table (or the part of it we care about)."""

    services: Mapping[ServiceKey, VirtualEntry] = field(default_factory=dict)


# --- ops: what the reconciler emits and a backend applies in order (in batches) -----------


@dataclass(frozen=True, slots=True)
class AddService:
    spec: ServiceSpec


@dataclass(frozen=True, slots=True)
class EditService:
    spec: ServiceSpec


@dataclass(frozen=True, slots=True)
class DeleteService:
    key: ServiceKey


@dataclass(frozen=True, slots=True)
class AddDest:
    service: ServiceKey
    dest: Dest


@dataclass(frozen=True, slots=True)
class EditDest:
    service: ServiceKey
    dest: Dest  # always the full object (weight, method, thresholds)


@dataclass(frozen=True, slots=True)
class DeleteDest:
    service: ServiceKey
    dest: DestKey


Op = AddService | EditService | DeleteService | AddDest | EditDest | DeleteDest


class Backend(TypingProtocol):
    """A kernel forwarding table we can read and change. Every call has its own deadline."""

    name: str

    async def dump(self) -> KernelTable:
        """The whole current table, normalised as described in this module's docstring."""
        ...

    async def apply(self, op: Op) -> None:
        """Apply one op; raise BackendError (with op and errno) when the kernel refuses it."""
        ...

    async def apply_batch(self, ops: Sequence[Op]) -> list[BackendError | None]:
        """Apply ops in order; each one's error (None: done). A failed op does not stop the
        later ones. Never raises BackendError (only cancellation)."""
        ...

    async def close(self) -> None: ...
