"""http / https / http_proxy checks against a real nginx, and against hostile peers."""

from __future__ import annotations

import asyncio
import time

import pytest

from ldirectord.checks import run
from ldirectord.checks.base import CheckTarget, Outcome, Reason
from ldirectord.config.model import HttpMethod, Service
from tests.helpers import cancellation_sweep, check_target, hostile, open_fds
from tests.helpers.nginx import Nginx

pytestmark = [pytest.mark.component, pytest.mark.asyncio]
DEADLINE = 1.5
MARGIN = 1.0


def http(port: int, request: str = "/", receive: str = "", **kw: object) -> CheckTarget:
    service = kw.pop("service", Service.HTTP)
    assert isinstance(service, Service)
    return check_target(
        service, port, request=request, receive=receive, negotiatetimeout=DEADLINE, **kw
    )


async def timed(target: CheckTarget) -> tuple[Outcome, float]:
    start = time.monotonic()
    outcome = await run(target)
    return outcome, time.monotonic() - start


# --- up and down against nginx -------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "receive"),
    [
        ("/", ""),
        ("/", "all is well"),
        ("/index.html", "^ldirectord test page"),
        ("/redirect", "all is well"),  # relative Location, followed as LWP does
        ("/redirect-abs", "all is well"),  # absolute Location
        ("/to-https", "all is well"),  # to https on a host name (resolved, TLS)
        ("/chunked", "chunked reply"),  # Transfer-Encoding: chunked
    ],
)
async def test_http_up(nginx: Nginx, request_: str, receive: str) -> None:
    outcome = await run(http(nginx.http_port, request_, receive))
    assert outcome.up, outcome
    assert outcome.detail == "200 OK"


async def test_https_up_with_self_signed_cert(nginx: Nginx) -> None:
    outcome = await run(http(nginx.https_port, "/", "all is well", service=Service.HTTPS))
    assert outcome.up, outcome


async def test_virtualhost_selects_the_name_based_server(nginx: Nginx) -> None:
    plain = await run(http(nginx.http_port, "/", "virtual host", virtualhost="vhost.example"))
    assert plain.up, plain
    default = await run(http(nginx.http_port, "/", "virtual host"))
    assert default.reason is Reason.NO_MATCH


async def test_virtualhost_over_https(nginx: Nginx) -> None:
    outcome = await run(
        http(
            nginx.https_port,
            "/",
            "virtual host",
            service=Service.HTTPS,
            virtualhost="vhost.example",
        )
    )
    assert outcome.up, outcome


async def test_http_proxy_fetches_the_absolute_url_through_the_real(nginx: Nginx) -> None:
    # ldirectord stores request="http://..." as "/http://..."; the check strips the "/".
    url = f"/http://127.0.0.1:{nginx.http_port}/index.html"
    outcome = await run(http(nginx.proxy_port, url, "all is well", service=Service.HTTP_PROXY))
    assert outcome.up, outcome


async def test_http_proxy_down_when_the_origin_is_down(nginx: Nginx) -> None:
    url = f"/http://127.0.0.1:{hostile.free_port()}/"
    outcome = await run(http(nginx.proxy_port, url, service=Service.HTTP_PROXY))
    assert not outcome.up
    assert outcome.reason is Reason.BAD_STATUS  # nginx answers 502


async def test_head_method(nginx: Nginx) -> None:
    outcome = await run(http(nginx.http_port, httpmethod=HttpMethod.HEAD))
    assert outcome.up, outcome


async def test_ipv6(nginx: Nginx) -> None:
    if not nginx.ipv6:
        pytest.skip("no ::1 on this host")
    outcome = await run(http(nginx.http_port, "/", "all is well", host="::1"))
    assert outcome.up, outcome


@pytest.mark.parametrize(
    ("request_", "receive", "reason", "detail"),
    [
        ("/", "not on the page", Reason.NO_MATCH, "not found"),
        ("/error", "", Reason.BAD_STATUS, "500"),
        ("/missing", "", Reason.BAD_STATUS, "404"),
        ("/loop", "", Reason.BAD_STATUS, "too many redirects"),
        ("/", "([", Reason.CONFIG, "regex"),
    ],
)
async def test_http_down(
    nginx: Nginx, request_: str, receive: str, reason: Reason, detail: str
) -> None:
    outcome = await run(http(nginx.http_port, request_, receive))
    assert not outcome.up
    assert outcome.reason is reason, outcome
    assert detail in outcome.detail


async def test_body_is_matched_within_its_limit(nginx: Nginx) -> None:
    # /big is 2 MiB with its marker at the end: beyond BODY_LIMIT, so not seen (documented).
    outcome = await run(http(nginx.http_port, "/big", "END-OF-BIG"))
    assert outcome.reason is Reason.NO_MATCH
    assert (await run(http(nginx.http_port, "/big", "^xxxx"))).up


async def test_refused() -> None:
    outcome = await run(http(hostile.free_port()))
    assert outcome.reason is Reason.REFUSED


async def test_https_against_plain_http_is_a_tls_failure(nginx: Nginx) -> None:
    outcome = await run(http(nginx.http_port, service=Service.HTTPS))
    assert not outcome.up
    assert outcome.reason is Reason.TLS, outcome


# --- hostile peers: down with the right reason, within the deadline -------------------------

HOSTILE = [
    ("hang", hostile.hang, Service.HTTP, Reason.TIMEOUT, "status line"),
    ("trickle", hostile.trickle, Service.HTTP, Reason.TIMEOUT, ""),
    ("reset", hostile.reset, Service.HTTP, Reason.RESET, ""),
    (
        "reset-after-request",
        lambda: hostile.reset(after_request=True),
        Service.HTTP,
        Reason.RESET,
        "",
    ),
    (
        "garbage",
        lambda: hostile.garbage(then="close"),
        Service.HTTP,
        Reason.PROTOCOL,
        "not an HTTP",
    ),
    ("garbage-hold", hostile.garbage, Service.HTTP, Reason.PROTOCOL, "not an HTTP"),
    ("close", lambda: hostile.close_at_once(after_request=True), Service.HTTP, Reason.CLOSED, ""),
    ("tls-hang", hostile.tls_hang, Service.HTTPS, Reason.TIMEOUT, "tls handshake"),
    ("tls-reset", hostile.reset, Service.HTTPS, Reason.RESET, ""),
    ("tls-garbage", lambda: hostile.garbage(then="close"), Service.HTTPS, Reason.TLS, ""),
    ("no-accept", hostile.no_accept, Service.HTTP, Reason.TIMEOUT, "connect"),
]


@pytest.mark.parametrize(
    ("factory", "service", "reason", "phase"),
    [pytest.param(f, s, r, p, id=name) for name, f, s, r, p in HOSTILE],
)
async def test_hostile_peer_is_down_in_time(
    factory: object, service: Service, reason: Reason, phase: str
) -> None:
    assert callable(factory)
    with factory() as peer:
        outcome, elapsed = await timed(http(peer.port, service=service))
    assert not outcome.up
    assert outcome.reason is reason, outcome
    assert phase in outcome.detail
    assert elapsed < DEADLINE + MARGIN


async def test_timeout_is_down_not_unchanged() -> None:
    # Deliberate fix: Perl ldirectord left the real's state alone on an HTTP timeout.
    with hostile.hang() as peer:
        outcome = await run(http(peer.port))
    assert outcome.up is False
    assert outcome.reason is Reason.TIMEOUT


async def test_healthy_check_beside_hostile_ones_is_not_delayed(nginx: Nginx) -> None:
    with hostile.hang() as hung, hostile.trickle() as slow, hostile.tls_hang() as tls:
        bad = [
            *(http(hung.port) for _ in range(10)),
            *(http(slow.port) for _ in range(10)),
            *(http(tls.port, service=Service.HTTPS) for _ in range(10)),
        ]
        pending = [asyncio.ensure_future(run(t)) for t in bad]
        await asyncio.sleep(0.1)
        outcome, elapsed = await timed(http(nginx.http_port, "/", "all is well"))
        results = await asyncio.gather(*pending)
    assert outcome.up
    assert elapsed < DEADLINE / 2
    assert all(not r.up for r in results)


# --- unusual but valid replies from a scripted server ---------------------------------------


def scripted(reply: bytes) -> hostile.TcpPeer:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()
        writer.close()

    return hostile.TcpPeer(handler, name="scripted")


@pytest.mark.parametrize(
    ("reply", "receive", "up"),
    [
        pytest.param(b"HTTP/1.0 200 OK\nContent-Type: text/plain\n\nhello bare LF\n",
                     "bare LF", True, id="bare-lf"),
        pytest.param(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                     "^ok$", True, id="100-continue"),
        pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world", True,
                     id="multi-chunk"),
        pytest.param(b"HTTP/1.1 200 OK\r\n\r\nno length, read to close", "to close$", True,
                     id="read-to-close"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", "", False,
                     id="short-body"),
        pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "", False,
                     id="bad-chunk"),
    ],
)  # fmt: skip
async def test_scripted_replies(reply: bytes, receive: str, up: bool) -> None:
    with scripted(reply) as peer:
        outcome, elapsed = await timed(http(peer.port, "/", receive))
    assert outcome.up is up, outcome
    assert elapsed < DEADLINE


# --- cancellation at every await leaks nothing ----------------------------------------------


@pytest.mark.parametrize("service", [Service.HTTP, Service.HTTPS])
async def test_cancellation_at_any_point_leaks_no_descriptor(
    nginx: Nginx, service: Service
) -> None:
    port = nginx.https_port if service is Service.HTTPS else nginx.http_port
    target = http(port, "/", "all is well", service=service)
    assert (await run(target)).up  # warm: imports, TLS context
    before = open_fds()
    completed = await cancellation_sweep(lambda: run(target))
    assert open_fds() <= before
    assert completed > 0  # the sweep went past the end of a whole check
