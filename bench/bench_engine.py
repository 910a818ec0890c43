"""Engine benchmark: our Director on the dry-run backend against real loopback listeners.

``run(quick) -> list[dict]`` (used by ``python -m bench``) and ``python -m bench.bench_engine
[--quick]`` (prints the markdown table). Scenarios:

(a) scale: R reals (1,000 and 10,000; quick 1,000) in 100-real virtuals, TCP connect checks
    every 1 s (and 10,000 every 2 s), 2 s timeout: completed checks/s, our CPU share (cores),
    RSS, and how late each check started against its schedule (p50/p99/max). "met" = every
    real in the table and at least 95 % of the configured check rate sustained.
(b) start-up: 1,000 reals (quick 200) of which half accept and never answer (HTTP negotiate
    checks, 5 s timeout): seconds from ``Director.start()`` until every healthy real is in
    the table (target: one checktimeout + 1 s; the hung ones cannot delay it).
(c) detection: a healthy real among 1,000 (quick 200) with 100 (quick 20) hung dies (its
    listener closes) at a random moment between two checks; seconds until it leaves the
    table (target: checkinterval + checktimeout + 0.5 s, independent of the hung count).

The listeners live in a child process (asyncio, one listening socket per real on 127.0.0.1;
the connect-check listeners accept and close with a bare protocol, no streams), pinned to the
last CPU while we run on the others (as performance.md's method), so their CPU is neither ours
nor taken from our core ("listener cores"); our CPU and RSS come from getrusage and
/proc/self/status. The Director runs with the daemon's garbage-collector policy
(``tune_gc=True``, engine/gcpolicy.py). Only loopback traffic; every wait is bounded.

Reading (a): "CPU ms/check" is what one connect check costs us, scheduling, health state and
result delivery included; compare it with performance.md §1 (a raw asyncio loop doing nothing
but connect+close: 0.19-0.23 ms on this kind of machine, loopback charging the server side of
the handshake to the checker). 10,000 checks per second on one core need it below 0.1 ms.
"runq wait" is the share of wall time our process was ready to run but waiting for a CPU
(/proc schedstat): when it is high, the checks ran late because the process got no more CPU
(other work on the shared machine: see the load average above), not because of the scheduler.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import resource
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from bench.common import markdown_table, percentile, proc_cpu_seconds
from ldirectord.checks.base import CheckTarget, Outcome
from ldirectord.config.model import (
    CheckSpec,
    CheckType,
    Config,
    Family,
    GlobalConfig,
    Method,
    Protocol,
    RealServer,
    Service,
    VirtualService,
)
from ldirectord.engine.director import Director
from ldirectord.forwarding.dryrun import DryRunBackend

TITLE = "Scale and scheduling: 10,000 reals at 1 s, start-up and detection on the dry-run backend"
COLUMNS = [
    "scenario",
    "reals",
    "hung",
    "interval s",
    "timeout s",
    "checks/s",
    "cores",
    "CPU ms/check",
    "listener cores",
    "runq wait",
    "RSS MiB",
    "late p50 ms",
    "late p99 ms",
    "late max ms",
    "result s",
    "target s",
    "met",
]
METHOD = __doc__ or ""
PER_VIRTUAL = 100
#: the daemon's garbage-collector policy (engine/gcpolicy.py) in the scale scenario
TUNE_GC = True

# --- the listener child ------------------------------------------------------------------

SERVER = r"""
import asyncio, json, resource, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
spec = json.loads(sys.argv[1])

class Tcp(asyncio.Protocol):
    # accept and close at once: no streams, no task per connection (cheap on the listener core)
    def connection_made(self, transport):
        transport.close()

async def http(reader, writer):
    try:
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
    except Exception:
        pass
    writer.close()

async def hang(reader, writer):
    try:
        while await reader.read(4096):
            pass
    except Exception:
        pass
    writer.close()

async def main():
    kinds = {"http": http, "hang": hang}
    loop = asyncio.get_running_loop()
    # 10,000 listeners plus the connections in flight can exceed the fd limit: asyncio then
    # pauses accepting for a moment and reports each EMFILE; count them, never log 800,000
    # tracebacks (the checker sees those connections time out, which is what it would see).
    loop.set_exception_handler(lambda _loop, _ctx: None)
    servers, ports = {}, {}
    for kind, n in spec.items():
        ports[kind] = []
        for _ in range(n):
            if kind == "tcp":
                s = await loop.create_server(Tcp, "127.0.0.1", 0, backlog=1024)
            else:
                s = await asyncio.start_server(kinds[kind], "127.0.0.1", 0, backlog=1024)
            port = s.sockets[0].getsockname()[1]
            servers[port] = s
            ports[kind].append(port)
    print(json.dumps(ports), flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            return
        words = line.split()
        if words[:1] == [b"close"]:
            servers.pop(int(words[1])).close()
            print("closed", flush=True)

asyncio.run(main())
"""


class Listeners:
    """A child process holding the listeners; ``close(port)`` makes one refuse connections.

    With two or more CPUs the listeners run on the last one and we on the others (as
    performance.md's method), so the listeners' work is not taken from the checker's core;
    our affinity is restored on exit.
    """

    def __init__(self, **counts: int) -> None:
        self._affinity = os.sched_getaffinity(0)
        cpus = sorted(self._affinity)
        self.pinned = len(cpus) >= 2
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, json.dumps(counts)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        if self.pinned:
            try:
                os.sched_setaffinity(self.proc.pid, {cpus[-1]})
                os.sched_setaffinity(0, set(cpus[:-1]))
            except OSError:
                self.pinned = False
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("listener process failed to start")
        self.ports: dict[str, list[int]] = json.loads(line)

    def close(self, port: int) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"close {port}\n")
        self.proc.stdin.flush()
        self.proc.stdout.readline()

    def __enter__(self) -> Listeners:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, self._affinity)
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


# --- helpers -----------------------------------------------------------------------------


class CountingSink:
    def __init__(self) -> None:
        self.checks = 0
        self.lines: list[str] = []

    def log(self, message: str) -> None:
        if len(self.lines) < 100_000:
            self.lines.append(message)

    def check_done(self, target: CheckTarget, outcome: Outcome) -> None:
        self.checks += 1

    def real_changed(self, *args: Any) -> None:
        pass


def make_config(
    ports: Sequence[int], kind: CheckType, service: Service, interval: float, timeout: float
) -> Config:
    spec = CheckSpec(
        checktype=kind,
        service=service,
        checkinterval=interval,
        checktimeout=timeout,
        negotiatetimeout=timeout,
    )
    virtuals = []
    for i in range(0, len(ports), PER_VIRTUAL):
        n = i // PER_VIRTUAL
        reals = tuple(RealServer("127.0.0.1", p, Method.MASQ) for p in ports[i : i + PER_VIRTUAL])
        address = f"192.168.{6 + n // 250}.{1 + n % 250}"
        virtuals.append(
            VirtualService(
                family=Family.INET,
                protocol=Protocol.TCP,
                address=address,
                port=80,
                fwmark=None,
                address_as_written=f"{address}:80",
                check=spec,
                reals=reals,
            )
        )
    return Config("<bench>", GlobalConfig(checkinterval=interval), tuple(virtuals))


def present(backend: DryRunBackend) -> set[int]:
    return {k.port for e in backend.table.services.values() for k in e.dests}


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def runqueue_wait() -> float:
    """Seconds this process's threads spent runnable but waiting for a CPU (schedstat)."""
    total = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def ensure_fds(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, n))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


# --- scenarios ---------------------------------------------------------------------------


async def scale(reals: int, seconds: float, warmup: float, interval: float = 1.0) -> dict[str, Any]:
    timeout = 2.0
    ensure_fds(reals * 2 + 1024)
    with Listeners(tcp=reals) as lis:
        cfg = make_config(lis.ports["tcp"], CheckType.CONNECT, Service.NONE, interval, timeout)
        sink, backend = CountingSink(), DryRunBackend()
        d = Director(cfg, backend, sink, tune_gc=TUNE_GC)  # as the daemon runs it
        await d.start()
        ok = await d.wait_first_checks(timeout + 5)
        await asyncio.sleep(warmup)
        d.scheduler.stats.lateness = deque(maxlen=int(reals / interval * seconds * 1.5))
        c0, t0, n0 = cpu_seconds(), time.monotonic(), sink.checks
        s0, w0 = proc_cpu_seconds(lis.proc.pid) or 0.0, runqueue_wait()
        await asyncio.sleep(seconds)
        c1, t1, n1 = cpu_seconds(), time.monotonic(), sink.checks
        s1, w1 = proc_cpu_seconds(lis.proc.pid) or 0.0, runqueue_wait()
        late = sorted(d.scheduler.stats.lateness)
        rss = rss_mib()
        in_table = len(present(backend))
        await d.stop()
    wall = t1 - t0
    rate = (n1 - n0) / wall
    return {
        "scenario": "(a) scale, connect checks",
        "reals": reals,
        "hung": 0,
        "interval s": interval,
        "timeout s": timeout,
        "checks/s": round(rate),
        "cores": round((c1 - c0) / wall, 2),
        "CPU ms/check": round((c1 - c0) / max(1, n1 - n0) * 1000, 3),
        "listener cores": round((s1 - s0) / wall, 2),
        "runq wait": f"{(w1 - w0) / wall:.0%}",
        "RSS MiB": round(rss, 1),
        "late p50 ms": _ms(percentile(late, 0.5)),
        "late p99 ms": _ms(percentile(late, 0.99)),
        "late max ms": _ms(late[-1] if late else None),
        "result s": None,
        "target s": None,
        "met": ok and in_table == reals and rate >= 0.95 * reals / interval,
    }


async def startup(reals: int, timeout: float) -> dict[str, Any]:
    half = reals // 2
    ensure_fds(reals * 2 + 1024)
    with Listeners(http=half, hang=reals - half) as lis:
        good = lis.ports["http"]
        ports = [p for pair in zip(good, lis.ports["hang"], strict=False) for p in pair]
        cfg = make_config(ports, CheckType.NEGOTIATE, Service.HTTP, 1.0, timeout)
        backend = DryRunBackend()
        d = Director(cfg, backend, CountingSink())
        t0 = time.monotonic()
        await d.start()
        want = set(good)
        took: float | None = None
        async with asyncio.timeout(timeout * 3):
            while True:
                if want <= present(backend):
                    took = time.monotonic() - t0
                    break
                await asyncio.sleep(0.005)
        wrong = present(backend) - want
        await d.stop()
    target = timeout + 1.0
    return {
        "scenario": "(b) start-up, HTTP checks, half hung",
        "reals": reals,
        "hung": reals - half,
        "interval s": 1.0,
        "timeout s": timeout,
        "result s": round(took, 3) if took is not None else None,
        "target s": target,
        "met": took is not None and took <= target and not wrong,
    }


async def detection(reals: int, hung: int, rounds: int) -> list[dict[str, Any]]:
    interval, timeout = 1.0, 2.0
    ensure_fds(reals * 2 + 1024)
    rows = []
    with Listeners(http=reals - hung, hang=hung) as lis:
        ports = lis.ports["http"] + lis.ports["hang"]
        cfg = make_config(ports, CheckType.NEGOTIATE, Service.HTTP, interval, timeout)
        backend = DryRunBackend()
        d = Director(cfg, backend, CountingSink())
        await d.start()
        async with asyncio.timeout(timeout * 3):
            while not set(lis.ports["http"]) <= present(backend):
                await asyncio.sleep(0.01)
        victims = random.sample(lis.ports["http"], rounds)
        times = []
        for victim in victims:
            await asyncio.sleep(random.uniform(0, interval))
            await asyncio.to_thread(lis.close, victim)
            t0 = time.monotonic()
            took = None
            async with asyncio.timeout(interval + timeout + 10):
                while victim in present(backend):
                    await asyncio.sleep(0.005)
                took = time.monotonic() - t0
            times.append(took)
        await d.stop()
    target = interval + timeout + 0.5
    for took in times:
        rows.append(
            {
                "scenario": "(c) detection of a dead real, HTTP checks",
                "reals": reals,
                "hung": hung,
                "interval s": interval,
                "timeout s": timeout,
                "result s": round(took, 3),
                "target s": target,
                "met": took <= target,
            }
        )
    return rows


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


async def _all(quick: bool) -> list[dict[str, Any]]:
    rows = []
    if quick:
        rows.append(await scale(1000, seconds=5, warmup=2))
        rows.append(await startup(200, timeout=5.0))
        rows += await detection(200, 20, rounds=2)
    else:
        rows.append(await scale(1000, seconds=20, warmup=5))
        rows.append(await scale(10_000, seconds=30, warmup=10))
        rows.append(await scale(10_000, seconds=30, warmup=10, interval=2.0))
        rows.append(await startup(1000, timeout=5.0))
        rows += await detection(1000, 100, rounds=5)
    return rows


def run(quick: bool) -> list[dict[str, Any]]:
    gc.collect()
    return asyncio.run(_all(quick))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=("scale", "startup", "detection"))
    args = parser.parse_args(argv)
    if args.only == "scale":
        rows = [asyncio.run(scale(1000 if args.quick else 10_000, 10 if args.quick else 30, 5))]
    elif args.only == "startup":
        rows = [asyncio.run(startup(200 if args.quick else 1000, 5.0))]
    elif args.only == "detection":
        rows = asyncio.run(detection(200 if args.quick else 1000, 20 if args.quick else 100, 3))
    else:
        rows = run(args.quick)
    print(markdown_table(COLUMNS, rows))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
