"""The bounded pool for blocking check libraries: results, deadlines, abandonment, the bound."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from ldirectord.checks._blocking import BlockingPool, shutdown_quietly

pytestmark = pytest.mark.asyncio


async def _settled(pool: BlockingPool, limit: float = 5.0) -> bool:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if pool.abandoned_running == 0:
            return True
        await asyncio.sleep(0.02)
    return False


async def test_result_and_exception_come_back() -> None:
    pool = BlockingPool(2)
    assert await pool.run(1.0, sum, [1, 2, 3]) == 6
    with pytest.raises(ZeroDivisionError):
        await pool.run(1.0, lambda: 1 / 0)
    assert pool.abandoned_total == 0


async def test_overrun_is_abandoned_counted_and_released_by_on_abandon() -> None:
    pool = BlockingPool(2)
    left, right = socket.socketpair()
    try:
        right.settimeout(30)  # a library timeout far beyond the check's deadline
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            await pool.run(0.2, right.recv, 1, on_abandon=lambda: shutdown_quietly(right))
        assert time.monotonic() - start < 2.0
        assert pool.abandoned_total == 1
        assert await _settled(pool)  # recv returned b"" once the socket was shut down
    finally:
        left.close()
        right.close()


async def test_cancellation_from_outside_abandons_too() -> None:
    pool = BlockingPool(1)
    release = threading.Event()
    task = asyncio.ensure_future(pool.run(10.0, release.wait, 5.0))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (pool.abandoned_total, pool.abandoned_running) == (1, 1)
    release.set()
    assert await _settled(pool)


async def test_the_pool_is_bounded_and_a_queued_call_is_not_counted() -> None:
    pool = BlockingPool(1)
    release = threading.Event()
    busy = asyncio.ensure_future(pool.run(5.0, release.wait, 5.0))
    await asyncio.sleep(0.05)
    names_before = {t.name for t in threading.enumerate()}
    with pytest.raises(TimeoutError):  # waits for the only worker, within its own budget
        await pool.run(0.2, time.sleep, 0)
    assert pool.abandoned_total == 0  # it never started: dropped, not abandoned
    assert {t.name for t in threading.enumerate()} == names_before  # no extra thread
    release.set()
    assert await busy is True
