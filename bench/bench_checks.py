"""Check throughput: our checks (``ldirectord.checks.run``) against a raw asyncio loop.

Owns one measurement: how many connect, HTTP and HTTPS checks per second one Python process
completes against a real nginx on loopback, and the CPU it spends per 1,000 checks, for our
full check path (target → registry → guarded deadline → check → Outcome) and for a raw asyncio
loop doing the bare minimum of the same check (the machine's limit, performance.md §1–§3).
The ratio ours/raw is the figure that matters: absolute numbers move with the machine's load.

Closed loop: ``IN_FLIGHT`` workers each run checks back-to-back for ``SECONDS`` seconds; a
run's checks/s is completed checks / wall seconds, its CPU is the process's user+system time
(nginx runs in its own process, not counted). Each (check, implementation) pair is measured
``REPS`` times, interleaved, and the median is reported. Every check carries a 2 s deadline.

``run(quick) -> list[dict]`` is what ``python -m bench`` imports; ``python -m bench.bench_checks
[--quick]`` prints the table alone.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import struct
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tests.helpers import check_target
from tests.helpers.nginx import Nginx, start_nginx

from bench.common import markdown_table, median, ratio
from ldirectord.checks import run as run_check
from ldirectord.checks.base import CheckTarget
from ldirectord.config.model import CheckType, Service

TITLE = "Check throughput: ours vs a raw asyncio loop (the machine's limit), loopback"
IN_FLIGHT = 100
DEADLINE = 2.0
COLUMNS = [
    "check",
    "ours checks/s",
    "raw checks/s",
    "ours/raw",
    "ours CPU s/1000",
    "raw CPU s/1000",
    "CPU raw/ours",
    "ours errors",
    "raw errors",
    "reps",
]
METHOD = (
    f"One process, stdlib asyncio, {IN_FLIGHT} checks in flight in a closed loop (each worker "
    "starts its next check when the previous one ends) for a fixed time per run, against one "
    "nginx 1.22 (1 worker) on 127.0.0.1 with a fresh connection per check. `ours` is "
    "`ldirectord.checks.run(target)`: registry lookup, the guarded deadline, our check "
    "(connect: sock_connect + reset close; http: our HTTP/1.1 client, 2xx + receive regex on "
    "the body; https: the same over TLS without verification). `raw` is the bare minimum of "
    "the same check under `asyncio.timeout`: connect: sock_connect + close; http(s): "
    "open_connection, one GET with Connection: close, read to EOF, look for ' 200 '. "
    "CPU s/1000 = the process's user+system CPU seconds per 1,000 checks (nginx not counted; on "
    "loopback the kernel's server-side TCP work is charged to the checker, so these are "
    "pessimistic). Runs interleaved, median of the reps; ratio = ours ÷ raw checks/s. "
    "`CPU raw/ours` = raw's CPU per check ÷ ours (1.0 = the same cost; 0.8 = ours costs 25% "
    "more): the steadier figure on a shared machine, where checks/s also measures the "
    "neighbours. "
    f"{IN_FLIGHT} in flight, 1 s per run, 7 reps (--quick: 20 in flight, one 0.4 s run). "
    "nginx is pinned to the last CPU and the checker to the others when there are two or more. "
    "bench/bench_checks.py."
)

Check = Callable[[], Awaitable[bool]]
_RESET = struct.pack("ii", 1, 0)


# --- the raw baselines ---------------------------------------------------------------------


def raw_connect(port: int) -> Check:
    async def check() -> bool:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            async with asyncio.timeout(DEADLINE):
                await loop.sock_connect(sock, ("127.0.0.1", port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
            return True
        finally:
            sock.close()

    return check


def raw_http(port: int, tls: ssl.SSLContext | None) -> Check:
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"

    async def check() -> bool:
        async with asyncio.timeout(DEADLINE):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=tls, server_hostname="" if tls else None
            )
            try:
                writer.write(request)
                data = await reader.read(-1)
            finally:
                writer.transport.abort()
        return b" 200 " in data[:20]

    return check


def tls_client() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# --- ours ----------------------------------------------------------------------------------


def ours(target: CheckTarget) -> Check:
    async def check() -> bool:
        return (await run_check(target)).up

    return check


def targets(server: Nginx) -> dict[str, tuple[Check, Check]]:
    def t(service: Service, port: int, kind: CheckType = CheckType.NEGOTIATE) -> CheckTarget:
        return check_target(
            service, port, kind=kind, receive="all is well", checktimeout=DEADLINE,
            negotiatetimeout=DEADLINE,
        )  # fmt: skip

    return {
        "connect": (ours(t(Service.HTTP, server.http_port, CheckType.CONNECT)),
                    raw_connect(server.http_port)),
        "http": (ours(t(Service.HTTP, server.http_port)), raw_http(server.http_port, None)),
        "https": (ours(t(Service.HTTPS, server.https_port)),
                  raw_http(server.https_port, tls_client())),
    }  # fmt: skip


# --- the closed loop -----------------------------------------------------------------------


async def closed_loop(check: Check, seconds: float, in_flight: int) -> dict[str, float]:
    done = errors = 0
    stop_at = 0.0

    async def worker() -> None:
        nonlocal done, errors
        while time.monotonic() < stop_at:
            try:
                ok = await check()
            except Exception:
                ok = False
            done += 1
            errors += not ok

    for _ in range(3):  # warm-up: first connections, TLS context, imports
        await check()
    cpu0, wall0 = time.process_time(), time.monotonic()
    stop_at = wall0 + seconds
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    return {"rate": done / wall, "cpu_per_1000": cpu / done * 1000 if done else 0.0,
            "errors": errors, "done": done}  # fmt: skip


def measure(check: Check, seconds: float, in_flight: int) -> dict[str, float]:
    return asyncio.run(closed_loop(check, seconds, in_flight))


def _pin_server(pid: int) -> None:
    """nginx on the last CPU, us on the others (as performance.md): best effort."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        for p in [pid, *map(int, children)]:
            os.sched_setaffinity(p, {cpus[-1]})
        os.sched_setaffinity(0, set(cpus[:-1]))
    except OSError:
        pass


def run(quick: bool = False) -> list[dict[str, Any]]:
    seconds, reps = (0.4, 1) if quick else (1.0, 7)
    in_flight = 20 if quick else IN_FLIGHT
    affinity = os.sched_getaffinity(0)
    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="ldbench-nginx-") as tmp,
        start_nginx(Path(tmp)) as nginx,
    ):
        _pin_server(nginx.pid)
        try:
            for name, (our_check, raw_check) in targets(nginx).items():
                samples: dict[str, list[dict[str, float]]] = {"ours": [], "raw": []}
                for _ in range(reps):  # interleaved: noise hits both alike
                    samples["raw"].append(measure(raw_check, seconds, in_flight))
                    samples["ours"].append(measure(our_check, seconds, in_flight))
                rows.append(_row(name, samples, reps))
        finally:
            os.sched_setaffinity(0, affinity)
    return rows


def _row(name: str, samples: dict[str, list[dict[str, float]]], reps: int) -> dict[str, Any]:
    def med(impl: str, key: str) -> float | None:
        return median(s[key] for s in samples[impl])

    ours_rate, raw_rate = med("ours", "rate"), med("raw", "rate")
    return {
        "check": name,
        "ours checks/s": round(ours_rate) if ours_rate else None,
        "raw checks/s": round(raw_rate) if raw_rate else None,
        "ours/raw": round(r, 2) if (r := ratio(ours_rate, raw_rate)) is not None else None,
        "ours CPU s/1000": (ours_cpu := med("ours", "cpu_per_1000")),
        "raw CPU s/1000": (raw_cpu := med("raw", "cpu_per_1000")),
        "CPU raw/ours": round(r, 2) if (r := ratio(raw_cpu, ours_cpu)) is not None else None,
        "ours errors": int(sum(s["errors"] for s in samples["ours"])),
        "raw errors": int(sum(s["errors"] for s in samples["raw"])),
        "reps": reps,
    }


def main(argv: list[str]) -> int:
    rows = run(quick="--quick" in argv)
    print(f"## {TITLE}\n")
    print(markdown_table(COLUMNS, rows))
    print(f"\n**Method.** {METHOD}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
