"""simpletcp checks: a line-protocol peer, nginx, and hostile peers."""

from __future__ import annotations

import asyncio
import time

import pytest

from ldirectord.checks import run
from ldirectord.checks.base import CheckTarget, Reason
from ldirectord.config.model import Service
from tests.helpers import cancellation_sweep, check_target, hostile, open_fds
from tests.helpers.nginx import Nginx

pytestmark = [pytest.mark.component, pytest.mark.asyncio]
DEADLINE = 1.5
MARGIN = 1.0


def simpletcp(port: int, request: str = "/", receive: str = "") -> CheckTarget:
    return check_target(
        Service.SIMPLETCP, port, request=request, receive=receive, negotiatetimeout=DEADLINE
    )


def line_server() -> hostile.TcpPeer:
    """Reads until EOF (the check half-closes), then answers three lines about what it got."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read(65536)
        while chunk := await reader.read(65536):
            data += chunk
        writer.write(b"+HELLO\r\ngot " + repr(data).encode() + b"\r\nstatus: healthy\r\n")
        await writer.drain()
        writer.close()

    return hostile.TcpPeer(handler, name="lines")


async def test_request_is_sent_without_leading_slash_and_with_newlines() -> None:
    with line_server() as peer:
        outcome = await run(simpletcp(peer.port, "/PING\\nQUIT\\n", r"got b'PING\\nQUIT\\n'"))
    assert outcome.up, outcome


async def test_later_line_matches() -> None:
    with line_server() as peer:
        outcome = await run(simpletcp(peer.port, "/x", "^status: healthy"))
    assert outcome.up, outcome
    assert "healthy" in outcome.detail


async def test_empty_receive_matches_the_first_line() -> None:
    with line_server() as peer:
        outcome = await run(simpletcp(peer.port))
    assert outcome.up, outcome


async def test_no_line_matches() -> None:
    with line_server() as peer:
        outcome = await run(simpletcp(peer.port, "/x", "^status: sick"))
    assert not outcome.up
    assert outcome.reason is Reason.NO_MATCH


async def test_against_nginx(nginx: Nginx) -> None:
    # Only a literal "\n" is translated (as in ldirectord); nginx accepts bare-LF requests.
    ok = await run(simpletcp(nginx.http_port, "/GET / HTTP/1.0\\n\\n", "^HTTP/1.1 200"))
    assert ok.up, ok
    bad = await run(simpletcp(nginx.http_port, "/GET /missing HTTP/1.0\\n\\n", " 200 "))
    assert bad.reason is Reason.NO_MATCH
    untranslated = await run(simpletcp(nginx.http_port, "/GET / HTTP/1.0\\r\\n\\r\\n", " 200 "))
    assert untranslated.reason is Reason.NO_MATCH  # "\r" stays a backslash and an r: a 400


async def test_refused() -> None:
    outcome = await run(simpletcp(hostile.free_port()))
    assert outcome.reason is Reason.REFUSED


@pytest.mark.parametrize(
    ("factory", "reason"),
    [
        pytest.param(hostile.hang, Reason.TIMEOUT, id="hang"),
        pytest.param(lambda: hostile.trickle(b"x" * 100), Reason.TIMEOUT, id="trickle"),
        pytest.param(hostile.reset, Reason.RESET, id="reset"),
        pytest.param(lambda: hostile.close_at_once(after_request=True), Reason.CLOSED, id="close"),
        pytest.param(
            lambda: hostile.garbage(b"\x00\xff" * 64 + b"\n", then="close"),
            Reason.NO_MATCH,
            id="garbage",
        ),
        pytest.param(hostile.no_accept, Reason.TIMEOUT, id="no-accept"),
    ],
)
async def test_hostile(factory: object, reason: Reason) -> None:
    assert callable(factory)
    with factory() as peer:
        start = time.monotonic()
        outcome = await run(simpletcp(peer.port, "/hello\\n", "^OK"))
        elapsed = time.monotonic() - start
    assert not outcome.up
    assert outcome.reason is reason, outcome
    assert elapsed < DEADLINE + MARGIN


async def test_healthy_beside_hanging_is_not_delayed() -> None:
    with hostile.hang() as hung, line_server() as good:
        pending = [asyncio.ensure_future(run(simpletcp(hung.port))) for _ in range(20)]
        await asyncio.sleep(0.05)
        start = time.monotonic()
        outcome = await run(simpletcp(good.port, "/x", "healthy"))
        elapsed = time.monotonic() - start
        await asyncio.gather(*pending)
    assert outcome.up
    assert elapsed < DEADLINE / 2


async def test_cancellation_at_any_point_leaks_no_descriptor(nginx: Nginx) -> None:
    target = simpletcp(nginx.http_port, "/GET / HTTP/1.0\\n\\n", " 200 ")
    before = open_fds()
    assert await cancellation_sweep(lambda: run(target)) > 0
    assert open_fds() <= before
