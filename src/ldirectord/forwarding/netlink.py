"""Generic netlink framing, sans IO: messages and attributes to bytes and back.

Pure functions over bytes (no sockets here; forwarding/nlsocket.py does the IO). Only what the
IPVS backend needs: request messages with a generic-netlink header and (nested) attributes,
splitting a received datagram into messages, reading attributes, and the controller's
family lookup. Layouts are the kernel's (include/uapi/linux/netlink.h, genetlink.h):

    nlmsghdr  u32 len, u16 type, u16 flags, u32 seq, u32 pid     (16 bytes, host order)
    genlmsghdr u8 cmd, u8 version, u16 reserved                   (4 bytes)
    nlattr    u16 len, u16 type, payload padded to 4 bytes

Why by hand and not pyroute2 (which the project used first): see forwarding/ipvs.py.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

# include/uapi/linux/netlink.h
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE, NLMSG_OVERRUN = 1, 2, 3, 4
NLA_F_NESTED = 0x8000
_NLA_TYPE_MASK = ~(0x8000 | 0x4000) & 0xFFFF
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_GENERIC = 16

# include/uapi/linux/genetlink.h
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2

_NLMSGHDR = struct.Struct("=IHHII")
_GENLHDR = struct.Struct("=BBH")
_NLATTR = struct.Struct("=HH")
_ERRNO = struct.Struct("=i")
HEADER_LEN = _NLMSGHDR.size + _GENLHDR.size


def _pad(n: int) -> int:
    return (n + 3) & ~3


# --- attributes ---------------------------------------------------------------------------


def attr(kind: int, payload: bytes) -> bytes:
    """One attribute, padded to 4 bytes."""
    size = _NLATTR.size + len(payload)
    return _NLATTR.pack(size, kind) + payload + b"\0" * (_pad(size) - size)


def nested(kind: int, *attrs: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(attrs))


def u16(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=H", value))


def be16(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("!H", value))


def u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=I", value))


def string(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def parse_attrs(data: bytes | memoryview) -> dict[int, memoryview]:
    """Attribute type -> payload (a view into data). Malformed tails are ignored, as the
    kernel never sends them; a repeated type keeps the last."""
    view = memoryview(data)
    found: dict[int, memoryview] = {}
    at, end = 0, len(view)
    while at + _NLATTR.size <= end:
        size, kind = _NLATTR.unpack_from(view, at)
        if size < _NLATTR.size or at + size > end:
            break
        found[kind & _NLA_TYPE_MASK] = view[at + _NLATTR.size : at + size]
        at += _pad(size)
    return found


def get_u16(view: memoryview) -> int:
    return int(struct.unpack_from("=H", view)[0])


def get_be16(view: memoryview) -> int:
    return int(struct.unpack_from("!H", view)[0])


def get_u32(view: memoryview) -> int:
    return int(struct.unpack_from("=I", view)[0])


def get_string(view: memoryview) -> str:
    return bytes(view).split(b"\0", 1)[0].decode(errors="replace")


# --- messages -----------------------------------------------------------------------------


def request(family: int, cmd: int, version: int, seq: int, body: bytes, *, dump: bool) -> bytes:
    """A request message: acknowledged (NLM_F_ACK) unless it is a dump (ended by DONE)."""
    flags = NLM_F_REQUEST | (NLM_F_DUMP if dump else NLM_F_ACK)
    size = HEADER_LEN + len(body)
    return _NLMSGHDR.pack(size, family, flags, seq, 0) + _GENLHDR.pack(cmd, version, 0) + body


_EMPTY = memoryview(b"")


@dataclass(frozen=True, slots=True)
class Message:
    """One received message. For NLMSG_ERROR ``error`` is the errno (0 is an ack); for
    NLMSG_DONE the dump's errno (usually 0); ``body`` is what follows the generic-netlink
    header of any other type."""

    kind: int
    flags: int
    seq: int
    error: int = 0
    body: memoryview = _EMPTY


def messages(data: bytes | memoryview) -> Iterator[Message]:
    """The messages in one received datagram. Raises ValueError on a truncated header."""
    view = memoryview(data)
    at, end = 0, len(view)
    while at + _NLMSGHDR.size <= end:
        size, kind, flags, seq, _pid = _NLMSGHDR.unpack_from(view, at)
        if size < _NLMSGHDR.size or at + size > end:
            raise ValueError(f"truncated netlink message ({size} bytes at {at} of {end})")
        payload = view[at + _NLMSGHDR.size : at + size]
        if kind in (NLMSG_ERROR, NLMSG_DONE):
            code = -_ERRNO.unpack_from(payload)[0] if len(payload) >= _ERRNO.size else 0
            yield Message(kind, flags, seq, error=code)
        elif kind not in (NLMSG_NOOP, NLMSG_OVERRUN):
            yield Message(kind, flags, seq, body=payload[_GENLHDR.size :])
        at += _pad(size)


def family_id(body: memoryview) -> int | None:
    found = parse_attrs(body).get(CTRL_ATTR_FAMILY_ID)
    return get_u16(found) if found is not None else None
