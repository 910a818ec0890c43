"""Helpers for the plugin tests: run check_ldirectord_pulse as a subprocess on pulse files.

Ages are pinned with os.utime just before the plugin starts. The plugin reports whole seconds
(rounded down), so an age is exact when the plugin ran within one second of the utime call;
``run_aged`` measures that and retries (bounded) when a loaded machine made it ambiguous.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from ldirectord import pulse_format as pf

SCRIPT = Path(sys.executable).with_name("check_ldirectord_pulse")
PLUGIN_MODULE = [sys.executable, "-m", "ldirectord.nagios.check_pulse"]
RUN_TIMEOUT = 60.0  # a subprocess bound, not a speed assertion
AGE_RETRIES = 5


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def first(self) -> str:
        return self.stdout.split("\n", 1)[0]

    @property
    def lines(self) -> list[str]:
        return self.stdout.rstrip("\n").split("\n")


def plugin_command() -> list[str]:
    return [str(SCRIPT)] if SCRIPT.exists() else list(PLUGIN_MODULE)


def run_plugin(*args: str, prefix: Sequence[str] = (), timeout: float = RUN_TIMEOUT) -> Result:
    proc = subprocess.run(
        [*prefix, *plugin_command(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "LC_ALL": "C.UTF-8"},
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def set_age(path: Path, age: float) -> float:
    """Set mtime to ``age`` seconds ago; returns the reference time used."""
    now = time.time()
    os.utime(path, (now - age, now - age))
    return now


def run_aged(path: Path, age: int, *args: str, prefix: Sequence[str] = ()) -> Result:
    """Run the plugin on ``path`` aged exactly ``age`` whole seconds (see module docstring)."""
    for _ in range(AGE_RETRIES):
        reference = set_age(path, age)
        result = run_plugin("-f", str(path), *args, prefix=prefix)
        if time.time() - reference < 1.0:
            return result
    pytest.skip(f"the machine is too loaded to start the plugin within 1 s ({AGE_RETRIES} tries)")


def make_doc(
    *,
    pid: int | None = None,
    virtuals: Sequence[tuple[str, int, int, bool]] = (("192.168.6.240:80", 2, 3, False),),
) -> pf.PulseDoc:
    now = time.time()
    return pf.PulseDoc(
        pid=os.getpid() if pid is None else pid,
        config="/etc/ha.d/ldirectord.cf",
        started=now - 100,
        beat=now,
        checks_completed=9876,
        virtuals=tuple(
            pf.PulseVirtual(
                name=name, protocol="tcp", reals_up=up, reals_total=total, fallback_active=fb
            )
            for name, up, total, fb in virtuals
        ),
    )


def write_pulse(path: Path, doc: pf.PulseDoc | bytes) -> Path:
    path.write_bytes(doc if isinstance(doc, bytes) else pf.encode(doc))
    return path


def dead_pid() -> int:
    """A pid that existed a moment ago and is now reaped (retried if it was reused at once)."""
    for _ in range(10):
        proc = subprocess.Popen([sys.executable, "-S", "-c", "pass"])
        proc.wait(timeout=RUN_TIMEOUT)
        try:
            os.kill(proc.pid, 0)
        except ProcessLookupError:
            return proc.pid
    pytest.skip("could not find a pid that stays dead")


def drop_dac_prefix() -> list[str]:
    """A command prefix that runs without the power to read a mode-000 file, or skip."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("tests run as root and setpriv (util-linux) is missing: cannot drop DAC caps")
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--"]


def as_nobody_prefix() -> list[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to the nobody user")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is missing")
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
