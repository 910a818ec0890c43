"""Support for the daemon component tests (no tests here): the real binary, loopback HTTP reals."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

LDIRECTORD = str(Path(sys.executable).parent / "ldirectord")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(what: str, predicate: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class RealServer:
    port: int
    root: Path
    proc: subprocess.Popen[bytes]


@contextlib.contextmanager
def http_reals(base: Path, count: int = 2) -> Iterator[list[RealServer]]:
    """``count`` real HTTP servers (python -m http.server) on loopback, serving health.html."""
    servers: list[RealServer] = []
    try:
        for i in range(count):
            root = base / f"www{i}"
            root.mkdir()
            (root / "health.html").write_text("OK\n")
            port = free_port()
            proc = subprocess.Popen(
                [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
                cwd=root,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            servers.append(RealServer(port, root, proc))
        for server in servers:
            wait_for(f"real server on {server.port}", lambda s=server: _accepts(s.port))
        yield servers
    finally:
        for server in servers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait(10)


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def demo_config(
    path: Path, ports: list[int], *, extra: str = "", weights: list[int] | None = None
) -> None:
    weights = weights or [1] * len(ports)
    reals = "".join(f"\treal=127.0.0.1:{p} masq {w}\n" for p, w in zip(ports, weights, strict=True))
    path.write_text(
        "checktimeout=5\nnegotiatetimeout=5\ncheckinterval=1\n"
        f'logfile="{path.parent}/ldirectord.log"\n{extra}\n'
        "virtual=127.0.0.1:8080\n"
        f"{reals}"
        '\tservice=http\n\trequest="health.html"\n\treceive="OK"\n\tscheduler=wrr\n'
    )


def ldirectord(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LDIRECTORD, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def kill_pidfile(path: Path) -> None:
    """Teardown: kill a daemon a failed test left behind (by its pid file only)."""
    with contextlib.suppress(OSError, ValueError):
        pid = int(path.read_text().split()[0])
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"ldirectord" in cmd:
            os.kill(pid, signal.SIGKILL)


def read_state(run: Path, name: str) -> dict[str, object]:
    """The daemon's state file (what `status --json` shows)."""
    doc: dict[str, object] = json.loads((run / f"ldirectord.{name}.state").read_text())
    return doc
