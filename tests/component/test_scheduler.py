"""The scheduler's guarantees with real checks against hostile loopback listeners.

- no check delays another: a healthy check beside 200 hung ones keeps its interval;
- start-up fast path: healthy reals are in the table long before the hung checks' deadline;
- a dead real is removed within checkinterval + timeout + margin, however many reals hang.
Plus the scheduler's pure helpers (combined mode counter, probe identity, fd limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import resource
import time
from collections.abc import AsyncIterator, Callable

import pytest

from ldirectord.checks import run as run_check
from ldirectord.checks.base import CheckTarget, Outcome, target_for
from ldirectord.config.model import CheckType, Method, Service
from ldirectord.engine.director import Director
from ldirectord.engine.events import LoggingEventSink
from ldirectord.engine.scheduler import (
    COMBINED_RESET,
    ProbeKey,
    Scheduler,
    combined_after,
    combined_kind,
    ensure_fd_limit,
    fds_needed,
)
from ldirectord.forwarding.base import DestKey
from ldirectord.forwarding.dryrun import DryRunBackend
from tests.helpers import hostile
from tests.unit.engine_support import config, real, skey, virtual

HUNG = 200
MARGIN = 1.5  # seconds of slack on a shared 2-core machine


# --- listeners ------------------------------------------------------------------------------


async def _healthy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
    writer.close()


async def _hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        while await reader.read(4096):
            pass
    writer.close()


@contextlib.asynccontextmanager
async def listeners(handler: Callable[..., object], n: int) -> AsyncIterator[list[asyncio.Server]]:
    servers = [await asyncio.start_server(handler, "127.0.0.1", 0) for _ in range(n)]  # type: ignore[arg-type]
    try:
        yield servers
    finally:
        for s in servers:
            s.close()
        for s in servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(s.wait_closed(), 2)


def port_of(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


HTTP = {"service": Service.HTTP}


def http_virtual(ports: list[int], interval: float, timeout: float):  # type: ignore[no-untyped-def]
    check = dict(HTTP, checkinterval=interval, checktimeout=timeout, negotiatetimeout=timeout)
    reals = [real("127.0.0.1", p, Method.MASQ) for p in ports]
    return virtual("192.168.6.240", 80, *reals, checktype=CheckType.NEGOTIATE, check=check)


def in_table(backend: DryRunBackend, port: int) -> bool:
    entry = backend.table.services.get(skey())
    return entry is not None and DestKey("127.0.0.1", port) in entry.dests


# --- the guarantees ------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.slow
async def test_a_healthy_check_keeps_its_interval_beside_hung_ones() -> None:
    interval, timeout = 0.5, 2.0
    async with listeners(_healthy, 1) as good, listeners(_hang, HUNG) as bad:
        healthy = port_of(good[0])
        done: list[float] = []

        class Sink(LoggingEventSink):
            def check_done(self, target: CheckTarget, outcome: Outcome) -> None:
                if target.port == healthy:
                    done.append(time.monotonic())

        v = http_virtual([healthy] + [port_of(s) for s in bad], interval, timeout)
        d = Director(config(v), DryRunBackend(), Sink(), raise_fd_limit=False)
        await d.start()
        await asyncio.sleep(3 * timeout + 0.5)  # several rounds of hung deadlines
        await d.stop()
    gaps = [b - a for a, b in itertools.pairwise(done)]
    assert len(done) >= 6
    assert max(gaps) <= interval + MARGIN, gaps


@pytest.mark.asyncio
@pytest.mark.slow
async def test_start_up_fast_path_with_many_hung_reals() -> None:
    timeout = 10.0
    async with listeners(_healthy, 20) as good, listeners(_hang, HUNG) as bad:
        ports = [port_of(s) for s in good]
        v = http_virtual(ports + [port_of(s) for s in bad], 1.0, timeout)
        backend = DryRunBackend()
        d = Director(config(v), backend, LoggingEventSink(), raise_fd_limit=False)
        t0 = time.monotonic()
        await d.start()
        async with asyncio.timeout(timeout):  # fails if we waited for the hung deadlines
            while not all(in_table(backend, p) for p in ports):
                await asyncio.sleep(0.01)
        took = time.monotonic() - t0
        assert not any(in_table(backend, port_of(s)) for s in bad)
        await d.stop()
    assert took < 1.0 + MARGIN, took


@pytest.mark.asyncio
@pytest.mark.slow
async def test_dead_real_removed_independently_of_hung_reals() -> None:
    interval, timeout = 0.5, 2.0
    async with listeners(_healthy, 5) as good, listeners(_hang, HUNG) as bad:
        ports = [port_of(s) for s in good]
        v = http_virtual(ports + [port_of(s) for s in bad], interval, timeout)
        backend = DryRunBackend()
        d = Director(config(v), backend, LoggingEventSink(), raise_fd_limit=False)
        await d.start()
        async with asyncio.timeout(timeout + MARGIN):
            while not all(in_table(backend, p) for p in ports):
                await asyncio.sleep(0.01)
        victim = good[0]
        victim.close()
        await victim.wait_closed()
        t0 = time.monotonic()
        async with asyncio.timeout(interval + timeout + MARGIN):
            while in_table(backend, ports[0]):
                await asyncio.sleep(0.01)
        took = time.monotonic() - t0
        assert all(in_table(backend, p) for p in ports[1:])
        await d.stop()
    assert took <= interval + timeout + MARGIN


@pytest.mark.asyncio
async def test_scheduler_sync_starts_keeps_and_cancels() -> None:
    seen: list[str] = []

    async def check(target: CheckTarget) -> Outcome:
        return Outcome.ok()

    def deliver(key: ProbeKey, outcome: Outcome, forced: bool) -> bool:
        seen.append(key.target.host)
        return False

    v = virtual(
        "192.168.6.240", 80, real("10.0.0.1"), real("10.0.0.2"), check={"checkinterval": 0.05}
    )
    a, b = (ProbeKey.of(target_for(v, r), r.port) for r in v.reals)
    s = Scheduler(check, deliver, jitter=False)
    s.sync([a, b])
    await asyncio.sleep(0.12)
    s.sync([a])
    assert s.keys == {a}
    n = seen.count("10.0.0.2")
    await asyncio.sleep(0.12)
    assert seen.count("10.0.0.2") == n
    assert seen.count("10.0.0.1") >= 3
    await s.close()
    assert s.stats.completed >= 4


@pytest.mark.asyncio
async def test_a_raising_deliver_is_counted_and_the_task_survives() -> None:
    calls = 0

    async def check(target: CheckTarget) -> Outcome:
        return Outcome.ok()

    def deliver(key: ProbeKey, outcome: Outcome, forced: bool) -> bool:
        nonlocal calls
        calls += 1
        raise RuntimeError("bug")

    errors: list[str] = []
    v = virtual("192.168.6.240", 80, real("10.0.0.1"), check={"checkinterval": 0.02})
    s = Scheduler(check, deliver, on_error=errors.append)
    s.sync([ProbeKey.of(target_for(v, v.reals[0]), 80)])
    await asyncio.sleep(0.15)
    await s.close()
    assert calls >= 3 and s.stats.errors == calls and errors


@pytest.mark.asyncio
@pytest.mark.slow
async def test_connect_checks_beside_connects_that_never_complete() -> None:
    """hostile.no_accept: the SYN is dropped, so connect() itself hangs until the deadline."""
    interval, timeout = 0.3, 1.0
    async with listeners(_healthy, 1) as good:
        healthy = port_of(good[0])
        done: list[float] = []

        class Sink(LoggingEventSink):
            def check_done(self, target: CheckTarget, outcome: Outcome) -> None:
                if target.port == healthy and outcome.up:
                    done.append(time.monotonic())

        with contextlib.ExitStack() as stack:
            peers = [stack.enter_context(hostile.no_accept()) for _ in range(HUNG)]
            check = {"checkinterval": interval, "checktimeout": timeout}
            reals = [real("127.0.0.1", p.port, Method.MASQ) for p in peers]
            v = virtual(
                "192.168.6.240", 80, real("127.0.0.1", healthy, Method.MASQ), *reals, check=check
            )
            backend = DryRunBackend()
            d = Director(config(v), backend, Sink(), raise_fd_limit=False)
            await d.start()  # the checks start at its end
            async with asyncio.timeout(timeout):  # in before any hung connect times out
                while not in_table(backend, healthy):
                    await asyncio.sleep(0.01)
            await asyncio.sleep(3 * timeout)
            assert not any(in_table(backend, p.port) for p in peers)
            await d.stop()
    gaps = [b - a for a, b in itertools.pairwise(done)]
    assert len(done) >= 5
    assert max(gaps) <= interval + MARGIN, gaps


# --- pure helpers ------------------------------------------------------------------------


def test_combined_counter_semantics() -> None:
    n = 3
    counter, kinds = COMBINED_RESET, []
    for up in (True, True, True, True, False, True, True, False, True):
        kind = combined_kind(counter, n)
        kinds.append(kind)
        counter = combined_after(counter, kind, up)
    neg, con = CheckType.NEGOTIATE, CheckType.CONNECT
    # negotiate first, then N connects, negotiate; a failed negotiate repeats; a failed
    # connect forces a negotiate next
    assert kinds == [neg, con, con, con, neg, neg, con, con, neg]
    assert combined_after(COMBINED_RESET, neg, False) == COMBINED_RESET  # negotiate repeats


def test_probe_identity_shared_across_virtuals_except_external() -> None:
    r = real("10.0.0.1")
    a = virtual("192.168.6.240", 80, r)
    b = virtual("192.168.6.241", 80, r)
    assert ProbeKey.of(target_for(a, r), 80) == ProbeKey.of(target_for(b, r), 80)
    ea = virtual("192.168.6.240", 80, r, checktype=CheckType.EXTERNAL)
    eb = virtual("192.168.6.241", 80, r, checktype=CheckType.EXTERNAL)
    assert ProbeKey.of(target_for(ea, r), 80) != ProbeKey.of(target_for(eb, r), 80)


def test_fd_limit_is_raised_and_a_too_low_hard_limit_is_reported() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(512, hard), hard))
        assert ensure_fd_limit(1000) is None or hard < fds_needed(1000)
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= min(fds_needed(1000), hard)
        if hard != resource.RLIM_INFINITY:
            warning = ensure_fd_limit(hard * 2)
            assert warning is not None and "hard limit" in warning
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_run_check_is_the_default() -> None:
    d = Director(config(), DryRunBackend(), LoggingEventSink(), raise_fd_limit=False)
    assert d.scheduler._check is run_check
