"""Reading and resetting the guest's IPVS table, and running a daemon under test (guest side).

Owns the parts every guest scenario shares: the table as seen in /proc/net/ip_vs (what the
benchmarks poll, every 0.1 s), flushing it and pre-loading it with ``ipvsadm -R``, the fleet
child process (bench.guest_fleet) and the daemon child process (its own session, so stopping
it kills every process it started). Stdlib only: it runs inside the User-Mode Linux guest.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence

from bench.anchors import VIRTUAL, Recipe

PROC_IP_VS = "/proc/net/ip_vs"
POLL_S = 0.1


def _hex_endpoint(text: str) -> str:
    addr, port = text.split(":")
    value = int(addr, 16)
    octets = ".".join(str((value >> s) & 0xFF) for s in (24, 16, 8, 0))
    return f"{octets}:{int(port, 16)}"


def read_table() -> dict[str, int]:
    """Every destination of every service in the table: ``"ip:port" -> weight``."""
    dests: dict[str, int] = {}
    with open(PROC_IP_VS) as fh:
        for line in fh:
            if line.startswith("  -> ") and ":" in line:
                fields = line.split()
                if len(fields) >= 4 and fields[1] != "RemoteAddress:Port":
                    dests[_hex_endpoint(fields[1])] = int(fields[3])
    return dests


def flush_table() -> None:
    subprocess.run(["ipvsadm", "-C"], check=False, timeout=30)


def preload_table(reals: Iterable[str]) -> None:
    """Put the virtual service and ``reals`` (weight 1, masq) in the table in one process."""
    rules = [f"-A -t {VIRTUAL} -s wrr"]
    rules += [f"-a -t {VIRTUAL} -r {r} -m -w 1" for r in reals]
    subprocess.run(
        ["ipvsadm", "-R"], input="\n".join(rules) + "\n", text=True, check=True, timeout=120
    )


def session_pids(leader: int) -> list[int]:
    """Every process in the session ``leader`` started (a daemon and its children)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == leader:
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def session_usage(leader: int) -> tuple[float, int]:
    """(user+system CPU seconds, RSS KiB) summed over a session's live processes."""
    tick = os.sysconf("SC_CLK_TCK")
    cpu, rss = 0.0, 0
    for pid in session_pids(leader):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / tick
            rss += int(fields[21]) * os.sysconf("SC_PAGE_SIZE") // 1024
        except (OSError, IndexError, ValueError):
            continue
    return cpu, rss


class Fleet:
    """The loopback real servers (bench.guest_fleet) as a child process we talk to by lines."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, healthy: Sequence[str], hung: Sequence[str], timeout: float) -> Fleet:
        import json

        spec = json.dumps({"healthy": list(healthy), "hung": list(hung)})
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.guest_fleet",
            spec,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        fleet = cls(proc)
        line = await fleet._line(timeout)
        if not line.startswith("ready"):
            raise RuntimeError(f"fleet did not start: {line!r}")
        return fleet

    async def _line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            return (await self.proc.stdout.readline()).decode().strip()

    async def command(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        await self.proc.stdin.drain()
        if await self._line(30) != "ok":
            raise RuntimeError(f"fleet refused {text!r}")

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


class Daemon:
    """One daemon under test, started in its own session from a Recipe."""

    def __init__(self, recipe: Recipe, log_path: str) -> None:
        self.recipe = recipe
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def start(self) -> float:
        with open(self.recipe.config_path, "w") as fh:
            fh.write(self.recipe.config_text)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it from here
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            self.recipe.argv,
            cwd=self.recipe.cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self.started

    def rewrite(self, recipe: Recipe) -> None:
        self.recipe = recipe
        tmp = recipe.config_path + ".new"
        with open(tmp, "w") as fh:
            fh.write(recipe.config_text)
        os.replace(tmp, recipe.config_path)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    async def stop(self, grace: float = 3.0) -> None:
        """Ask it to stop; past ``grace`` seconds kill its whole session. Bounded."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(self.recipe.stop_signal)
            deadline = time.monotonic() + grace
            while self.proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def log_tail(self, chars: int = 1500) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - chars))
                return fh.read().decode(errors="replace")
        except OSError:
            return ""
