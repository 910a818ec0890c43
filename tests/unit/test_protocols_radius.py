"""The RADIUS codec against RFC 2865 §7.1's worked example and round trips of our own."""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ldirectord.protocols import radius as codec

# RFC 2865 §7.1: user "nemo", password "arctangent", secret "xyzzy5461"
RFC_SECRET = b"xyzzy5461"
RFC_AUTH = bytes.fromhex("0f403f9473978057bd83d5cb98f4227a")
RFC_HIDDEN = bytes.fromhex("0dbe708d93d413ce3196e43f782a0aee")
RFC_ACCEPT = bytes.fromhex(
    "0200002686fe220e7624ba2a1005f6bf9b55e0b20606000000010f06000000000e06c0a80103"
)


def test_password_hiding_matches_rfc_example() -> None:
    assert codec.hide_password(b"arctangent", RFC_SECRET, RFC_AUTH) == RFC_HIDDEN


def test_rfc_access_accept_verifies() -> None:
    reply = codec.decode_reply(RFC_ACCEPT, identifier=0, authenticator=RFC_AUTH, secret=RFC_SECRET)
    assert reply.code == codec.Code.ACCESS_ACCEPT
    assert reply.attributes[0] == (6, b"\x00\x00\x00\x01")  # Service-Type = Login-User


def test_reply_with_wrong_secret_is_rejected() -> None:
    with pytest.raises(codec.RadiusError, match="authenticator"):
        codec.decode_reply(RFC_ACCEPT, identifier=0, authenticator=RFC_AUTH, secret=b"other")


def test_reply_to_another_identifier_is_rejected() -> None:
    with pytest.raises(codec.RadiusError, match="identifier"):
        codec.decode_reply(RFC_ACCEPT, identifier=1, authenticator=RFC_AUTH, secret=RFC_SECRET)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x02\x00\x00",
        RFC_ACCEPT[:20] + b"\x06",
        RFC_ACCEPT[:2] + b"\x00\x10" + RFC_ACCEPT[4:],
    ],
)
def test_malformed_replies_are_rejected(data: bytes) -> None:
    with pytest.raises(codec.RadiusError):
        codec.decode_reply(data, identifier=0, authenticator=RFC_AUTH, secret=RFC_SECRET)


def test_padding_after_length_is_ignored() -> None:
    reply = codec.decode_reply(
        RFC_ACCEPT + b"\x00" * 7, identifier=0, authenticator=RFC_AUTH, secret=RFC_SECRET
    )
    assert reply.code == codec.Code.ACCESS_ACCEPT


def _unhide(hidden: bytes, secret: bytes, authenticator: bytes) -> bytes:
    out, previous = b"", authenticator
    for i in range(0, len(hidden), 16):
        key = hashlib.md5(secret + previous).digest()
        out += bytes(a ^ b for a, b in zip(hidden[i : i + 16], key, strict=True))
        previous = hidden[i : i + 16]
    return out.rstrip(b"\0")


def test_access_request_layout_and_message_authenticator() -> None:
    packet = codec.encode_access_request(
        identifier=7, authenticator=RFC_AUTH, secret=RFC_SECRET, user_name=b"nemo",
        password=b"arctangent", nas_ip="192.168.1.16",
    )  # fmt: skip
    code, ident, length, auth = struct.unpack_from("!BBH16s", packet)
    assert (code, ident, length, auth) == (1, 7, len(packet), RFC_AUTH)
    attrs = dict(codec.parse_attributes(packet[20:]))
    assert attrs[codec.USER_NAME] == b"nemo"
    assert attrs[codec.USER_PASSWORD] == RFC_HIDDEN
    assert attrs[codec.NAS_IP_ADDRESS] == bytes([192, 168, 1, 16])
    mac = attrs[codec.MESSAGE_AUTHENTICATOR]
    zeroed = packet[:-16] + bytes(16)  # Message-Authenticator is the last attribute
    assert hmac.compare_digest(mac, hmac.new(RFC_SECRET, zeroed, hashlib.md5).digest())


def test_ipv6_nas_address_is_left_out() -> None:
    packet = codec.encode_access_request(
        identifier=1, authenticator=RFC_AUTH, secret=b"s", user_name=b"u", password=b"p",
        nas_ip="::1",
    )  # fmt: skip
    assert codec.NAS_IP_ADDRESS not in dict(codec.parse_attributes(packet[20:]))


def test_too_long_password_is_refused() -> None:
    with pytest.raises(ValueError, match="128"):
        codec.hide_password(b"x" * 129, b"s", RFC_AUTH)


@given(
    password=st.binary(max_size=128).map(lambda b: b.rstrip(b"\0")),
    secret=st.binary(min_size=1, max_size=40),
    authenticator=st.binary(min_size=16, max_size=16),
)
def test_hiding_round_trips(password: bytes, secret: bytes, authenticator: bytes) -> None:
    hidden = codec.hide_password(password, secret, authenticator)
    assert len(hidden) % 16 == 0 and len(hidden) >= 16
    assert _unhide(hidden, secret, authenticator) == password


def _signed_reply(code: int, ident: int, attrs: bytes, request_auth: bytes, secret: bytes) -> bytes:
    header = struct.pack("!BBH", code, ident, 20 + len(attrs))
    return header + hashlib.md5(header + request_auth + attrs + secret).digest() + attrs


def test_reply_message_authenticator_is_checked() -> None:
    secret, ident = b"testing123", 9
    attrs = bytes([codec.MESSAGE_AUTHENTICATOR, 18]) + bytes(16)
    header = struct.pack("!BBH", 2, ident, 20 + len(attrs))
    good_mac = hmac.new(secret, header + RFC_AUTH + attrs, hashlib.md5).digest()
    good = bytes([codec.MESSAGE_AUTHENTICATOR, 18]) + good_mac
    reply = _signed_reply(2, ident, good, RFC_AUTH, secret)
    assert codec.decode_reply(reply, identifier=ident, authenticator=RFC_AUTH, secret=secret)
    bad = _signed_reply(
        2, ident, bytes([codec.MESSAGE_AUTHENTICATOR, 18]) + b"x" * 16, RFC_AUTH, secret
    )
    with pytest.raises(codec.RadiusError, match="Message-Authenticator"):
        codec.decode_reply(bad, identifier=ident, authenticator=RFC_AUTH, secret=secret)
