"""The IPVS backend: the kernel's table over generic netlink, through pyroute2's AsyncIPVS.

Owns everything pyroute2-specific (pinned at 0.9.7; it is untyped, so ``Any`` stays in this
module): opening the socket, turning our ops into full netlink objects, turning dumps into a
normalised KernelTable (rules in forwarding/base.py), mapping NetlinkError to BackendError, a
deadline on every netlink call, and bounded retry of a failed op re-verified by a dump. It
knows nothing about configs, health or what the table should hold.

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

pyroute2 0.9.7 problems handled here (../shared/docs/real-ipvs.md lists the first ones):
- ``set`` resets every field left out (a weight-only dest set turns masq into route and zeroes
  thresholds; a service set without flags drops persistence): ops always send full objects;
- ``service("update")`` / ``dest("update")`` map to DEL_SERVICE / DEL_DEST: never used;
- ``from_message()`` short keys are wrong for flags, timeout, fwd_method, thresholds: dumps are
  read by the long attribute names only (IPVS_SVC_ATTR_FLAGS, IPVS_DEST_ATTR_FWD_METHOD, ...);
- IPv6 services need an explicit netmask (the prefix length travels in the IPv4-address
  attribute as a host-order u32, e.g. "128.0.0.0" on little-endian); fwmark services need af
  and netmask explicitly; the service key of a dest request is built from our ServiceKey, never
  from a dumped message (``dump_key`` of a from_message object misses the short keys);
- the default flags mask is 0xFFFF: we send 0xFFFFFFFF so an edit owns every flag bit;
- Found here: generic-netlink family lookup failing (no ip_vs) is logged by pyroute2 on the
  *root* logger at error level unless the socket's ``module_err_level`` is lowered, which we do
  (usable() says why instead);
- Found here: a request cancelled by a deadline leaves its late answer queued on the socket;
  after any deadline, cancellation or socket error the socket is closed and a fresh one is
  opened on next use;
- Found here: a value that does not fit its attribute (weight or threshold >= 2**32, port >
  65535) makes pyroute2's encoder log a traceback at ERROR level and raise struct.error (not
  NetlinkError): ranges are checked before sending and refused as BackendError(EINVAL). The
  kernel itself answers ERANGE for a weight above INT_MAX and for l-threshold > u-threshold;
- Found here: ``AsyncIPVS.close()`` must be called (the transport is per thread and is not
  released by garbage collection without a ResourceWarning).

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
import socket
import struct
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar

from pyroute2 import AsyncIPVS, IPVSDest, IPVSService
from pyroute2.netlink.exceptions import NetlinkError

from ldirectord.config.model import Family, Method, Protocol
from ldirectord.errors import BackendError
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
    ServiceSpec,
    VirtualEntry,
    sched_flag_bits,
    sched_flag_names,
)
from ldirectord.forwarding.dryrun import command_for

log = logging.getLogger(__name__)
T = TypeVar("T")

# Kernel constants (include/uapi/linux/ip_vs.h).
F_PERSISTENT, F_HASHED, F_ONEPACKET = 0x1, 0x2, 0x4
_FWD_MASK, _FWD_LOCAL = 0x7, 1
_FWD = {Method.MASQ: 0, Method.IPIP: 2, Method.GATE: 3}
_FWD_BACK = {v: k for k, v in _FWD.items()}
_PROTO = {Protocol.TCP: socket.IPPROTO_TCP, Protocol.UDP: socket.IPPROTO_UDP}
_PROTO_BACK = {v: k for k, v in _PROTO.items()}
_AF = {Family.INET: socket.AF_INET, Family.INET6: socket.AF_INET6}
_AF_BACK = {v: k for k, v in _AF.items()}
#: Errors worth resending the same op for; other refusals are retried only as a different op.
_RETRY_SAME = frozenset(
    {errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ENOBUFS, errno.ENOMEM, errno.ETIMEDOUT, None}
)


def _encode_netmask(family: Family, netmask: str) -> str:
    if family is Family.INET:
        return netmask
    # The kernel reads an IPv6 prefix length as a host-order u32 from this attribute.
    return socket.inet_ntoa(struct.pack("=I", int(netmask)))


def _decode_netmask(family: Family, raw: str) -> str:
    if family is Family.INET:
        return raw
    return str(struct.unpack("=I", socket.inet_aton(raw))[0])


def _default_netmask(family: Family) -> str:
    return "128" if family is Family.INET6 else "255.255.255.255"


@dataclass(frozen=True, slots=True)
class _Call:
    """One netlink request: pyroute2 method ("service"/"dest"), command, objects."""

    kind: str
    command: str
    service: Any
    dest: Any = None


async def connect_ipvs() -> Any:
    """A pyroute2 AsyncIPVS socket bound to the IPVS generic-netlink family."""
    sock = AsyncIPVS()
    sock.module_err_level = "debug"  # pyroute2 would log a missing family on the root logger
    try:
        await sock.setup_endpoint()
    except BaseException:
        sock.close()
        raise
    return sock


class IpvsBackend:
    """The Backend protocol over the kernel's IPVS (needs CAP_NET_ADMIN and ip_vs).

    Deadlines: ``call_timeout`` per netlink request; ``apply_deadline`` for a whole apply
    (retries and re-verifying dumps included) and ``dump_deadline`` for a whole dump, both
    below the engine's own per-call deadlines so our error, not a cancellation, reaches it.
    ``connect`` makes the socket (tests pass a fake; the default is connect_ipvs).
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
        connect: Callable[[], Awaitable[Any]] = connect_ipvs,
    ) -> None:
        self._call_timeout = call_timeout
        self._apply_deadline = apply_deadline
        self._dump_deadline = dump_deadline
        self._attempts = max(1, attempts)
        self._retry_delay = retry_delay
        self._connect = connect
        self._sock: Any = None
        self._lock = asyncio.Lock()
        #: Method last applied per dest, to name what the kernel reports as "Local".
        self._methods: dict[tuple[ServiceKey, DestKey], Method] = {}

    # --- Backend protocol ------------------------------------------------------------------

    async def dump(self) -> KernelTable:
        async with self._lock:
            return await self._within(self._dump_deadline, self._dump(), None, "dump")

    async def apply(self, op: Op) -> None:
        async with self._lock:
            await self._within(self._apply_deadline, self._apply(op), op, command_for(op))

    async def close(self) -> None:
        async with self._lock:
            self._drop_socket()

    async def usable(self) -> str | None:
        """None when this backend works here (a dump succeeds), else why not."""
        try:
            await self.dump()
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

    async def _call(self, call: _Call, op: Op | None) -> list[Any]:
        """One request under its deadline; errors become BackendError (socket reset on IO ones)."""
        what = command_for(op) if op is not None else f"{call.kind} {call.command}"
        # A dump is one request answered by one message per entry: with 10,000 reals (and a
        # slow guest kernel) it takes longer than a single change, so it gets the dump deadline.
        limit = self._dump_deadline if call.command == "dump" else self._call_timeout
        try:
            async with asyncio.timeout(limit):
                if self._sock is None:
                    self._sock = await self._connect()
                if call.kind == "service":
                    result = await self._sock.service(call.command, service=call.service)
                else:
                    result = await self._sock.dest(
                        call.command, service=call.service, dest=call.dest
                    )
        except NetlinkError as exc:
            code = int(exc.code)
            if call.command == "dump" or code not in _KERNEL_ANSWERS:
                self._drop_socket()
            raise BackendError(f"{what}: {os.strerror(code)}", op=op, errno=code) from exc
        except TimeoutError as exc:
            self._drop_socket()
            msg = f"{what}: netlink did not answer within {limit} s"
            raise BackendError(msg, op=op, errno=errno.ETIMEDOUT) from exc
        except OSError as exc:
            self._drop_socket()
            raise BackendError(f"{what}: {exc.strerror or exc}", op=op, errno=exc.errno) from exc
        except asyncio.CancelledError:
            self._drop_socket()  # its answer may still arrive: never reuse this socket
            raise
        return list(result)

    # --- dump ------------------------------------------------------------------------------

    async def _dump(self) -> KernelTable:
        services: dict[ServiceKey, VirtualEntry] = {}
        for msg in await self._call(_Call("service", "dump", None), None):
            spec = _parse_service(_attrs(msg, "IPVS_CMD_ATTR_SERVICE"))
            if spec is None:
                continue  # a protocol we do not manage (e.g. SCTP): not part of our table
            try:
                dmsgs = await self._call(_Call("dest", "dump", _service_key_obj(spec.key)), None)
            except BackendError as exc:
                if exc.errno == errno.ESRCH:
                    continue  # deleted between the two requests: it is not in the table
                raise
            dests: dict[DestKey, Dest] = {}
            for dmsg in dmsgs:
                attrs = _attrs(dmsg, "IPVS_CMD_ATTR_DEST")
                parsed = _parse_dest(attrs)
                if parsed is None:
                    continue
                key, method = parsed
                if method is None:  # Local: the kernel forgot the method we asked for
                    method = self._methods.get((spec.key, key), Method.GATE)
                dests[key] = _dest_from_attrs(key, method, attrs)
            services[spec.key] = VirtualEntry(spec, MappingProxyType(dests))
        return KernelTable(MappingProxyType(services))

    # --- apply -----------------------------------------------------------------------------

    async def _apply(self, op: Op) -> None:
        """Send op; on failure look at the table and converge, at most ``attempts`` sends."""
        _validate(op)
        current: Op = op
        failure: BackendError | None = None
        for attempt in range(1, self._attempts + 1):
            try:
                await self._call(_request(current), op)
            except BackendError as exc:
                failure = exc
            else:
                self._remember(current)
                return
            if attempt == self._attempts:
                break
            await asyncio.sleep(self._retry_delay * attempt)
            try:
                table = await self._dump()
            except BackendError as exc:
                log.debug("re-verifying %s failed: %s", command_for(op), exc)
                continue  # the next attempt resends the same op
            follow = _converge(op, table)
            if follow is None:
                log.info("%s failed (%s) but the table already holds it", command_for(op), failure)
                self._remember(op)
                return
            if follow == current and failure.errno not in _RETRY_SAME:
                break  # the kernel refuses this op for good: no point in sending it again
            log.info("retrying %s as %s after: %s", command_for(op), command_for(follow), failure)
            current = follow
        assert failure is not None
        # str(failure) already ends in " (errno N)", which BackendError appends again
        message = str(failure).removesuffix(f" (errno {failure.errno})")
        raise BackendError(message, op=op, errno=failure.errno) from failure

    def _remember(self, op: Op) -> None:
        if isinstance(op, AddDest | EditDest):
            self._methods[(op.service, op.dest.key)] = op.dest.method
        elif isinstance(op, DeleteDest):
            self._methods.pop((op.service, op.dest), None)
        elif isinstance(op, DeleteService):
            for key in [k for k in self._methods if k[0] == op.key]:
                del self._methods[key]


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


# --- pyroute2 objects: the only place that knows their field names ---------------------------


def _service_key_obj(key: ServiceKey) -> Any:
    if key.fwmark is not None:
        netmask = _encode_netmask(key.family, _default_netmask(key.family))
        return IPVSService(af=_AF[key.family], fwmark=key.fwmark, netmask=netmask)
    return IPVSService(
        af=_AF[key.family], protocol=_PROTO[key.protocol], addr=key.address, port=key.port
    )


def _service_obj(spec: ServiceSpec) -> Any:
    """The full service: every field, so a set never falls back to a pyroute2 default."""
    key = spec.key
    flags = sched_flag_bits(spec.sched_flags)
    flags |= F_PERSISTENT if spec.persistent is not None else 0
    flags |= F_ONEPACKET if spec.ops else 0
    fields: dict[str, Any] = {
        "af": _AF[key.family],
        "sched_name": spec.scheduler,
        "flags": {"flags": flags, "mask": 0xFFFFFFFF},
        "timeout": spec.persistent or 0,
        "netmask": _encode_netmask(key.family, spec.netmask),
    }
    if key.fwmark is not None:
        fields["fwmark"] = key.fwmark
    else:
        fields.update(protocol=_PROTO[key.protocol], addr=key.address, port=key.port)
    return IPVSService(**fields)


def _dest_obj(dest: Dest) -> Any:
    return IPVSDest(
        addr=dest.key.address,
        port=dest.key.port,
        fwd_method=_FWD[dest.method],
        weight=dest.weight,
        u_thresh=dest.upper,
        l_thresh=dest.lower,
        tun_type=0,
        tun_port=0,
        tun_flags=0,
    )


_U16, _U32 = 0xFFFF, 0xFFFFFFFF


def _validate(op: Op) -> None:
    """Refuse what the netlink attributes cannot carry, as the kernel refuses bad values
    (BackendError, EINVAL), before anything is sent: pyroute2 would log a traceback and raise
    struct.error, OSError or ValueError from deep inside its encoder."""
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


def _request(op: Op) -> _Call:
    if isinstance(op, AddService):
        return _Call("service", "add", _service_obj(op.spec))
    if isinstance(op, EditService):
        return _Call("service", "set", _service_obj(op.spec))
    if isinstance(op, DeleteService):
        return _Call("service", "del", _service_key_obj(op.key))
    if isinstance(op, AddDest):
        return _Call("dest", "add", _service_key_obj(op.service), _dest_obj(op.dest))
    if isinstance(op, EditDest):
        return _Call("dest", "set", _service_key_obj(op.service), _dest_obj(op.dest))
    target = IPVSDest(addr=op.dest.address, port=op.dest.port)
    return _Call("dest", "del", _service_key_obj(op.service), target)


def _attrs(msg: Any, nla: str) -> Mapping[str, Any]:
    """The long-named attributes of a dumped service or dest (never from_message's short keys)."""
    inner = msg.get_attr(nla)
    if inner is None:
        return {}
    return {name: value for name, value in inner["attrs"]}


def _parse_service(a: Mapping[str, Any]) -> ServiceSpec | None:
    family = _AF_BACK.get(a.get("IPVS_SVC_ATTR_AF", -1))
    if family is None:
        return None
    fwmark = int(a.get("IPVS_SVC_ATTR_FWMARK", 0))
    if fwmark:
        key = ServiceKey(Protocol.FWM, family, None, 0, fwmark)
    else:
        protocol = _PROTO_BACK.get(a.get("IPVS_SVC_ATTR_PROTOCOL", -1))
        if protocol is None:
            return None
        address = ipaddress.ip_address(a["IPVS_SVC_ATTR_ADDR"]).compressed
        key = ServiceKey(protocol, family, address, int(a["IPVS_SVC_ATTR_PORT"]))
    scheduler = str(a.get("IPVS_SVC_ATTR_SCHED_NAME", ""))
    flags = int((a.get("IPVS_SVC_ATTR_FLAGS") or {}).get("flags", 0)) & ~F_HASHED
    persistent = int(a.get("IPVS_SVC_ATTR_TIMEOUT", 0)) if flags & F_PERSISTENT else None
    netmask = _default_netmask(family)
    if persistent is not None and "IPVS_SVC_ATTR_NETMASK" in a:
        netmask = _decode_netmask(family, a["IPVS_SVC_ATTR_NETMASK"])
    return ServiceSpec(
        key=key,
        scheduler=scheduler,
        persistent=persistent,
        netmask=netmask,
        sched_flags=sched_flag_names(scheduler, flags),
        ops=bool(flags & F_ONEPACKET),
    )


def _parse_dest(a: Mapping[str, Any]) -> tuple[DestKey, Method | None] | None:
    """The dest's key and method (None for "Local"); None for a forwarding we cannot name."""
    if "IPVS_DEST_ATTR_ADDR" not in a:
        return None
    key = DestKey(
        ipaddress.ip_address(a["IPVS_DEST_ATTR_ADDR"]).compressed, int(a["IPVS_DEST_ATTR_PORT"])
    )
    fwd = int(a.get("IPVS_DEST_ATTR_FWD_METHOD", 0)) & _FWD_MASK
    if fwd == _FWD_LOCAL:
        return key, None
    method = _FWD_BACK.get(fwd)
    return None if method is None else (key, method)


def _dest_from_attrs(key: DestKey, method: Method, a: Mapping[str, Any]) -> Dest:
    return Dest(
        key=key,
        method=method,
        weight=int(a.get("IPVS_DEST_ATTR_WEIGHT", 0)),
        upper=int(a.get("IPVS_DEST_ATTR_U_THRESH", 0)),
        lower=int(a.get("IPVS_DEST_ATTR_L_THRESH", 0)),
    )


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
