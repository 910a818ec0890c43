"""The fault suite's harness (no tests here): the real daemon as a subprocess, the plugin polled
in a bounded loop, the pulse watched, /proc sampled, and the loopback fleet of real servers.

Everything is bounded: each poller is a daemon thread that stops when its scenario ends (or at
a hard cap), every subprocess has a timeout, and teardown kills only what this harness started
(the daemon by the pid it wrote, after checking /proc/<pid>/cmdline; the fleet by its Popen).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
LDIRECTORD = str(BIN / "ldirectord")
PLUGIN = str(BIN / "check_ldirectord_pulse")
FLEET = str(Path(__file__).with_name("fleet.py"))
WARN, CRIT = 3, 6  # the plugin thresholds every scenario uses (-w 3 -c 6)
CMD_TIMEOUT = 60.0
MARK_ENV = "LDIRECTORD_FAULTS_MARK"  # inherited by the daemon's children: finds leftovers
POLLER_CAP = 240.0  # no poller thread outlives this, whatever a test does


def wait_for(what: str, predicate: Callable[[], object], timeout: float = 20.0) -> float:
    """Poll ``predicate`` every 50 ms; return the seconds it took, or fail after ``timeout``."""
    start = time.monotonic()
    deadline = start + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# --------------------------------------------------------------------------- /proc


def proc_children(pid: int) -> list[tuple[int, str, str]]:
    """(pid, state, comm) of every process whose parent is ``pid``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        comm_end = stat.rfind(")")
        fields = stat[comm_end + 2 :].split()
        if int(fields[1]) == pid:
            out.append((int(entry), fields[0], stat[stat.find("(") + 1 : comm_end]))
    return out


def marked_processes(mark: str, exclude: Sequence[int] = ()) -> list[tuple[int, str]]:
    """(pid, cmdline) of processes whose environment holds ``MARK_ENV=mark`` (our leftovers)."""
    needle = f"{MARK_ENV}={mark}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in exclude:
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append((int(entry), cmd.replace(b"\0", b" ").decode(errors="replace")))
    return found


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_targets(pid: int) -> set[str]:
    """``fd -> target`` of every open fd (e.g. ``7->socket:[12345]``): a fd that is still the
    same object much later has lived that long."""
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target == "anon_inode:[pidfd]":  # not unique: name it by the process it holds
                info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
                target += next((x for x in info.splitlines() if x.startswith("Pid:")), "")
            out.add(f"{fd}->{target}")
    return out


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --------------------------------------------------------------------------- the daemon


class Daemon:
    """One ``ldirectord --dry-run --rundir R CFG`` instance started with ``start``."""

    def __init__(self, base: Path, name: str = "faults.cf") -> None:
        self.base = base
        self.rundir = base / "run"
        self.rundir.mkdir(exist_ok=True)
        self.config = base / name
        self.log = base / "ldirectord.log"
        self.pulse = self.rundir / f"ldirectord.{name}.pulse"
        self.state_file = self.rundir / f"ldirectord.{name}.state"
        self.pidfile = self.rundir / f"ldirectord.{name}.pid"
        self.mark = uuid.uuid4().hex
        self.env = dict(os.environ, **{MARK_ENV: self.mark})
        self.options: list[str] = []  # extra options before the config (e.g. --pulse)
        self.backend = ["--dry-run"]  # the kernel faults use ["--backend", "ipvs"]
        self.pid = 0

    def write_config(self, body: str, **globals_: object) -> None:
        head = {
            "checkinterval": 1,
            "checktimeout": 2,
            "negotiatetimeout": 2,
            "quiescent": "no",
            "logfile": f'"{self.log}"',
        }
        head.update(globals_)
        lines = [f"{k}={v}" for k, v in head.items()]
        self.config.write_text("\n".join(lines) + "\n\n" + body)

    def argv(self, *args: str, options: Sequence[str] = ()) -> list[str]:
        """``ldirectord --dry-run --rundir R [options] CONFIG args...``"""
        head = [LDIRECTORD, *self.backend, "--rundir", str(self.rundir), *self.options, *options]
        return [*head, str(self.config), *args]

    def command(self, *args: str, timeout: float = CMD_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
            env=self.env,
        )

    def start(self) -> int:
        done = self.command("start")
        assert done.returncode == 0, f"start failed ({done.returncode}): {done.stderr}"
        self.pid = int(self.pidfile.read_text().split()[0])
        return self.pid

    def stop(self) -> subprocess.CompletedProcess[str]:
        return self.command("stop")

    def kill(self) -> None:
        """Teardown: SIGCONT then SIGKILL our daemon if it is still there (by its own pid)."""
        if not self.pid:
            return
        with contextlib.suppress(OSError):
            if b"ldirectord" in Path(f"/proc/{self.pid}/cmdline").read_bytes():
                os.kill(self.pid, signal.SIGCONT)
                os.kill(self.pid, signal.SIGKILL)

    def state(self) -> dict[str, Any]:
        """The state file the daemon writes with every beat (retried: it is replaced atomically)."""
        doc: dict[str, Any] = json.loads(self.state_file.read_text())
        return doc

    def status_json(self) -> dict[str, Any]:
        done = self.command("status", "--json")
        doc: dict[str, Any] = json.loads(done.stdout)
        return doc

    def table(self) -> dict[str, dict[str, int | None]]:
        """virtual name → {real name: kernel weight (None when absent)} from the state file."""
        return {
            v["name"]: {r["name"]: r["weight"] for r in v["reals"]}
            for v in self.state()["virtuals"]
        }

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def zombies(self) -> list[tuple[int, str, str]]:
        return [c for c in proc_children(self.pid) if c[1] == "Z"]


def kill_daemon(d: Daemon) -> None:
    """Teardown: stop a daemon a test left running (SIGKILL if stop fails) and its children."""
    if d.pid and alive(d.pid):
        with contextlib.suppress(Exception):
            os.kill(d.pid, signal.SIGCONT)
            d.stop()
        d.kill()
    for pid, _ in marked_processes(d.mark):  # children a failed test left behind
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@dataclass
class Sample:
    at: float  # monotonic, when the plugin was started
    code: int
    line: str
    wall0: float = 0.0  # wall clock when the plugin was started
    wall1: float = 0.0  # and when it had answered

    def expected(self, mtime: float) -> set[int]:
        """The codes the plugin may rightly give if the last beat was at ``mtime`` (and none
        came since): its age is judged at some moment between start and answer."""
        ages = range(int(self.wall0 - mtime), int(self.wall1 - mtime) + 1)
        return {0 if a <= WARN else 1 if a <= CRIT else 2 for a in ages}


def run_plugin(pulse: Path, *args: str) -> Sample:
    argv = [PLUGIN, "-f", str(pulse), "-w", str(WARN), "-c", str(CRIT), *args]
    at, wall0 = time.monotonic(), time.time()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return Sample(at, -1, "plugin timed out after 30 s", wall0, time.time())
    return Sample(at, done.returncode, done.stdout.split("\n", 1)[0], wall0, time.time())


class _Poller(threading.Thread):
    def __init__(self, name: str, every: float) -> None:
        super().__init__(name=name, daemon=True)
        self.every = every
        self._halt = threading.Event()
        self._cap = time.monotonic() + POLLER_CAP

    def run(self) -> None:
        while not self._halt.is_set() and time.monotonic() < self._cap:
            self.poll()
            self._halt.wait(self.every)

    def poll(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._halt.set()
        self.join(35)


class PluginPoller(_Poller):
    """Runs the plugin (``-w 3 -c 6``) every ``every`` seconds and keeps every answer."""

    def __init__(self, pulse: Path, every: float = 0.5, args: Sequence[str] = ()) -> None:
        super().__init__("plugin-poller", every)
        self.pulse = pulse
        self.args = list(args)
        self.samples: list[Sample] = []

    def poll(self) -> None:
        self.samples.append(run_plugin(self.pulse, *self.args))

    def since(self, t0: float) -> list[Sample]:
        return [s for s in self.samples if s.at >= t0]

    def not_ok(self, t0: float = 0.0, t1: float = float("inf")) -> list[Sample]:
        return [s for s in self.samples if t0 <= s.at <= t1 and s.code != 0]

    def first(self, code: int, t0: float = 0.0) -> Sample | None:
        return next((s for s in self.samples if s.at >= t0 and s.code == code), None)


class PulseWatcher(_Poller):
    """Stats the pulse every 50 ms; records each new mtime with the monotonic time it was seen."""

    def __init__(self, pulse: Path, every: float = 0.05) -> None:
        super().__init__("pulse-watcher", every)
        self.pulse = pulse
        self.beats: list[tuple[float, float]] = []  # (seen at monotonic, mtime)

    def poll(self) -> None:
        try:
            mtime = self.pulse.stat().st_mtime
        except OSError:
            return
        if not self.beats or self.beats[-1][1] != mtime:
            self.beats.append((time.monotonic(), mtime))

    def max_gap(self, t0: float = 0.0, t1: float = float("inf")) -> float:
        """The longest pause between two beats (by mtime) seen in [t0, t1], and up to t1."""
        seen = [(at, m) for at, m in self.beats if t0 <= at <= t1]
        gaps = [b[1] - a[1] for a, b in itertools.pairwise(seen)]
        end = min(t1, time.monotonic())
        if seen:  # the pause still running at the end counts too (by observation time)
            gaps.append(end - seen[-1][0])
        return max(gaps, default=float("inf"))


@contextlib.contextmanager
def watching(
    daemon: Daemon, *, plugin_every: float = 0.5
) -> Iterator[tuple[PluginPoller, PulseWatcher]]:
    plugin = PluginPoller(daemon.pulse, plugin_every)
    pulse = PulseWatcher(daemon.pulse)
    plugin.start()
    pulse.start()
    try:
        yield plugin, pulse
    finally:
        plugin.stop()
        pulse.stop()


# --------------------------------------------------------------------------- the fleet


@dataclass
class Listener:
    host: str
    proto: str
    mode: str
    port: int = 0

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class Fleet:
    """The loopback fleet child process (tests/faults/fleet.py) and its listeners."""

    listeners: list[Listener]
    proc: subprocess.Popen[str] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, cert: Path | None = None, key: Path | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, FLEET],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        spec = {
            "listeners": [
                {"host": x.host, "proto": x.proto, "mode": x.mode} for x in self.listeners
            ],
            "cert": str(cert) if cert else None,
            "key": str(key) if key else None,
        }
        ports = self._ask(spec)["ports"]
        for listener, port in zip(self.listeners, ports, strict=True):
            listener.port = port

    def _ask(self, msg: dict[str, Any]) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        with self._lock:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()  # the fleet answers every line at once
        if not line:
            raise RuntimeError("the fleet process died")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def set_mode(self, listener: Listener, mode: str) -> None:
        self._ask({"op": "mode", "index": self.listeners.index(listener), "mode": mode})
        listener.mode = mode

    def stats(self) -> dict[str, int]:
        return self._ask({"op": "stats"})

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@contextlib.contextmanager
def fleet(
    listeners: list[Listener], cert: Path | None = None, key: Path | None = None
) -> Iterator[Fleet]:
    running = Fleet(listeners)
    try:
        running.start(cert, key)
        yield running
    finally:
        running.stop()


class Addresses:
    """Distinct loopback addresses 127.<b>.<c>.<d> for one scenario (a random /16 per run)."""

    def __init__(self) -> None:
        self.b = 64 + int.from_bytes(os.urandom(1), "big") % 128
        self.n = 0

    def next(self) -> str:
        self.n += 1
        c, d = divmod(self.n, 250)
        return f"127.{self.b}.{c}.{d + 1}"


def make_cert(base: Path) -> tuple[Path, Path]:
    cert, key = base / "cert.pem", base / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=faults.test",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return cert, key
