"""The IPVS generic-netlink messages, sans IO: our ops to request bodies, dumps to our types.

Pure (no sockets, no state). Attribute numbers and layouts are the kernel's
(include/uapi/linux/ip_vs.h, net/netfilter/ipvs/ip_vs_ctl.c); the contract tests in
tests/kernel/guest/test_ipvs_contract.py pin every field against ``ipvsadm -Ln``.

Encoding rules the kernel imposes:
- NEW/SET of a service must carry the whole entry (scheduler, flags with mask, timeout,
  netmask) and NEW/SET of a dest the whole dest (method, weight, both thresholds), else EINVAL:
  we always send full objects, so an edit never falls back to a default;
- the flags mask is 0xFFFFFFFF so an edit owns every flag bit;
- addresses travel as 16 bytes (union nf_inet_addr), ports big-endian, everything else in
  host order; the IPv4 netmask is the mask's 4 bytes, the IPv6 "netmask" is the prefix length
  as a host-order u32;
- a dest request names its service by key only (nested service attribute).

Decoding normalises as forwarding/base.py describes: the kernel-internal "hashed" flag (0x2) is
masked; a non-persistent service gets the family's default netmask (``ipvsadm -Ln`` shows
none); scheduler flag bits are named per scheduler; a protocol we do not manage (SCTP) and a
forwarding method we cannot name are skipped; "Local" forwarding decodes as method None.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass

from ldirectord.config.model import Family, Method, Protocol
from ldirectord.forwarding import netlink as nl
from ldirectord.forwarding.base import (
    AddDest,
    AddService,
    DeleteDest,
    DeleteService,
    Dest,
    DestKey,
    EditDest,
    EditService,
    Op,
    ServiceKey,
    ServiceSpec,
    default_netmask,
    sched_flag_bits,
    sched_flag_names,
)

GENL_NAME, GENL_VERSION = "IPVS", 1

# enum of IPVS_CMD_*
CMD_NEW_SERVICE, CMD_SET_SERVICE, CMD_DEL_SERVICE, CMD_GET_SERVICE = 1, 2, 3, 4
CMD_NEW_DEST, CMD_SET_DEST, CMD_DEL_DEST, CMD_GET_DEST = 5, 6, 7, 8
CMD_GET_INFO = 15
#: command -> (kind, verb), for logs and for the scripted transport of the adapter tests
COMMANDS = {
    CMD_NEW_SERVICE: ("service", "add"),
    CMD_SET_SERVICE: ("service", "set"),
    CMD_DEL_SERVICE: ("service", "del"),
    CMD_GET_SERVICE: ("service", "dump"),
    CMD_NEW_DEST: ("dest", "add"),
    CMD_SET_DEST: ("dest", "set"),
    CMD_DEL_DEST: ("dest", "del"),
    CMD_GET_DEST: ("dest", "dump"),
    CMD_GET_INFO: ("info", "get"),
}

CMD_ATTR_SERVICE, CMD_ATTR_DEST = 1, 2
(SVC_AF, SVC_PROTOCOL, SVC_ADDR, SVC_PORT, SVC_FWMARK, SVC_SCHED_NAME, SVC_FLAGS, SVC_TIMEOUT,
 SVC_NETMASK) = range(1, 10)  # fmt: skip
(DEST_ADDR, DEST_PORT, DEST_FWD_METHOD, DEST_WEIGHT, DEST_U_THRESH, DEST_L_THRESH) = range(1, 7)
DEST_ADDR_FAMILY = 11

F_PERSISTENT, F_HASHED, F_ONEPACKET = 0x1, 0x2, 0x4
FWD_MASK, FWD_LOCAL = 0x7, 1
FWD = {Method.MASQ: 0, Method.IPIP: 2, Method.GATE: 3}
_FWD_BACK = {v: k for k, v in FWD.items()}
PROTO = {Protocol.TCP: socket.IPPROTO_TCP, Protocol.UDP: socket.IPPROTO_UDP}
_PROTO_BACK = {v: k for k, v in PROTO.items()}
AF: dict[Family, int] = {Family.INET: socket.AF_INET, Family.INET6: socket.AF_INET6}
_AF_BACK = {v: k for k, v in AF.items()}
_FLAGS = struct.Struct("=II")


def _addr(address: str) -> bytes:
    return ipaddress.ip_address(address).packed.ljust(16, b"\0")


def _netmask(family: Family, netmask: str) -> bytes:
    if family is Family.INET:
        return nl.attr(SVC_NETMASK, socket.inet_aton(netmask))
    # The kernel reads an IPv6 prefix length as a host-order u32 from this attribute.
    return nl.u32(SVC_NETMASK, int(netmask))


# --- encoding -----------------------------------------------------------------------------


def _key_attrs(key: ServiceKey) -> bytes:
    af = nl.u16(SVC_AF, AF[key.family])
    if key.fwmark is not None:
        return af + nl.u32(SVC_FWMARK, key.fwmark)
    assert key.address is not None
    return (
        af
        + nl.u16(SVC_PROTOCOL, PROTO[key.protocol])
        + nl.attr(SVC_ADDR, _addr(key.address))
        + nl.be16(SVC_PORT, key.port)
    )


def service_key(key: ServiceKey) -> bytes:
    """The nested service attribute naming a service (dest requests, deletes, dest dumps)."""
    return nl.nested(CMD_ATTR_SERVICE, _key_attrs(key))


def service(spec: ServiceSpec) -> bytes:
    """The nested service attribute with the whole entry (NEW/SET_SERVICE)."""
    flags = sched_flag_bits(spec.sched_flags)
    flags |= F_PERSISTENT if spec.persistent is not None else 0
    flags |= F_ONEPACKET if spec.ops else 0
    return nl.nested(
        CMD_ATTR_SERVICE,
        _key_attrs(spec.key),
        nl.string(SVC_SCHED_NAME, spec.scheduler),
        nl.attr(SVC_FLAGS, _FLAGS.pack(flags, 0xFFFFFFFF)),
        nl.u32(SVC_TIMEOUT, spec.persistent or 0),
        _netmask(spec.key.family, spec.netmask),
    )


def _dest_key_attrs(key: DestKey) -> bytes:
    return nl.attr(DEST_ADDR, _addr(key.address)) + nl.be16(DEST_PORT, key.port)


def dest(value: Dest) -> bytes:
    """The nested dest attribute with the whole dest (NEW/SET_DEST)."""
    return nl.nested(
        CMD_ATTR_DEST,
        _dest_key_attrs(value.key),
        nl.u32(DEST_FWD_METHOD, FWD[value.method]),
        nl.u32(DEST_WEIGHT, value.weight),
        nl.u32(DEST_U_THRESH, value.upper),
        nl.u32(DEST_L_THRESH, value.lower),
    )


def encode(op: Op, key_cache: dict[ServiceKey, bytes] | None = None) -> tuple[int, bytes]:
    """(command, request body) for op. ``key_cache`` keeps encoded service keys across the
    many dest ops of one service (a 10,000-real fill encodes its key once)."""
    if isinstance(op, AddService):
        return CMD_NEW_SERVICE, service(op.spec)
    if isinstance(op, EditService):
        return CMD_SET_SERVICE, service(op.spec)
    if isinstance(op, DeleteService):
        return CMD_DEL_SERVICE, service_key(op.key)
    key = key_cache.get(op.service) if key_cache is not None else None
    if key is None:
        key = service_key(op.service)
        if key_cache is not None:
            key_cache[op.service] = key
    if isinstance(op, AddDest):
        return CMD_NEW_DEST, key + dest(op.dest)
    if isinstance(op, EditDest):
        return CMD_SET_DEST, key + dest(op.dest)
    assert isinstance(op, DeleteDest)
    return CMD_DEL_DEST, key + nl.nested(CMD_ATTR_DEST, _dest_key_attrs(op.dest))


# --- decoding -----------------------------------------------------------------------------


def _address(family: Family, raw: memoryview) -> str:
    if family is Family.INET:
        return socket.inet_ntop(socket.AF_INET, bytes(raw[:4]))
    return ipaddress.IPv6Address(bytes(raw[:16])).compressed


def decode_service(body: memoryview) -> ServiceSpec | None:
    """A GET_SERVICE dump message's service, or None for one we do not manage."""
    outer = nl.parse_attrs(body).get(CMD_ATTR_SERVICE)
    if outer is None:
        return None
    a = nl.parse_attrs(outer)
    if SVC_AF not in a:
        return None
    family = _AF_BACK.get(nl.get_u16(a[SVC_AF]))
    if family is None:
        return None
    fwmark = nl.get_u32(a[SVC_FWMARK]) if SVC_FWMARK in a else 0
    if fwmark:
        key = ServiceKey(Protocol.FWM, family, None, 0, fwmark)
    else:
        protocol = _PROTO_BACK.get(nl.get_u16(a[SVC_PROTOCOL])) if SVC_PROTOCOL in a else None
        if protocol is None or SVC_ADDR not in a or SVC_PORT not in a:
            return None
        key = ServiceKey(protocol, family, _address(family, a[SVC_ADDR]), nl.get_be16(a[SVC_PORT]))
    scheduler = nl.get_string(a[SVC_SCHED_NAME]) if SVC_SCHED_NAME in a else ""
    flags = _FLAGS.unpack_from(a[SVC_FLAGS])[0] & ~F_HASHED if SVC_FLAGS in a else 0
    persistent = None
    netmask = default_netmask(family)
    if flags & F_PERSISTENT:
        persistent = nl.get_u32(a[SVC_TIMEOUT]) if SVC_TIMEOUT in a else 0
        if SVC_NETMASK in a:
            raw = a[SVC_NETMASK]
            if family is Family.INET:
                netmask = socket.inet_ntoa(bytes(raw[:4]))
            else:
                netmask = str(nl.get_u32(raw))
    return ServiceSpec(
        key=key,
        scheduler=scheduler,
        persistent=persistent,
        netmask=netmask,
        sched_flags=sched_flag_names(scheduler, flags),
        ops=bool(flags & F_ONEPACKET),
    )


@dataclass(frozen=True, slots=True)
class DumpedDest:
    """A dest as dumped: method None when the kernel reports it as "Local"."""

    key: DestKey
    method: Method | None
    weight: int
    upper: int
    lower: int

    def with_method(self, method: Method) -> Dest:
        return Dest(self.key, method, self.weight, self.upper, self.lower)


def decode_dest(body: memoryview, family: Family) -> DumpedDest | None:
    """A GET_DEST dump message's dest (family: its service's, unless the dest says its own),
    or None for one we cannot name."""
    outer = nl.parse_attrs(body).get(CMD_ATTR_DEST)
    if outer is None:
        return None
    a = nl.parse_attrs(outer)
    if DEST_ADDR not in a or DEST_PORT not in a:
        return None
    if DEST_ADDR_FAMILY in a:
        own = _AF_BACK.get(nl.get_u16(a[DEST_ADDR_FAMILY]))
        if own is None:
            return None
        family = own
    fwd = (nl.get_u32(a[DEST_FWD_METHOD]) if DEST_FWD_METHOD in a else 0) & FWD_MASK
    method = None if fwd == FWD_LOCAL else _FWD_BACK.get(fwd)
    if method is None and fwd != FWD_LOCAL:
        return None

    def number(kind: int) -> int:
        return nl.get_u32(a[kind]) if kind in a else 0

    return DumpedDest(
        key=DestKey(_address(family, a[DEST_ADDR]), nl.get_be16(a[DEST_PORT])),
        method=method,
        weight=number(DEST_WEIGHT),
        upper=number(DEST_U_THRESH),
        lower=number(DEST_L_THRESH),
    )
