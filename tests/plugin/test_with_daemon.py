"""The plugin against the pulse the real daemon writes (dry-run backend, loopback targets).

What the pulse exists for: a frozen daemon (SIGSTOP) goes CRITICAL by age, a crashed one
(SIGKILL) at once by its pid, a cleanly stopped one leaves no pulse. The daemon runs in a temp
rundir; teardown stops it and, failing that, kills the pid it wrote (our own process only).
"""

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
from pathlib import Path

import pytest

from tests.plugin.helpers import Result, run_plugin

pytestmark = pytest.mark.slow

LDIRECTORD = Path(sys.executable).with_name("ldirectord")
CMD_TIMEOUT = 60.0
WAIT = 30.0  # bound on every poll below


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


class Daemon:
    def __init__(self, rundir: Path, config: Path) -> None:
        self.rundir = rundir
        self.config = config
        self.pulse = rundir / f"ldirectord.{config.name}.pulse"
        self.pidfile = rundir / f"ldirectord.{config.name}.pid"
        self.healthy = self.empty = ""  # the two virtual services' names

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(LDIRECTORD), "--dry-run", "--rundir", str(self.rundir), str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=CMD_TIMEOUT,
            check=False,
        )

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def plugin(self, *args: str) -> Result:
        return run_plugin("-n", self.config.name, "--rundir", str(self.rundir), *args)

    def wait_for(self, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if ready():
                return
            time.sleep(0.2)
        pytest.fail(f"{what} within {WAIT} s")


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    if not LDIRECTORD.exists():
        pytest.skip(f"{LDIRECTORD} is not installed (pip install -e .)")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    live, dead = listener.getsockname()[1], _free_port()
    v1, v2 = _free_port(), _free_port()
    config = tmp_path / "test.cf"
    config.write_text(
        "checktimeout=1\ncheckinterval=1\nquiescent=no\n\n"
        f"virtual=127.0.0.1:{v1}\n\treal=127.0.0.1:{live} masq\n\tchecktype=connect\n"
        "\tprotocol=tcp\n\tscheduler=rr\n\n"
        f"virtual=127.0.0.1:{v2}\n\treal=127.0.0.1:{dead} masq\n\tchecktype=connect\n"
        "\tprotocol=tcp\n\tscheduler=rr\n"
    )
    d = Daemon(tmp_path, config)
    d.healthy, d.empty = f"127.0.0.1:{v1}", f"127.0.0.1:{v2}"
    started = d.command("start")
    if started.returncode != 0:
        listener.close()
        pytest.skip(f"the dry-run daemon did not start: {started.stderr.strip()[:200]}")
    try:
        d.wait_for("the daemon's first pulse with both virtuals judged", lambda: _judged(d))
        yield d
    finally:
        pid = d.pid()
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGCONT)  # a test may have left it stopped
            if d.command("stop").returncode != 0:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        listener.close()


def _judged(d: Daemon) -> bool:
    try:
        doc = json.loads(d.pulse.read_bytes())
    except (OSError, ValueError):
        return False
    ups = [v["reals_up"] for v in doc.get("virtuals", [])]
    return doc.get("checks_completed", 0) >= 2 and sorted(ups) == [0, 1]


def test_plugin_reads_the_daemons_pulse(daemon: Daemon) -> None:
    r = daemon.plugin()
    assert r.code == 2, r.stdout
    assert r.first.startswith(
        f"CRITICAL: virtual {daemon.empty} (0 of 1) has no real server up and no fallback; "
        "ldirectord pulse is regular ("
    )
    perf = r.first.split(" | ", 1)[1].split()
    assert perf[0].startswith("age=") and perf[0].endswith("s;120;300;0;")
    assert sorted(perf[1:]) == sorted([f"'{daemon.healthy}'=1;;;0;1", f"'{daemon.empty}'=0;;;0;1"])


def test_frozen_daemon_goes_critical_by_age_and_recovers(daemon: Daemon) -> None:
    pid = daemon.pid()
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        daemon.wait_for(
            "a frozen daemon's pulse to age past 2 s",
            lambda: "pulse has stopped" in daemon.plugin("-w", "1", "-c", "2").first,
        )
        r = daemon.plugin("-w", "1", "-c", "2")
        assert r.code == 2
        assert f"pid {pid} is gone" not in r.first  # stopped is not dead
    finally:
        os.kill(pid, signal.SIGCONT)
    daemon.wait_for(
        "the pulse to beat again after SIGCONT",
        lambda: "pulse is regular" in daemon.plugin("-w", "2", "-c", "5").first,
    )


def test_crashed_daemon_is_critical_at_once_by_pid(daemon: Daemon) -> None:
    pid = daemon.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    daemon.wait_for("the killed daemon to disappear", lambda: not _alive(pid))
    r = daemon.plugin()
    assert r.code == 2
    assert r.first.startswith(f"CRITICAL: ldirectord pid {pid} is gone; ")


def test_clean_stop_leaves_no_pulse(daemon: Daemon) -> None:
    assert daemon.command("stop").returncode == 0
    r = daemon.plugin()
    assert (r.code, r.first) == (
        2,
        f"CRITICAL: pulse file {daemon.pulse} does not exist: ldirectord is probably not running",
    )
    assert daemon.plugin("-i").code == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
