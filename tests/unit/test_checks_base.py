"""Pure parts of the checks: deadlines, reason mapping, guarded(), the registry, HTTP/ICMP codecs."""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl

import pytest

from ldirectord.checks import (
    KIND_CHECKS,
    SERVICE_CHECKS,
    _net,
    check_for,
    http,
    ping,
    run,
    simpletcp,
    static,
)
from ldirectord.checks.base import (
    CheckFailed,
    CheckTarget,
    Outcome,
    Reason,
    guarded,
    reason_for,
    set_phase,
    target_for,
)
from ldirectord.config.model import (
    CheckSpec,
    CheckType,
    Family,
    Method,
    Protocol,
    RealServer,
    Service,
    VirtualService,
)
from tests.helpers import check_target

# --- deadlines -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "service", "protocol", "expected"),
    [
        (CheckType.NEGOTIATE, Service.HTTP, Protocol.TCP, 30.0),
        (CheckType.NEGOTIATE, Service.SIMPLETCP, Protocol.TCP, 30.0),
        (CheckType.NEGOTIATE, Service.LDAP, Protocol.TCP, 5.0),
        (CheckType.NEGOTIATE, Service.RADIUS, Protocol.UDP, 5.0),
        (CheckType.CONNECT, Service.HTTP, Protocol.TCP, 5.0),
        (CheckType.CONNECT, Service.DNS, Protocol.UDP, 15.0),  # a ping: CT x checkcount
        (CheckType.PING, Service.NONE, Protocol.TCP, 15.0),
        (CheckType.EXTERNAL, Service.NONE, Protocol.TCP, 5.0),
    ],
)
def test_deadline(kind: CheckType, service: Service, protocol: Protocol, expected: float) -> None:
    target = check_target(
        service, 80, kind=kind, protocol=protocol, checktimeout=5, negotiatetimeout=30,
        checkcount=3,
    )  # fmt: skip
    assert target.deadline == expected


def test_target_for_ipv6_and_fwmark() -> None:
    spec = CheckSpec(service=Service.HTTP, checktype=CheckType.COMBINED, combined_n=2)
    v6 = VirtualService(
        Family.INET6, Protocol.TCP, "2001:db8::1", 80, None, "[2001:db8::1]:80", check=spec,
        reals=(RealServer("2001:db8::2", 0, Method.GATE),),
    )  # fmt: skip
    target = target_for(v6, v6.reals[0])
    assert target.kind is CheckType.NEGOTIATE
    assert target.host == "2001:db8::2" and target.host_for_url == "[2001:db8::2]"
    assert target.port == 80  # real port 0 → the service's port
    assert target.external_args == ("[2001:db8::1]", "80", "[2001:db8::2]", "0")
    fwm = VirtualService(Family.INET, Protocol.FWM, None, 0, 7, "7", check=spec)
    assert target_for(fwm, RealServer("10.0.0.2", 80, Method.GATE)).external_args[:2] == ("7", "0")


# --- exceptions → reasons, guarded ---------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (TimeoutError(), Reason.TIMEOUT),
        (ssl.SSLError(1, "bad"), Reason.TLS),
        (socket.gaierror(socket.EAI_NONAME, "x"), Reason.RESOLVE),
        (ConnectionRefusedError(), Reason.REFUSED),
        (ConnectionResetError(), Reason.RESET),
        (BrokenPipeError(), Reason.RESET),
        (asyncio.IncompleteReadError(b"", 5), Reason.CLOSED),
        (OSError(errno.EHOSTUNREACH, "x"), Reason.UNREACHABLE),
        (OSError(errno.ENETUNREACH, "x"), Reason.UNREACHABLE),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "x"), Reason.PROTOCOL),
        (KeyError("x"), Reason.INTERNAL),
    ],
)
def test_reason_for(exc: BaseException, reason: Reason) -> None:
    assert reason_for(exc) is reason


TARGET = check_target(Service.HTTP, 80, negotiatetimeout=0.2)


@pytest.mark.asyncio
async def test_guarded_timeout_names_the_phase() -> None:
    async def slow(target: CheckTarget) -> Outcome:
        set_phase("tls handshake")
        await asyncio.sleep(10)
        return Outcome.ok()

    outcome = await guarded(slow, TARGET)
    assert outcome.reason is Reason.TIMEOUT
    assert outcome.detail == "no answer within 0.2 s (tls handshake)"
    assert 0.15 < outcome.duration < 1.2


@pytest.mark.asyncio
async def test_guarded_maps_checkfailed_and_exceptions() -> None:
    async def mismatch(target: CheckTarget) -> Outcome:
        raise CheckFailed(Reason.NO_MATCH, "nope")

    async def refused(target: CheckTarget) -> Outcome:
        raise ConnectionRefusedError(111, "refused")

    async def bug(target: CheckTarget) -> Outcome:
        raise ZeroDivisionError

    outcome = await guarded(mismatch, TARGET)
    assert (outcome.up, outcome.reason, outcome.detail) == (False, Reason.NO_MATCH, "nope")
    assert (await guarded(refused, TARGET)).reason is Reason.REFUSED
    assert (await guarded(bug, TARGET)).reason is Reason.INTERNAL


@pytest.mark.asyncio
async def test_guarded_lets_outside_cancellation_through() -> None:
    async def slow(target: CheckTarget) -> Outcome:
        await asyncio.sleep(10)
        return Outcome.ok()

    task = asyncio.ensure_future(guarded(slow, check_target(negotiatetimeout=30)))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# --- registry ------------------------------------------------------------------------------


def test_every_kind_and_my_services_resolve() -> None:
    for kind in KIND_CHECKS:
        assert callable(check_for(check_target(kind=kind)))
    for service in SERVICE_CHECKS:
        assert callable(check_for(check_target(service)))


def test_dispatch() -> None:
    assert check_for(check_target(Service.HTTPS)) is http.check_http
    assert check_for(check_target(Service.NONE)) is static.check_none
    udp_connect = check_target(Service.DNS, kind=CheckType.CONNECT, protocol=Protocol.UDP)
    assert check_for(udp_connect) is ping.check_ping
    fwm_connect = check_target(Service.NONE, kind=CheckType.CONNECT, protocol=Protocol.FWM)
    assert check_for(fwm_connect).__name__ == "check_connect"


@pytest.mark.asyncio
async def test_static_checks() -> None:
    assert (await run(check_target(kind=CheckType.ON))).up
    off = await run(check_target(kind=CheckType.OFF))
    assert (off.up, off.reason) == (False, Reason.OFF)
    assert (await run(check_target(Service.NONE))).up


# --- HTTP: URL, request, response head, verdict --------------------------------------------


def http_target(
    service: Service, request: str, spec_request: str = "/", **kw: object
) -> CheckTarget:
    target = check_target(service, 8080, request=spec_request, **kw)  # type: ignore[arg-type]
    return CheckTarget(
        target.kind, target.service, target.family, target.protocol, target.host, target.port,
        target.spec, request, target.receive,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("service", "request_", "spec_request", "host", "url"),
    [
        (Service.HTTP, "/", "/", "10.0.0.2", "http://10.0.0.2:8080/"),
        (
            Service.HTTPS,
            "/check.html",
            "/check.html",
            "10.0.0.2",
            "https://10.0.0.2:8080/check.html",
        ),
        (Service.HTTP, "/", "/", "2001:db8::2", "http://[2001:db8::2]:8080/"),
        # virtual-level request "http://x/" is not special for http (ldirectord builds this)
        (Service.HTTP, "/http://x/", "/http://x/", "10.0.0.2", "http://10.0.0.2:8080/http://x/"),
        # http_proxy: the virtual's request is the absolute URL, minus the added "/"
        (
            Service.HTTP_PROXY,
            "/http://www.example/",
            "/http://www.example/",
            "10.0.0.2",
            "http://www.example/",
        ),
        # a per-real request containing the schema is the full URL
        (Service.HTTP, "/http://10.0.0.9/x", "/", "10.0.0.2", "http://10.0.0.9/x"),
        # a per-real request without it, even for http_proxy, is a path on the real
        (Service.HTTP_PROXY, "/status", "/", "10.0.0.2", "http://10.0.0.2:8080/status"),
    ],
)
def test_check_url(service: Service, request_: str, spec_request: str, host: str, url: str) -> None:
    assert http.check_url(http_target(service, request_, spec_request, host=host)) == url


def test_build_request() -> None:
    origin = http.build_request("GET", "http://10.0.0.2:80/a b?q=1", "vhost", via_proxy=False)
    assert origin.startswith(b"GET /a%20b?q=1 HTTP/1.1\r\nHost: vhost\r\n")
    assert origin.endswith(b"Connection: close\r\n\r\n")
    proxied = http.build_request("HEAD", "http://www.example/x", "www.example", via_proxy=True)
    assert proxied.startswith(b"HEAD http://www.example/x HTTP/1.1\r\nHost: www.example\r\n")


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://a.example/", "a.example"),
        ("http://a.example:80/", "a.example"),
        ("http://a.example:8080/", "a.example:8080"),
        ("https://a.example:443/", "a.example"),
        ("http://[2001:db8::1]:81/", "[2001:db8::1]:81"),
    ],
)
def test_url_host_header(url: str, host: str) -> None:
    assert http.url_host_header(url) == host


@pytest.mark.parametrize(
    ("host", "sni"),
    [("www.example", "www.example"), ("www.example:8443", "www.example"),
     ("10.0.0.2", None), ("[2001:db8::1]", None), ("", None)],
)  # fmt: skip
def test_sni_name(host: str, sni: str | None) -> None:
    assert http.sni_name(host) == sni


def test_parse_head() -> None:
    status, reason, headers = http.parse_head(
        b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nSet-Cookie: a\r\nSet-Cookie: b\r\nX-Bare\r\n"
    )
    assert (status, reason) == (200, "OK")
    assert headers["content-length"] == "12"
    assert headers["set-cookie"] == "a, b"
    assert http.parse_head(b"HTTP/1.0 204\r\n")[:2] == (204, "")
    with pytest.raises(CheckFailed) as info:
        http.parse_head(b"SSH-2.0-OpenSSH\r\n")
    assert info.value.reason is Reason.PROTOCOL


def test_content_length_and_chunked() -> None:
    assert http.content_length({"content-length": "5, 5"}) == 5
    assert http.content_length({}) is None
    with pytest.raises(CheckFailed):
        http.content_length({"content-length": "-1"})
    assert http.is_chunked({"transfer-encoding": "gzip, Chunked"})


@pytest.mark.parametrize(
    ("status", "body", "receive", "up", "reason"),
    [
        (200, b"hello world", "", True, Reason.OK),
        (204, b"", "", True, Reason.OK),
        (200, b"hello world", "w.rld$", True, Reason.OK),
        (200, b"hello world", "^world", False, Reason.NO_MATCH),
        (301, b"", "", False, Reason.BAD_STATUS),
        (503, b"hello", "hello", False, Reason.BAD_STATUS),
        (200, "caf\u00e9".encode(), "caf\u00e9", True, Reason.OK),  # bytes match, as Perl
    ],
)
def test_verdict(status: int, body: bytes, receive: str, up: bool, reason: Reason) -> None:
    outcome = http.verdict(http.Response(status, "R", {}, body), receive)
    assert (outcome.up, outcome.reason) == (up, reason)


def test_compile_receive_rejects_bad_regex() -> None:
    with pytest.raises(CheckFailed) as info:
        _net.compile_receive("(unclosed")
    assert info.value.reason is Reason.CONFIG


def test_tls_context_verifies_nothing() -> None:
    ctx = _net.tls_context()
    assert ctx.verify_mode is ssl.CERT_NONE
    assert ctx.check_hostname is False


# --- simpletcp, ping codecs ----------------------------------------------------------------


def test_simpletcp_request_bytes() -> None:
    assert simpletcp.request_bytes("/PING\\nQUIT\\n") == b"PING\nQUIT\n"
    assert simpletcp.request_bytes("/") == b""
    assert simpletcp.request_bytes("/a\\r\\n") == b"a\\r\n"  # only \n is translated


def test_icmp_echo_round_trip() -> None:
    packet = ping.echo_request(Family.INET, 0x1234, 7)
    assert len(packet) == 64
    assert ping.checksum(packet) == 0  # a valid checksum sums to zero
    assert ping.parse_reply(Family.INET, packet, raw=False) == (8, 0x1234, 7)
    ip_header = bytes([0x45]) + bytes(19)
    assert ping.parse_reply(Family.INET, ip_header + packet, raw=True) == (8, 0x1234, 7)
    assert ping.parse_reply(Family.INET, b"\x00", raw=False) is None
    v6 = ping.echo_request(Family.INET6, 1, 2)
    assert ping.parse_reply(Family.INET6, v6, raw=True) == (128, 1, 2)


def test_checksum_known_value() -> None:
    # RFC 1071 example words 0x0001 0xf203 0xf4f5 0xf6f7 → sum 0xddf2, checksum 0x220d
    assert ping.checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


@pytest.mark.parametrize(
    ("perl", "python"),
    [
        (r"OK\z", r"OK\Z"),
        (r"OK\Z", r"OK(?=\n?\Z)"),
        (r"a\hb", r"a[ \t]b"),
        (r"[\h\]x]+", r"[ \t\]x]+"),
        (r"(?<word>\w+) \k<word>", r"(?P<word>\w+) (?P=word)"),
        (r"(?<=a)b(?<!c)", r"(?<=a)b(?<!c)"),
        (r"\\z", r"\\z"),  # an escaped backslash followed by z
        (r"[]z]\z", r"[]z]\Z"),
        ("200 OK", "200 OK"),
    ],
)
def test_perl_regex(perl: str, python: str) -> None:
    assert _net.perl_regex(perl) == python


@pytest.mark.parametrize(
    ("receive", "body", "match"),
    [
        (r"healthy\z", b"all healthy", True),
        (r"healthy\z", b"all healthy\n", False),
        (r"healthy\Z", b"all healthy\n", True),
        (r"(?<s>ok) \k<s>", b"ok ok", True),
        (r"up\hnow", b"up\tnow", True),
    ],
)
def test_perl_receive_semantics(receive: str, body: bytes, match: bool) -> None:
    assert (_net.compile_receive(receive).search(body) is not None) is match
