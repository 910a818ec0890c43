"""The IPVS backend: the kernel's table over generic netlink, with our own wire codec.

Owns the IPVS socket (forwarding/nlsocket.py), turning our ops into full requests and dumps
into a normalised KernelTable (forwarding/ipvs_wire.py; rules in forwarding/base.py), mapping
kernel refusals to BackendError, a deadline on every request, bounded retry of failed ops
re-verified by a dump, and batches: ``apply_batch`` sends many ops in few datagrams. It knows
nothing about configs, health or what the table should hold.

Why not pyroute2 (the adapter used pyroute2 0.9.7's AsyncIPVS until the benchmarks of issue 9):
in the one-CPU UML guest, filling 10,000 reals took 61-78 s against keepalived's 1.5 s (one
round trip per change through pyroute2's Python stack, with syscalls 5-20x dearer than on a
host), and dumping 10,000 reals decoded every message into nla objects until the guest's OOM
killer ended the daemon (BENCHMARKS.md, reload section, before this change). pyroute2 has no
batch request and no lean dump; the messages we need are a dozen fixed attributes, so they are
encoded and decoded here, pinned by the kernel contract tests. What pyroute2 taught us stays
true of the kernel and is handled in ipvs_wire.py: a set must carry the whole object (else
defaults creep in), the "hashed" flag bit is internal, an IPv6 service's netmask is a prefix
length in host order, the flags mask must be 0xFFFFFFFF.

Normalisation beyond base.py's rules:
- the service flags' internal "hashed" bit (0x2) is masked; 0x1 is persistence (timeout in
  ``persistent``), 0x4 one-packet scheduling (``ops``); 0x8/0x10/0x20 are the scheduler flags,
  named as ``ipvsadm -Ln`` names them: sh-fallback/sh-port for sh, mh-fallback/mh-port for mh,
  flag-1/flag-2/flag-3 for any other scheduler (see sched_flag_names);
- ``netmask`` only means something with persistence: a non-persistent service dumps the
  family's default, as ``ipvsadm -Ln`` shows none;
- a real the kernel treats as local (forwarding "Local", e.g. a fallback on 127.0.0.1) is
  dumped with the method last applied to it by this backend, else gate; ldirectord likewise
  keeps the previous line's method for a Local line.

Socket rules: after any deadline, cancellation or socket error the socket is closed and a
fresh one is opened on next use (a late answer must never be read as a new one's); values that
do not fit their attribute (weight or threshold >= 2**32, port > 65535) are refused before
anything is sent as BackendError(EINVAL). The kernel itself answers ERANGE for a weight above
INT_MAX and for l-threshold > u-threshold.

Kernel facts the contract tests pinned (Debian's UML 6.1): the ESRCH/ENOENT split (missing
service / missing dest or unknown scheduler); a real on a local address keeps its method (no
"Local" shown for 127.0.0.1 on 6.1); no ``twos`` scheduler before 6.2; ipvsadm rewrites a
gate/ipip real's port to the service's port, the kernel does not (engine/desired.py does it).

Apply semantics: an add that meets an existing entry becomes an edit; a delete of what is gone
is done; an edit of what is gone is refused (ESRCH/ENOENT), never turned into an add.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from types import MappingProxyType
from typing import Protocol as TypingProtocol
from typing import TypeVar

from ldirectord.config.model import Family, Method
from ldirectord.errors import BackendError
from ldirectord.forwarding import ipvs_wire as wire
from ldirectord.forwarding.base import (
    AddDest,
    AddService,
    DeleteDest,
    DeleteService,
    Dest,
    DestKey,
    EditDest,
    EditService,
    KernelTable,
    Op,
    ServiceKey,
    VirtualEntry,
    sched_flag_bits,
    sched_flag_names,
)
from ldirectord.forwarding.dryrun import command_for
from ldirectord.forwarding.nlsocket import GenlSocket, NetlinkError

__all__ = ["IpvsBackend", "Transport", "connect_ipvs", "sched_flag_bits", "sched_flag_names"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Errors worth resending the same op for; other refusals are retried only as a different op.
_RETRY_SAME = frozenset(
    {errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ENOBUFS, errno.ENOMEM, errno.ETIMEDOUT, 0}
)
#: Time allowed per op of a batch, on top of the per-call and per-apply deadlines.
PER_OP_S = 0.005


class Transport(TypingProtocol):
    """What the backend needs of a netlink socket (nlsocket.GenlSocket; tests script one)."""

    async def call(self, cmd: int, body: bytes, *, dump: bool = False) -> list[memoryview]: ...

    async def batch(self, requests: Sequence[tuple[int, bytes]]) -> list[int]: ...

    def close(self) -> None: ...


async def connect_ipvs() -> Transport:
    """A generic-netlink socket bound to the IPVS family."""
    return await GenlSocket.open(wire.GENL_NAME, wire.GENL_VERSION)


class IpvsBackend:
    """The Backend protocol over the kernel's IPVS (needs CAP_NET_ADMIN and ip_vs).

    Deadlines: ``call_timeout`` per netlink request (plus PER_OP_S per op of a batch);
    ``apply_deadline`` for a whole apply (retries and re-verifying dumps included, plus
    PER_OP_S per op of a batch) and ``dump_deadline`` for a whole dump, all below the engine's
    own deadlines so our error, not a cancellation, reaches it. ``connect`` makes the socket
    (tests pass a scripted one; the default is connect_ipvs).
    """

    name = "ipvs"

    def __init__(
        self,
        *,
        call_timeout: float = 2.0,
        apply_deadline: float = 4.0,
        dump_deadline: float = 30.0,
        attempts: int = 3,
        retry_delay: float = 0.05,
        connect: Callable[[], Awaitable[Transport]] = connect_ipvs,
    ) -> None:
        self._call_timeout = call_timeout
        self._apply_deadline = apply_deadline
        self._dump_deadline = dump_deadline
        self._attempts = max(1, attempts)
        self._retry_delay = retry_delay
        self._connect = connect
        self._sock: Transport | None = None
        self._lock = asyncio.Lock()
        self._keys: dict[ServiceKey, bytes] = {}  # encoded service keys (ipvs_wire.encode)
        #: Method last applied per dest, to name what the kernel reports as "Local".
        self._methods: dict[tuple[ServiceKey, DestKey], Method] = {}

    # --- Backend protocol ------------------------------------------------------------------

    async def dump(self) -> KernelTable:
        async with self._lock:
            return await self._within(self._dump_deadline, self._dump(), None, "dump")

    async def apply(self, op: Op) -> None:
        (failure,) = await self.apply_batch([op])
        if failure is not None:
            raise failure

    async def apply_batch(self, ops: Sequence[Op]) -> list[BackendError | None]:
        """Apply ops in order, batched on the wire; each one's error (None: done). A failed op
        does not stop the later ones (the kernel handles each request of a datagram)."""
        results: list[BackendError | None] = [None] * len(ops)
        todo: list[int] = []
        for index, op in enumerate(ops):
            try:
                _validate(op)
            except BackendError as exc:
                results[index] = exc
            else:
                todo.append(index)
        if not todo:
            return results
        deadline = self._apply_deadline + PER_OP_S * len(todo)
        done: set[int] = set()
        async with self._lock:
            try:
                async with asyncio.timeout(deadline):
                    await self._apply(ops, todo, results, done)
            except TimeoutError:
                self._drop_socket()
                for index in todo:
                    if results[index] is None and index not in done:
                        msg = f"{command_for(ops[index])}: not done within {deadline:.1f} s"
                        results[index] = BackendError(msg, op=ops[index], errno=errno.ETIMEDOUT)
        return results

    async def close(self) -> None:
        async with self._lock:
            self._drop_socket()

    async def usable(self) -> str | None:
        """None when this backend works here, else why not. Asks the kernel for IPVS_CMD_GET_INFO
        (its version): it needs ip_vs and CAP_NET_ADMIN like every IPVS command, without
        dumping a table that may hold 10,000 reals (start-up dumps it right after)."""
        try:
            async with self._lock:
                await self._call(wire.CMD_GET_INFO, b"", what="info", dump=False)
        except BackendError as exc:
            return _why(exc)
        return None

    # --- netlink ---------------------------------------------------------------------------

    async def _within(self, deadline: float, work: Awaitable[T], op: Op | None, what: str) -> T:
        try:
            async with asyncio.timeout(deadline):
                return await work
        except TimeoutError as exc:
            self._drop_socket()
            msg = f"{what}: not done within {deadline} s"
            raise BackendError(msg, op=op, errno=errno.ETIMEDOUT) from exc

    def _drop_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(Exception):
                sock.close()

    async def _socket(self) -> Transport:
        if self._sock is None:
            self._sock = await self._connect()
        return self._sock

    async def _on_socket(self, limit: float, work: Callable[[Transport], Awaitable[T]]) -> T:
        """work(socket) within ``limit`` seconds. After anything but a kernel's answer (a
        deadline, a socket error, a cancellation: a late answer may still arrive) the socket is
        dropped and a fresh one opened on next use; the exception goes on to the caller."""
        try:
            async with asyncio.timeout(limit):
                return await work(await self._socket())
        except NetlinkError:
            raise  # the kernel answered: the caller decides
        except BaseException:
            self._drop_socket()
            raise

    async def _call(self, cmd: int, body: bytes, *, what: str, dump: bool) -> list[memoryview]:
        """One request under its deadline; errors become BackendError (socket reset on IO ones).
        A dump is one request answered by one message per entry: with 10,000 reals (and a
        slow guest kernel) it takes longer than a single change, so it gets the dump deadline."""
        limit = self._dump_deadline if dump else self._call_timeout
        try:
            return await self._on_socket(limit, lambda sock: sock.call(cmd, body, dump=dump))
        except NetlinkError as exc:
            if dump or exc.code not in _KERNEL_ANSWERS:
                self._drop_socket()
            raise BackendError(f"{what}: {os.strerror(exc.code)}", errno=exc.code) from exc
        except TimeoutError as exc:
            msg = f"{what}: netlink did not answer within {limit} s"
            raise BackendError(msg, errno=errno.ETIMEDOUT) from exc
        except OSError as exc:
            raise BackendError(f"{what}: {exc.strerror or exc}", errno=exc.errno) from exc

    async def _send(self, ops: Sequence[Op]) -> list[int]:
        """Send ops as one batch; each one's errno (0: done). A socket failure or a deadline
        fails every op of the batch with its errno: which ones the kernel applied is then
        unknown, and the caller's re-verifying dump finds out."""
        requests = [wire.encode(op, self._keys) for op in ops]
        limit = self._call_timeout + PER_OP_S * len(ops)
        try:
            return await self._on_socket(limit, lambda sock: sock.batch(requests))
        except NetlinkError as exc:  # opening the socket: e.g. no ip_vs
            self._drop_socket()
            code = exc.code
        except TimeoutError:
            code = errno.ETIMEDOUT
        except OSError as exc:
            code = exc.errno or errno.EIO
        return [code] * len(ops)

    # --- dump ------------------------------------------------------------------------------

    async def _dump(self) -> KernelTable:
        services: dict[ServiceKey, VirtualEntry] = {}
        for body in await self._call(wire.CMD_GET_SERVICE, b"", what="service dump", dump=True):
            spec = wire.decode_service(body)
            if spec is None:
                continue  # a protocol we do not manage (e.g. SCTP): not part of our table
            try:
                bodies = await self._call(
                    wire.CMD_GET_DEST, wire.service_key(spec.key), what="dest dump", dump=True
                )
            except BackendError as exc:
                if exc.errno == errno.ESRCH:
                    continue  # deleted between the two requests: it is not in the table
                raise
            dests: dict[DestKey, Dest] = {}
            for dbody in bodies:
                dumped = wire.decode_dest(dbody, spec.key.family)
                if dumped is None:
                    continue
                method = dumped.method
                if method is None:  # Local: the kernel forgot the method we asked for
                    method = self._methods.get((spec.key, dumped.key), Method.GATE)
                dests[dumped.key] = dumped.with_method(method)
            services[spec.key] = VirtualEntry(spec, MappingProxyType(dests))
        return KernelTable(MappingProxyType(services))

    # --- apply -----------------------------------------------------------------------------

    async def _apply(
        self,
        ops: Sequence[Op],
        todo: list[int],
        results: list[BackendError | None],
        done: set[int],
    ) -> None:
        """Send ops[todo]; on failures look at the table once and converge each failed op, at
        most ``attempts`` sends of any op. Final refusals go to results, successes to done."""
        current = {index: ops[index] for index in todo}
        failures: dict[int, int] = {}
        for attempt in range(1, self._attempts + 1):
            indexes = list(current)
            codes = await self._send([current[i] for i in indexes])
            failures = {}
            for index, code in zip(indexes, codes, strict=True):
                if code:
                    failures[index] = code
                else:
                    self._remember(current[index])
                    done.add(index)
            if not failures or attempt == self._attempts:
                break
            await asyncio.sleep(self._retry_delay * attempt)
            try:
                table = await self._dump()
            except BackendError as exc:
                log.debug("re-verifying %d failed op(s) failed: %s", len(failures), exc)
                current = {i: current[i] for i in failures}  # the next attempt resends them
                continue
            sent, current = current, {}
            for index, code in failures.items():
                op = ops[index]
                follow = _converge(op, table)
                if follow is None:
                    log.info("%s failed (%s) but the table already holds it",
                             command_for(op), _text(code))  # fmt: skip
                    self._remember(op)
                    done.add(index)
                elif follow == sent[index] and code not in _RETRY_SAME:
                    results[index] = _failure(op, code)  # refused for good: not sent again
                else:
                    if follow != op:
                        log.info("retrying %s as %s after: %s",
                                 command_for(op), command_for(follow), _text(code))  # fmt: skip
                    current[index] = follow
            failures = {i: c for i, c in failures.items() if i in current}
            if not current:
                break
        for index, code in failures.items():
            results[index] = _failure(ops[index], code)

    def _remember(self, op: Op) -> None:
        if isinstance(op, AddDest | EditDest):
            self._methods[(op.service, op.dest.key)] = op.dest.method
        elif isinstance(op, DeleteDest):
            self._methods.pop((op.service, op.dest), None)
        elif isinstance(op, DeleteService):
            self._keys.pop(op.key, None)
            for key in [k for k in self._methods if k[0] == op.key]:
                del self._methods[key]


def _text(code: int) -> str:
    return f"{os.strerror(code)} (errno {code})"


def _failure(op: Op, code: int) -> BackendError:
    return BackendError(f"{command_for(op)}: {os.strerror(code)}", op=op, errno=code)


#: NetlinkError codes that are the kernel's verdict on a request (the socket is fine).
_KERNEL_ANSWERS = frozenset(
    {errno.EEXIST, errno.ENOENT, errno.ESRCH, errno.EINVAL, errno.EPERM, errno.EBUSY,
     errno.EAFNOSUPPORT, errno.EOPNOTSUPP, errno.ENOMEM}
)  # fmt: skip


def _converge(op: Op, table: KernelTable) -> Op | None:
    """What still has to be sent for a failed op's effect to hold in table (None: it holds).

    Adds become edits when the entry exists with other values; deletes of what is gone are
    done. Edits are never turned into adds: something that vanished (an admin deleting a real
    to kill persistence, readdquiescent=no) stays gone until the reconciler decides otherwise.
    """
    if isinstance(op, AddService | EditService):
        entry = table.services.get(op.spec.key)
        if entry is None:
            return op
        return None if entry.spec == op.spec else EditService(op.spec)
    if isinstance(op, DeleteService):
        return op if op.key in table.services else None
    if isinstance(op, AddDest | EditDest):
        entry = table.services.get(op.service)
        have = entry.dests.get(op.dest.key) if entry is not None else None
        if have is None:
            return op
        return None if have == op.dest else EditDest(op.service, op.dest)
    entry = table.services.get(op.service)
    return op if entry is not None and op.dest in entry.dests else None


_U16, _U32 = 0xFFFF, 0xFFFFFFFF


def _validate(op: Op) -> None:
    """Refuse what the netlink attributes cannot carry, as the kernel refuses bad values
    (BackendError, EINVAL), before anything is sent (struct.error from deep inside the encoder,
    or a value silently cut to its attribute's width, would be worse)."""
    try:
        _check_values(op)
    except ValueError as exc:
        raise BackendError(f"{command_for(op)}: {exc}", op=op, errno=errno.EINVAL) from None


def _check_values(op: Op) -> None:
    key = (
        op.spec.key
        if isinstance(op, AddService | EditService)
        else (op.key if isinstance(op, DeleteService) else op.service)
    )
    numbers = [("port", key.port, _U16), ("fwmark", key.fwmark or 0, _U32)]
    if key.address is not None:
        _check_address(key.address, key.family)
    if isinstance(op, AddService | EditService):
        numbers.append(("persistence timeout", op.spec.persistent or 0, _U32))
        sched_flag_bits(op.spec.sched_flags)
        if op.spec.key.family is Family.INET:
            ipaddress.IPv4Address(op.spec.netmask)
        elif not 1 <= int(op.spec.netmask) <= 128:
            raise ValueError(f"IPv6 netmask {op.spec.netmask} out of range 1..128")
    if isinstance(op, AddDest | EditDest):
        d = op.dest
        _check_address(d.key.address, None)
        numbers += [
            ("real port", d.key.port, _U16),
            ("weight", d.weight, _U32),
            ("u-threshold", d.upper, _U32),
            ("l-threshold", d.lower, _U32),
        ]
    if isinstance(op, DeleteDest):
        _check_address(op.dest.address, None)
        numbers.append(("real port", op.dest.port, _U16))
    for name, value, limit in numbers:
        if not 0 <= value <= limit:
            raise ValueError(f"{name} {value} out of range 0..{limit}")


def _check_address(address: str, family: Family | None) -> None:
    parsed = ipaddress.ip_address(address)  # ValueError for anything but an IP literal
    if family is not None and (parsed.version == 6) != (family is Family.INET6):
        raise ValueError(f"{address} is not an {family.value} address")


# --- can we use it here? -------------------------------------------------------------------


async def usable(call_timeout: float = 2.0) -> str | None:
    """None when the IPVS backend works here, else why not (for ``--backend auto``)."""
    backend = IpvsBackend(call_timeout=call_timeout, attempts=1)
    try:
        return await backend.usable()
    finally:
        await backend.close()


def _why(exc: BackendError) -> str:
    if exc.errno in (errno.ENOENT, errno.ENOTSUP, errno.EOPNOTSUPP):
        return "IPVS is not available in this kernel (no ip_vs module: try modprobe ip_vs)"
    if exc.errno in (errno.EPERM, errno.EACCES):
        return "no permission to change IPVS (needs root or CAP_NET_ADMIN)"
    return f"IPVS netlink does not work here: {exc}"
