"""fallbackcommand: ``<cmd> start|stop VIP:VPORT proto`` once per edge (reference §3.5).

Owns the edge detection per virtual (``start`` when it is left with no real up, ``stop`` when
the first real is back; each sent once, remembered per virtual) and running the command: in
the background, through /bin/sh, under a deadline after which its whole process group is
killed (ldirectord.procs), never two at once for one virtual (a ``stop`` waits for the
``start`` before it). ldirectord runs it synchronously with no timeout.

Knows nothing about the kernel or health beyond the ``any_up`` it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from ldirectord.config.model import VirtualService

#: Deadline of one fallbackcommand run (seconds).
FALLBACK_COMMAND_TIMEOUT = 30.0


def fallback_command_line(virtual: VirtualService, command: str, action: str) -> str:
    """ldirectord's do_fallback_command line: ``<cmd> <action> <server>:<port> <protocol>``."""
    where = ":0" if virtual.fwmark is not None else virtual.name
    return f"{command} {action} {where} {virtual.protocol}"


class FallbackCommands:
    def __init__(self, log: Callable[[str], None]) -> None:
        self._log = log
        self._state: dict[str, str] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def edge(self, virtual: VirtualService, any_up: bool, command: str | None) -> None:
        """Note the virtual's state; run ``command`` when it crossed an edge."""
        action = "stop" if any_up else "start"
        if self._state.get(virtual.vid) == action:
            return
        self._state[virtual.vid] = action
        if not command:
            return
        line = fallback_command_line(virtual, command, action)
        previous = self._tasks.get(virtual.vid)
        self._tasks[virtual.vid] = asyncio.create_task(self._run(line, previous))

    async def _run(self, line: str, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await previous
        from ldirectord.procs import run_process

        try:
            # As Perl system(): a command that starts a daemon ("sorry-server &") may leave it running;
            # only a command still running at its deadline has its whole group killed.
            result = await run_process(
                line, FALLBACK_COMMAND_TIMEOUT, shell=True, kill_group_on_exit=False
            )
        except Exception as exc:
            self._log(f"system({line}) failed: {exc}")
            return
        if not result.ok:
            why = "timed out" if result.timed_out else f"exit status {result.returncode}"
            self._log(f"system({line}) failed: {why}")

    async def finish(self) -> None:
        """Wait (bounded by the deadline) for the commands still running."""
        tasks = [t for t in self._tasks.values() if not t.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=FALLBACK_COMMAND_TIMEOUT + 1)
