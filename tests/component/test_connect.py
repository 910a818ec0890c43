"""connect checks against real listeners and hostile peers (loopback only)."""

from __future__ import annotations

import asyncio
import time

import pytest

from ldirectord.checks import run
from ldirectord.checks.base import Reason
from ldirectord.config.model import CheckType, Protocol, Service
from tests.helpers import cancellation_sweep, check_target, hostile, open_fds
from tests.helpers.nginx import Nginx

pytestmark = [pytest.mark.component, pytest.mark.asyncio]
DEADLINE = 1.0
MARGIN = 1.0


def connect(port: int, host: str = "127.0.0.1", protocol: Protocol = Protocol.TCP):  # type: ignore[no-untyped-def]
    return check_target(
        Service.HTTP, port, kind=CheckType.CONNECT, host=host, protocol=protocol,
        checktimeout=DEADLINE,
    )  # fmt: skip


async def test_up(nginx: Nginx) -> None:
    outcome = await run(connect(nginx.http_port))
    assert outcome.up, outcome
    assert outcome.reason is Reason.OK


async def test_up_ipv6(nginx: Nginx) -> None:
    if not nginx.ipv6:
        pytest.skip("no ::1 on this host")
    outcome = await run(connect(nginx.http_port, "::1"))
    assert outcome.up, outcome


async def test_refused() -> None:
    outcome = await run(connect(hostile.free_port()))
    assert not outcome.up
    assert outcome.reason is Reason.REFUSED


async def test_fwmark_virtual_is_checked_over_tcp(nginx: Nginx) -> None:
    outcome = await run(connect(nginx.http_port, protocol=Protocol.FWM))
    assert outcome.up, outcome


async def test_udp_virtual_connect_is_a_ping() -> None:
    # ldirectord: a connect check of a UDP virtual is an ICMP echo; loopback answers.
    outcome = await run(connect(hostile.free_port(), protocol=Protocol.UDP))
    assert outcome.up, outcome
    assert "echo" in outcome.detail


async def test_connect_that_never_completes_times_out() -> None:
    with hostile.no_accept() as peer:
        start = time.monotonic()
        outcome = await run(connect(peer.port))
        elapsed = time.monotonic() - start
    assert not outcome.up
    assert outcome.reason is Reason.TIMEOUT
    assert "connect" in outcome.detail
    assert elapsed < DEADLINE + MARGIN


async def test_hanging_server_is_up_for_connect() -> None:
    # connect only opens the connection: a server that accepts and never answers is "up".
    with hostile.hang() as peer:
        outcome = await run(connect(peer.port))
    assert outcome.up, outcome


async def test_reset_after_accept_is_still_connected() -> None:
    with hostile.reset() as peer:
        outcome = await run(connect(peer.port))
    assert outcome.up, outcome


async def test_healthy_beside_hung_connects_is_not_delayed(nginx: Nginx) -> None:
    with hostile.no_accept() as peer:
        hung = [asyncio.ensure_future(run(connect(peer.port))) for _ in range(20)]
        await asyncio.sleep(0.05)
        start = time.monotonic()
        healthy = await run(connect(nginx.http_port))
        healthy_elapsed = time.monotonic() - start
        results = await asyncio.gather(*hung)
    assert healthy.up
    assert healthy_elapsed < DEADLINE / 2
    assert all(r.reason is Reason.TIMEOUT for r in results)


def _time_wait_to(port: int) -> int:
    port_hex = f":{port:04X}"
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return sum(1 for r in rows if r[3] == "06" and r[2].endswith(port_hex))


async def test_connect_leaves_no_time_wait(nginx: Nginx) -> None:
    # Reset on close (SO_LINGER 0): our side never enters TIME_WAIT.
    before = _time_wait_to(nginx.http_port)
    for _ in range(20):
        assert (await run(connect(nginx.http_port))).up
    assert _time_wait_to(nginx.http_port) <= before


async def test_cancellation_at_any_point_leaks_no_descriptor(nginx: Nginx) -> None:
    target = connect(nginx.http_port)
    before = open_fds()
    assert await cancellation_sweep(lambda: run(target)) > 0
    assert open_fds() <= before
