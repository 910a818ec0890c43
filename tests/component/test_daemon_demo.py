"""scripts/demo (the README's run command) starts the real servers and the director, shows
both reals added, and Ctrl-C (SIGINT) stops everything cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.component, pytest.mark.slow]


def _busy(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_demo_runs_and_stops_on_ctrl_c() -> None:
    if _busy(18081) or _busy(18082):
        pytest.skip("the demo's ports 18081/18082 are in use")
    proc = subprocess.Popen(
        [str(ROOT / "scripts" / "demo")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        wanted = {"Added real server: 127.0.0.1:18081", "Added real server: 127.0.0.1:18082"}
        while wanted and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            wanted = {w for w in wanted if not line.startswith(w)}
        assert not wanted, "".join(lines)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal reaches the whole group
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = "".join(lines) + rest
    assert "status table:" in text and "Purged virtual server (stop): 127.0.0.1:8080" in text
    assert "Linux Director Daemon terminated on signal: SIGINT" in text
    assert not _busy(18081) and not _busy(18082)
