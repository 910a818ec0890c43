"""The SIP OPTIONS request and response parser, with byte strings only."""

from __future__ import annotations

import pytest

from ldirectord.protocols import sip as codec


def _options(**overrides: object) -> bytes:
    args: dict[str, object] = {
        "login": "ldirectord@director", "local_host": "10.0.0.1", "local_port": 5062,
        "transport": "udp", "call_id": "0123456789abcdef", "branch": "abc", "tag": "t1",
    }  # fmt: skip
    args |= overrides
    return codec.build_options(**args)  # type: ignore[arg-type]


def test_options_request_is_ldirectords() -> None:
    assert _options() == (
        b"OPTIONS sip:ldirectord@director SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKabc\r\n"
        b"Max-Forwards: 70\r\n"
        b"To: <sip:ldirectord@director>\r\n"
        b"From: <sip:ldirectord@director>;tag=t1\r\n"
        b"Call-ID: 0123456789abcdef\r\n"
        b"CSeq: 63104 OPTIONS\r\n"
        b"Contact: <sip:ldirectord@director>\r\n"
        b"Accept: application/sdp\r\n"
        b"Content-Length: 0\r\n\r\n"
    )


def test_via_over_tcp_and_ipv6() -> None:
    assert b"Via: SIP/2.0/TCP [2001:db8::1]:5062;" in _options(
        transport="tcp", local_host="2001:db8::1"
    )


def test_login_with_line_break_is_refused() -> None:
    with pytest.raises(ValueError):
        _options(login="a\r\nX-Injected: 1")


def test_parse_ok_with_compact_headers() -> None:
    response = codec.parse_response(b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP x\r\ni: abc\r\nl: 0\r\n\r\n")
    assert (response.status, response.reason) == (200, "OK")
    assert response.headers["call-id"] == "abc"
    assert response.headers["content-length"] == "0"


def test_parse_keeps_the_whole_status_line() -> None:
    response = codec.parse_response(b"SIP/2.0 486 Busy Here\r\n\r\n")
    assert (response.status, response.status_line) == (486, "SIP/2.0 486 Busy Here")


@pytest.mark.parametrize(
    "data", [b"", b"HTTP/1.1 200 OK\r\n\r\n", b"SIP/2.0 2000 OK\r\n", b"SIP/2.0\r\n", b"\xff\xfe"]
)
def test_garbage_is_not_a_response(data: bytes) -> None:
    with pytest.raises(codec.SipError):
        codec.parse_response(data)
