"""The User-Mode Linux runner itself (tests/kernel/uml.py): what it promises the kernel tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.kernel import uml

GUEST_SCRIPT = r"""
set -e
echo "cwd=$(pwd) foo=$FOO"
echo "to stderr" >&2
modprobe ip_vs
ipvsadm -A -t 10.9.9.9:80 -s rr
ipvsadm -Ln | grep -c 10.9.9.9:80
echo scratch > /etc/uml-runner-test
echo scratch > /usr/uml-runner-test
echo shared > "$OUT/from-guest"
head -c 1000000 /dev/zero | tr '\0' 'x' > "$OUT/big"
head -c 1000000 /dev/zero | tr '\0' 'x'
exit 7
"""


@pytest.mark.kernel
@pytest.mark.usefixtures("uml_harness")
def test_exit_code_output_env_cwd_and_filesystems(tmp_path: Path) -> None:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "FOO": "two words", "OUT": str(tmp_path)}
    result = uml.run_in_guest(
        ["sh", "-c", GUEST_SCRIPT],
        timeout=120,
        env=env,
        cwd="/usr/share",
        writable=[uml.REPO_ROOT, tmp_path],
    )
    assert result.returncode == 7, result
    lines = result.stdout.split("\n", 2)
    assert lines[:2] == ["cwd=/usr/share foo=two words", "1"]  # raw tty: no \r
    assert lines[2] == "x" * 1_000_000
    assert result.stderr == "to stderr\n"
    # The host root is read-only below throwaway layers; the writable dirs are shared.
    assert not Path("/etc/uml-runner-test").exists()
    assert not Path("/usr/uml-runner-test").exists()
    assert (tmp_path / "from-guest").read_text() == "shared\n"
    assert (tmp_path / "big").stat().st_size == 1_000_000
    assert result.duration > 0


@pytest.mark.kernel
@pytest.mark.usefixtures("uml_harness")
def test_a_background_child_holding_stdout_does_not_hang_the_run() -> None:
    started = time.monotonic()
    result = uml.run_in_guest(
        ["sh", "-c", "sleep 300 & (sleep 300 >&2 &); echo started"], timeout=120
    )
    assert (result.returncode, result.stdout) == (0, "started\n")
    assert time.monotonic() - started < 120


@pytest.mark.kernel
@pytest.mark.usefixtures("uml_harness")
def test_timeout_kills_the_guest_and_keeps_partial_output() -> None:
    before = set(os.listdir("/dev/shm"))
    started = time.monotonic()
    with pytest.raises(uml.GuestTimeoutError) as info:
        uml.run_in_guest(["sh", "-c", "echo begun; exec sleep 600"], timeout=3)
    assert time.monotonic() - started < 3 + 10
    assert info.value.stdout == "begun\n"
    leftovers = {n for n in set(os.listdir("/dev/shm")) - before if n.startswith("uml-")}
    assert leftovers == set()


def test_available_names_the_packages_when_the_kernel_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(uml, "UML_KERNEL", Path("/nonexistent/linux.uml"))
    reason = uml.available()
    assert reason is not None
    assert "apt-get install" in reason
    assert "user-mode-linux" in reason


def test_guest_python_is_a_real_interpreter_not_a_shim() -> None:
    path = Path(uml.guest_python())
    assert path.resolve().read_bytes()[:4] == b"\x7fELF"


@pytest.mark.parametrize(("ci", "outcome"), [("", "skipped"), ("true", "error")])
def test_missing_harness_skips_or_fails_under_ci(ci: str, outcome: str) -> None:
    env = {**os.environ, "UML_KERNEL": "/nonexistent/linux.uml", "CI": ci}
    env.pop("PYTEST_ADDOPTS", None)
    node = "tests/kernel/test_uml_runner.py::test_a_background_child_holding_stdout_does_not_hang_the_run"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", node],
        cwd=uml.REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert f"1 {outcome}" in proc.stdout, proc.stdout
    assert "apt-get install" in proc.stdout
