"""Run the engine (Director + IpvsBackend) on a config file until killed; print "ready" once
every first check is in the kernel. Guest-side: the traffic tests kill it with SIGKILL.

    python tests/kernel/guest/run_director.py CONFIG
"""

from __future__ import annotations

import asyncio
import sys

from ldirectord.config import load
from ldirectord.engine.director import Director
from ldirectord.engine.events import LoggingEventSink
from ldirectord.forwarding.ipvs import IpvsBackend


async def main(path: str) -> None:
    director = Director(load(path, check_files=False), IpvsBackend(), LoggingEventSink())
    await director.start()
    if not await director.wait_first_checks(timeout=30):
        raise SystemExit("first checks did not finish within 30 s")
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
