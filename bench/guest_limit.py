"""The limit: the least a director can do, as a daemon the scenarios can time (guest side).

    python -m bench.guest_limit CONFIG

Reads the ``real=`` lines of an ldirectord.cf written by bench.anchors, then every check
interval starts one HTTP GET per real at once (raw asyncio streams, one deadline each) and
streams ``ipvsadm -a``/``-d`` lines into one long-lived ``ipvsadm -R`` as results arrive. No
state machine, no config semantics beyond that, no logging: what a plain Python event loop plus
the kernel take on this machine. Its start-up and detection figures are the floor the other
daemons are compared to. Stdlib only; runs inside the User-Mode Linux guest.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time

from bench.anchors import VIRTUAL

REQUEST = b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n"


def read_reals(path: str) -> tuple[list[str], float, float]:
    with open(path) as fh:
        text = fh.read()
    reals = re.findall(r"^\s+real=(\S+)", text, re.M)
    interval = float(re.search(r"^checkinterval=(\d+)", text, re.M)[1])  # type: ignore[index]
    timeout = float(re.search(r"^checktimeout=(\d+)", text, re.M)[1])  # type: ignore[index]
    return reals, interval, timeout


async def check(real: str, timeout: float) -> bool:
    host, port = real.rsplit(":", 1)
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, int(port))
            try:
                writer.write(REQUEST)
                head = await reader.read(64)
            finally:
                writer.close()
        return head.startswith(b"HTTP/1.") and head[9:10] == b"2"
    except (OSError, TimeoutError):
        return False


async def run(path: str) -> None:
    reals, interval, timeout = read_reals(path)
    ipvsadm = subprocess.Popen(["ipvsadm", "-R"], stdin=subprocess.PIPE, text=True)
    assert ipvsadm.stdin is not None
    pipe = ipvsadm.stdin
    pipe.write(f"-A -t {VIRTUAL} -s wrr\n")
    pipe.flush()
    up: set[str] = set()

    async def one(real: str) -> None:
        ok = await check(real, timeout)
        if ok and real not in up:
            up.add(real)
            pipe.write(f"-a -t {VIRTUAL} -r {real} -m -w 1\n")
            pipe.flush()
        elif not ok and real in up:
            up.discard(real)
            pipe.write(f"-d -t {VIRTUAL} -r {real}\n")
            pipe.flush()

    tasks: dict[str, asyncio.Task[None]] = {}
    while True:
        started = time.monotonic()
        for real in reals:  # one task per real; a real still being checked is not restarted
            if real not in tasks or tasks[real].done():
                tasks[real] = asyncio.create_task(one(real))
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))


def main() -> None:
    asyncio.run(run(sys.argv[1]))


if __name__ == "__main__":
    main()
