"""``execute=<configfile>``: further ldirectord instances this one starts, reloads and stops.

As ldirectord's ld_cmd_children: after the first reconcile each instance gets ``start``; on a
clean stop ``stop``; on a reload, instances that disappeared get ``stop``, kept ones ``reload``
(``start`` when that fails), new ones ``start``; ``status`` of this instance also runs
``status`` for each. Every command runs ``<this ldirectord> [--rundir/--backend as ours]
<configfile> <command>`` in its own process group with a deadline (ldirectord waits forever).
Knows nothing about the engine.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from ldirectord.procs import run_process

DEADLINES = {"start": 30.0, "stop": 45.0, "reload": 30.0, "status": 10.0}


def self_command() -> tuple[str, ...]:
    """How to run this program again (taken before the daemon changes to /)."""
    argv0 = sys.argv[0] if sys.argv else ""
    if not argv0 or argv0.endswith("__main__.py") or argv0 == "-c":
        return (sys.executable, "-m", "ldirectord")
    return (os.path.abspath(argv0),)


def child_argv(
    program: Sequence[str], options: Sequence[str], child: str, command: str
) -> list[str]:
    return [*program, *options, child, command]


class Instances:
    def __init__(
        self, program: Sequence[str], options: Sequence[str], log: Callable[[str], None]
    ) -> None:
        self.program = tuple(program)
        self.options = tuple(options)
        self._log = log

    async def command(self, children: Sequence[str], command: str) -> None:
        for child in children:
            await self._run(child, command)

    async def reload(self, old: Sequence[str], new: Sequence[str]) -> None:
        gone = [c for c in old if c not in new]
        kept = [c for c in new if c in old]
        added = [c for c in new if c not in old]
        await self.command(gone, "stop")
        for child in kept:
            if not await self._run(child, "reload"):
                await self._run(child, "start")
        await self.command(added, "start")

    async def _run(self, child: str, command: str) -> bool:
        argv = child_argv(self.program, self.options, child, command)
        result = await run_process(argv, DEADLINES[command], kill_group_on_exit=False)
        if result.ok:
            return True
        why = "timed out" if result.timed_out else f"exited {result.returncode}"
        detail = (result.error or result.output.decode(errors="replace")).strip()[:300]
        self._log(f"system({' '.join(argv)}) failed: {why} {detail}".rstrip())
        return False
