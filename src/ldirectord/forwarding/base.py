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

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol as TypingProtocol

from ldirectord.config.model import Family, Method, Protocol


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


# --- ops: what the reconciler emits and a backend applies, one at a time, in order ---------


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

    async def close(self) -> None: ...
