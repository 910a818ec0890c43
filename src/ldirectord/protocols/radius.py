"""RADIUS Access-Request / reply codec (RFC 2865, Message-Authenticator from RFC 3579).

Owns the bytes of ldirectord's radius check: an Access-Request carrying User-Name,
User-Password (hidden with the shared secret and the request authenticator, RFC 2865 §5.2),
NAS-IP-Address (as Authen::Radius adds it) and a Message-Authenticator (HMAC-MD5; servers
that require it since the 2024 "Blast-RADIUS" fixes accept us, older ones ignore it), and the
verification of a reply: identifier, length, Response Authenticator (MD5 over the reply with
the request authenticator and the secret) and, when present, the reply's Message-Authenticator.

Pure: bytes in, bytes or values out; no IO, no randomness of its own (the caller passes the
identifier and the 16-byte request authenticator).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct
from dataclasses import dataclass
from enum import IntEnum


class Code(IntEnum):
    ACCESS_REQUEST = 1
    ACCESS_ACCEPT = 2
    ACCESS_REJECT = 3
    ACCOUNTING_REQUEST = 4
    ACCOUNTING_RESPONSE = 5
    ACCESS_CHALLENGE = 11


USER_NAME = 1
USER_PASSWORD = 2
NAS_IP_ADDRESS = 4
REPLY_MESSAGE = 18
MESSAGE_AUTHENTICATOR = 80

HEADER = struct.Struct("!BBH16s")
MAX_PACKET = 4096
MAX_PASSWORD = 128


class RadiusError(ValueError):
    """A reply that is not a valid answer to our request (malformed or forged)."""


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    identifier: int
    attributes: tuple[tuple[int, bytes], ...]

    def first(self, attr_type: int) -> bytes | None:
        return next((value for t, value in self.attributes if t == attr_type), None)


def _attribute(attr_type: int, value: bytes) -> bytes:
    if len(value) > 253:
        raise ValueError(f"attribute {attr_type} longer than 253 bytes")
    return struct.pack("!BB", attr_type, len(value) + 2) + value


def hide_password(password: bytes, secret: bytes, authenticator: bytes) -> bytes:
    """User-Password hiding (RFC 2865 §5.2): pad to 16, XOR with chained MD5 blocks."""
    if len(password) > MAX_PASSWORD:
        raise ValueError(f"password longer than {MAX_PASSWORD} bytes")
    padded = password + b"\0" * (-len(password) % 16 or (16 if not password else 0))
    out = bytearray()
    previous = authenticator
    for i in range(0, len(padded), 16):
        key = hashlib.md5(secret + previous).digest()
        block = bytes(a ^ b for a, b in zip(padded[i : i + 16], key, strict=True))
        out += block
        previous = block
    return bytes(out)


def encode_access_request(
    *,
    identifier: int,
    authenticator: bytes,
    secret: bytes,
    user_name: bytes,
    password: bytes,
    nas_ip: str | None = None,
) -> bytes:
    """An Access-Request with a valid Message-Authenticator."""
    if len(authenticator) != 16:
        raise ValueError("the request authenticator is 16 bytes")
    attrs = _attribute(USER_NAME, user_name)
    attrs += _attribute(USER_PASSWORD, hide_password(password, secret, authenticator))
    if nas_ip is not None:
        address = ipaddress.ip_address(nas_ip)
        if address.version == 4:
            attrs += _attribute(NAS_IP_ADDRESS, address.packed)
    attrs += _attribute(MESSAGE_AUTHENTICATOR, bytes(16))
    length = HEADER.size + len(attrs)
    packet = HEADER.pack(Code.ACCESS_REQUEST, identifier & 0xFF, length, authenticator) + attrs
    mac = hmac.new(secret, packet, hashlib.md5).digest()
    return packet[:-16] + mac


def parse_attributes(data: bytes) -> tuple[tuple[int, bytes], ...]:
    attrs: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise RadiusError("truncated attribute header")
        attr_type, attr_len = data[pos], data[pos + 1]
        if attr_len < 2 or pos + attr_len > len(data):
            raise RadiusError(f"bad length {attr_len} of attribute {attr_type}")
        attrs.append((attr_type, data[pos + 2 : pos + attr_len]))
        pos += attr_len
    return tuple(attrs)


def peek_identifier(data: bytes) -> int | None:
    """The identifier of a datagram (None when it is too short to be RADIUS)."""
    return data[1] if len(data) >= HEADER.size else None


def decode_reply(data: bytes, *, identifier: int, authenticator: bytes, secret: bytes) -> Reply:
    """Verify and decode the reply to our request; RadiusError if it is not a valid one."""
    if len(data) < HEADER.size:
        raise RadiusError(f"reply of {len(data)} bytes is shorter than a RADIUS header")
    code, ident, length, response_auth = HEADER.unpack_from(data)
    if ident != identifier:
        raise RadiusError(f"reply identifier {ident} is not ours ({identifier})")
    if length < HEADER.size or length > len(data) or length > MAX_PACKET:
        raise RadiusError(f"reply length field {length} does not fit the {len(data)}-byte packet")
    packet = data[:length]  # octets beyond Length are padding (RFC 2865 §3)
    body = packet[HEADER.size :]
    expected = hashlib.md5(packet[:4] + authenticator + body + secret).digest()
    if not hmac.compare_digest(expected, response_auth):
        raise RadiusError("bad response authenticator (wrong shared secret?)")
    attrs = parse_attributes(body)
    _verify_message_authenticator(packet, attrs, authenticator, secret)
    return Reply(code, ident, attrs)


def _verify_message_authenticator(
    packet: bytes, attrs: tuple[tuple[int, bytes], ...], authenticator: bytes, secret: bytes
) -> None:
    if not any(t == MESSAGE_AUTHENTICATOR for t, _ in attrs):
        return
    # HMAC over the reply with the request authenticator and the MA value zeroed
    zeroed = bytearray(packet[:4] + authenticator + packet[HEADER.size :])
    pos, found = HEADER.size, b""
    while pos < len(zeroed):
        attr_type, attr_len = zeroed[pos], zeroed[pos + 1]
        if attr_type == MESSAGE_AUTHENTICATOR:
            if attr_len != 18:
                raise RadiusError("Message-Authenticator of the wrong length")
            found = bytes(zeroed[pos + 2 : pos + 18])
            zeroed[pos + 2 : pos + 18] = bytes(16)
        pos += attr_len
    mac = hmac.new(secret, bytes(zeroed), hashlib.md5).digest()
    if not hmac.compare_digest(mac, found):
        raise RadiusError("bad Message-Authenticator in the reply")
