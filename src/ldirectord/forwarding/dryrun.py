"""The dry-run backend: an in-memory IPVS table behind the Backend protocol.

Owns the no-root mode (``--dry-run``, or ``auto`` without IPVS) and the reconciler's test double.
Every op is logged as the ipvsadm command it stands for, and impossible ops are refused as the
kernel refuses them (BackendError with the kernel's errno: EEXIST for an existing service or
destination, ESRCH for a missing service, ENOENT for a missing destination or an unknown
scheduler, EINVAL for a weight or threshold out of range), so reconciler tests are honest.

Knows nothing about configs or health. Test hooks: ``fail_next`` queues errors for the next
applies, ``delay`` makes every call slow (to exercise deadlines), ``applied`` records every op.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable, Sequence
from types import MappingProxyType

from ldirectord.config.model import Family, Method, Protocol
from ldirectord.errors import BackendError
from ldirectord.forwarding.base import (
    AddDest,
    AddService,
    DeleteService,
    Dest,
    DestKey,
    EditDest,
    EditService,
    KernelTable,
    Op,
    ServiceKey,
    ServiceSpec,
    VirtualEntry,
)

#: Schedulers of Linux 6.x IPVS.
SCHEDULERS = frozenset(
    {"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}
)
_METHOD_FLAG = {Method.GATE: "-g", Method.MASQ: "-m", Method.IPIP: "-i"}
_MAX_WEIGHT = 2**31 - 1


def _svc_args(key: ServiceKey) -> str:
    if key.fwmark is not None:
        return f"-f {key.fwmark}{' -6' if key.family is Family.INET6 else ''}"
    flag = "-u" if key.protocol is Protocol.UDP else "-t"
    return f"{flag} {key}"


def _spec_args(spec: ServiceSpec) -> str:
    text = f"{_svc_args(spec.key)}{' -o' if spec.ops else ''} -s {spec.scheduler}"
    if spec.persistent is not None:
        text += f" -p {spec.persistent} -M {spec.netmask}"
    if spec.sched_flags:
        text += f" -b {','.join(sorted(spec.sched_flags))}"
    return text


def _dest_args(key: ServiceKey, dest: Dest) -> str:
    return (
        f"{_svc_args(key)} -x {dest.upper} -y {dest.lower} -r {dest.key.render(key.family)} "
        f"{_METHOD_FLAG[dest.method]} -w {dest.weight}"
    )


def command_for(op: Op) -> str:
    """The ipvsadm command line an op stands for (for logs; never executed)."""
    if isinstance(op, AddService):
        return f"ipvsadm -A {_spec_args(op.spec)}"
    if isinstance(op, EditService):
        return f"ipvsadm -E {_spec_args(op.spec)}"
    if isinstance(op, DeleteService):
        return f"ipvsadm -D {_svc_args(op.key)}"
    if isinstance(op, AddDest):
        return f"ipvsadm -a {_dest_args(op.service, op.dest)}"
    if isinstance(op, EditDest):
        return f"ipvsadm -e {_dest_args(op.service, op.dest)}"
    return f"ipvsadm -d {_svc_args(op.service)} -r {op.dest.render(op.service.family)}"


class DryRunBackend:
    """An in-memory kernel table that logs every op and refuses what the kernel refuses."""

    name = "dryrun"

    def __init__(
        self, initial: KernelTable | None = None, log: Callable[[str], None] | None = None
    ) -> None:
        self._services: dict[ServiceKey, tuple[ServiceSpec, dict[DestKey, Dest]]] = {}
        for key, entry in (initial or KernelTable()).services.items():
            self._services[key] = (entry.spec, dict(entry.dests))
        self._log = log
        self.applied: list[Op] = []
        self.fail_next: list[BackendError] = []
        self.delay: float = 0.0
        self.closed = False

    @property
    def table(self) -> KernelTable:
        """The current table (a snapshot; later ops do not change it)."""
        return KernelTable(
            {
                key: VirtualEntry(spec, MappingProxyType(dict(dests)))
                for key, (spec, dests) in self._services.items()
            }
        )

    def entry(self, key: ServiceKey) -> VirtualEntry | None:
        """One service of the current table (a snapshot), or None."""
        found = self._services.get(key)
        if found is None:
            return None
        return VirtualEntry(found[0], MappingProxyType(dict(found[1])))

    def dest(self, service: ServiceKey, key: DestKey) -> Dest | None:
        found = self._services.get(service)
        return found[1].get(key) if found is not None else None

    async def dump(self) -> KernelTable:
        if self.delay:
            await asyncio.sleep(self.delay)
        return self.table

    async def apply(self, op: Op) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_next:
            raise self.fail_next.pop(0)
        self._apply(op)
        self.applied.append(op)
        if self._log is not None:
            self._log(f"[dry-run] {command_for(op)}")

    async def apply_batch(self, ops: Sequence[Op]) -> list[BackendError | None]:
        results: list[BackendError | None] = []
        for op in ops:
            try:
                await self.apply(op)
            except BackendError as exc:
                results.append(exc)
            else:
                results.append(None)
        return results

    async def close(self) -> None:
        self.closed = True

    def apply_sync(self, op: Op) -> None:
        """Apply an op at once, unlogged and unrecorded (the engine's mirror of the kernel)."""
        self._apply(op)

    # --- the kernel's rules ----------------------------------------------------------------

    def _service(self, op: Op, key: ServiceKey) -> dict[DestKey, Dest]:
        found = self._services.get(key)
        if found is None:
            raise BackendError(f"No such service: {key}", op=op, errno=errno.ESRCH)
        return found[1]

    @staticmethod
    def _check_spec(op: Op, spec: ServiceSpec) -> None:
        if spec.scheduler not in SCHEDULERS:
            msg = f"Scheduler not found: {spec.scheduler}"
            raise BackendError(msg, op=op, errno=errno.ENOENT)

    @staticmethod
    def _check_dest(op: Op, dest: Dest) -> None:
        if not (0 <= dest.weight <= _MAX_WEIGHT) or dest.upper < 0 or dest.lower < 0:
            raise BackendError(f"Invalid destination: {dest}", op=op, errno=errno.EINVAL)

    def _apply(self, op: Op) -> None:
        if isinstance(op, AddService):
            if op.spec.key in self._services:
                raise BackendError(f"Service exists: {op.spec.key}", op=op, errno=errno.EEXIST)
            self._check_spec(op, op.spec)
            self._services[op.spec.key] = (op.spec, {})
        elif isinstance(op, EditService):
            dests = self._service(op, op.spec.key)
            self._check_spec(op, op.spec)
            self._services[op.spec.key] = (op.spec, dests)
        elif isinstance(op, DeleteService):
            self._service(op, op.key)
            del self._services[op.key]
        elif isinstance(op, AddDest):
            dests = self._service(op, op.service)
            if op.dest.key in dests:
                raise BackendError(f"Destination exists: {op.dest.key}", op=op, errno=errno.EEXIST)
            self._check_dest(op, op.dest)
            dests[op.dest.key] = op.dest
        elif isinstance(op, EditDest):
            dests = self._service(op, op.service)
            if op.dest.key not in dests:
                raise BackendError(f"No such destination: {op.dest.key}", op=op, errno=errno.ENOENT)
            self._check_dest(op, op.dest)
            dests[op.dest.key] = op.dest
        else:
            dests = self._service(op, op.service)
            if op.dest not in dests:
                raise BackendError(f"No such destination: {op.dest}", op=op, errno=errno.ENOENT)
            del dests[op.dest]
