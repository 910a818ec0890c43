"""Cancellation reaches every check, so ``stop`` never waits out the scheduler's grace.

Found by the fault suite: with healthy MySQL reals, ``ldirectord stop`` took 5 s (the
scheduler's close grace) and, among 500 reals, over 30 s. Python 3.11's ``asyncio.wait_for``
returns the inner result instead of raising when the cancellation arrives just as the inner
future completes (fixed in 3.12), so a check task cancelled at that moment swallowed the
cancellation and went on to its next interval; at exit ``asyncio.run`` then waited for it for
ever. The blocking pool (SQL, LDAP) used ``wait_for``, and so does dnspython's asyncio backend
when given a timeout (the dns check). These tests cancel many loops of fast checks and require
every task to end at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from ldirectord.checks import run
from ldirectord.checks._blocking import BlockingPool
from ldirectord.checks.base import CheckTarget
from ldirectord.config.model import Protocol
from tests.faults.harness import Addresses, Listener, fleet
from tests.helpers.servers import target

pytestmark = pytest.mark.faults


async def _loop(pool: BlockingPool) -> None:
    while True:  # ends only by cancellation (bounded by the test's timeout)
        await pool.run(2.0, time.sleep, 0.002)


async def _stuck_after_cancel(make: Callable[[], Coroutine[Any, Any, None]], n: int) -> int:
    """Start ``n`` loops, cancel them, count those still running 1 s later (20 trials)."""
    stuck = 0
    for trial in range(20):
        tasks = [asyncio.create_task(make()) for _ in range(n)]
        await asyncio.sleep(0.05 + trial * 0.003)
        for task in tasks:
            task.cancel()
        _, pending = await asyncio.wait(tasks, timeout=1.0)
        stuck += len(pending)
        for task in pending:  # swallowed once: cancel again so the test ends
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5.0)
    return stuck


@pytest.mark.asyncio
async def test_cancelled_blocking_checks_end_at_once() -> None:
    pool = BlockingPool(max_workers=8)
    stuck = await _stuck_after_cancel(lambda: _loop(pool), 12)
    assert stuck == 0, f"{stuck} task(s) swallowed their cancellation"


@pytest.mark.asyncio
async def test_cancelled_dns_checks_end_at_once() -> None:
    addresses = Addresses()
    listeners = [Listener(addresses.next(), "udp", "dns_ok") for _ in range(12)]
    with fleet(listeners):
        targets = [
            target(
                "dns",
                x.port,
                host=x.host,
                protocol=Protocol.UDP.value,
                request="www.faults.test",
                receive="192.0.2.10",
                timeout=2.0,
            )
            for x in listeners
        ]
        for t in targets:  # the fleet answers: these are healthy checks
            assert (await run(t)).up

        async def loop(t: CheckTarget) -> None:
            while True:  # ends only by cancellation
                await run(t)

        it = iter(targets * 20)
        stuck = await _stuck_after_cancel(lambda: loop(next(it)), len(targets))
    assert stuck == 0, f"{stuck} dns check task(s) swallowed their cancellation"
