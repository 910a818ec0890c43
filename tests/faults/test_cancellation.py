"""Cancellation reaches every check, so ``stop`` never waits out the scheduler's grace.

Found by the fault suite: with healthy MySQL reals, ``ldirectord stop`` took 5 s (the
scheduler's close grace) and, among 500 reals, over 30 s. Python 3.11's ``asyncio.wait_for``
returns the inner result instead of raising when the cancellation arrives just as the inner
future completes (fixed in 3.12), so a check task cancelled at that moment swallowed the
cancellation and went on to its next interval. The blocking pool (SQL, LDAP) used ``wait_for``;
this test cancels many loops of fast blocking calls and requires every task to end at once.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from ldirectord.checks._blocking import BlockingPool

pytestmark = pytest.mark.faults


async def _loop(pool: BlockingPool) -> None:
    while True:  # ends only by cancellation (bounded by the test's timeout)
        await pool.run(2.0, time.sleep, 0.002)


@pytest.mark.asyncio
async def test_cancelled_blocking_checks_end_at_once() -> None:
    pool = BlockingPool(max_workers=8)
    stuck = 0
    for trial in range(20):
        tasks = [asyncio.create_task(_loop(pool)) for _ in range(12)]
        await asyncio.sleep(0.05 + trial * 0.003)
        for task in tasks:
            task.cancel()
        _, pending = await asyncio.wait(tasks, timeout=1.0)
        stuck += len(pending)
        for task in pending:  # swallowed once: cancel again so the test ends
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5.0)
    assert stuck == 0, f"{stuck} task(s) swallowed their cancellation"
