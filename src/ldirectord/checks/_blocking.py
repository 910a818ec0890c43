"""A bounded thread pool for the few check libraries that block (PyMySQL, ldap3, oracledb).

Owns: the one pool those calls run in, and the accounting of threads that overran their
check's deadline. A blocking call never holds up the event loop and is never awaited without
a deadline: ``run_blocking`` waits for the call's future under ``asyncio.timeout`` and the
time left; when that runs out (or the check is cancelled) the thread is *abandoned* — it keeps
its worker until the library's own socket timeouts (which callers set to the same deadline)
let it return, and it is counted meanwhile (``abandoned_running``) and forever
(``abandoned_total``). The pool has a fixed number of workers, so a flood of hung servers can
only make later blocking checks wait for a worker (which counts against their own deadline),
never create more threads.

The pool is created on first use, not at import (no side effects for configtest/status).
Knows nothing about any protocol.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ldirectord.checks.base import set_phase

T = TypeVar("T")

#: Worker threads shared by every blocking check (SQL, LDAP). Each blocked worker is bounded by
#: the library timeouts its caller passes, so the pool drains itself after a wave of hangs.
MAX_WORKERS = 16


class BlockingPool:
    """A fixed-size thread pool that abandons (and counts) calls that overrun their budget."""

    def __init__(self, max_workers: int = MAX_WORKERS) -> None:
        self.max_workers = max_workers
        self._lock = threading.Lock()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self.abandoned_total = 0  # calls that overran their budget, since start
        self.abandoned_running = 0  # of those, still holding a worker thread now

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:  # created on first use: no threads at import
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self.max_workers, thread_name_prefix="ldirectord-check"
                )
            return self._executor

    def _abandon(self, future: concurrent.futures.Future[T]) -> None:
        """Give up on ``future``: drop it if it never started, else count the running thread."""
        if future.cancel():
            return
        with self._lock:
            self.abandoned_total += 1
            self.abandoned_running += 1
        future.add_done_callback(self._abandoned_done)  # runs at once if already finished

    def _abandoned_done(self, _: concurrent.futures.Future[T]) -> None:
        with self._lock:
            self.abandoned_running -= 1

    async def run(
        self,
        budget: float,
        fn: Callable[..., T],
        *args: object,
        on_abandon: Callable[[], object] | None = None,
    ) -> T:
        """``fn(*args)`` in a worker; its result within ``budget`` seconds or TimeoutError.

        The wait is ``asyncio.timeout`` around the call's (shielded) future, not
        ``asyncio.wait_for``: Python 3.11's ``wait_for`` returns the result instead of raising
        when a cancellation arrives just as the call completes, and a check task that swallowed
        its cancellation outlived the daemon's stop. On timeout or cancellation the
        thread is abandoned (counted until it returns); its result or exception is discarded,
        and ``on_abandon`` is called (typically ``shutdown_quietly`` on the call's socket, to unblock the thread's recv,
        so a server that trickles bytes cannot hold a worker forever).
        """
        set_phase("waiting for a worker thread")
        future = self._pool().submit(fn, *args)
        wrapped = asyncio.wrap_future(future)
        try:
            async with asyncio.timeout(max(budget, 0.0)):
                return await asyncio.shield(wrapped)
        except BaseException:
            if not future.done():
                self._abandon(future)
                if on_abandon is not None:
                    with contextlib.suppress(Exception):
                        on_abandon()
            wrapped.cancel()
            wrapped.add_done_callback(_consume)  # no "exception was never retrieved" later
            raise


def _consume(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


#: The pool the blocking checks share (its threads start on first use).
POOL = BlockingPool()


def abandoned_total() -> int:
    """How many blocking check calls have overrun their deadline since start (a counter)."""
    return POOL.abandoned_total


def abandoned_running() -> int:
    """How many abandoned calls still occupy a worker thread right now (a gauge)."""
    return POOL.abandoned_running


async def run_blocking(
    budget: float,
    fn: Callable[..., T],
    *args: object,
    on_abandon: Callable[[], object] | None = None,
) -> T:
    """Run ``fn(*args)`` in the shared pool under ``budget`` seconds (see BlockingPool.run)."""
    return await POOL.run(budget, fn, *args, on_abandon=on_abandon)


def shutdown_quietly(sock: object) -> None:
    """Shut a library's socket down from another thread (unblocks its recv); never raises.

    ``on_abandon`` callbacks use it on the socket the abandoned call is blocked on, which the
    library object (created on the loop side, connected in the worker) exposes.
    """
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            # the plain socket method even for an SSLSocket: shut the file descriptor down
            # without touching the TLS object the worker thread is using
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
