"""The OCF resource agent: Debian's ocf-tester against it, and its stop fallback."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ldirectord.runtime.pidfile import process_gone
from tests.component.test_daemon_support import (
    LDIRECTORD,
    demo_config,
    http_reals,
    kill_pidfile,
    wait_for,
)
from tests.conftest import ROOT

pytestmark = [pytest.mark.component, pytest.mark.slow]

AGENT = ROOT / "contrib" / "ocf" / "ldirectord"


@pytest.fixture
def rundir(tmp_path: Path) -> Iterator[Path]:
    run = tmp_path / "run"
    run.mkdir()
    yield run
    for pid_file in run.glob("*.pid"):
        kill_pidfile(pid_file)


def _agent(action: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(AGENT), action], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_ocf_tester_passes(tmp_path: Path, rundir: Path) -> None:
    tester = shutil.which("ocf-tester")
    if tester is None or shutil.which("xmllint") is None:
        pytest.fail("ocf-tester/xmllint missing: run scripts/install-deps", pytrace=False)
    cfg = tmp_path / "ocf.cf"
    with http_reals(tmp_path, 2) as reals:
        demo_config(cfg, [r.port for r in reals])
        res = subprocess.run(
            [
                tester,
                "-n",
                "ldtest",
                "-o",
                f"configfile={cfg}",
                "-o",
                f"ldirectord={LDIRECTORD}",
                "-o",
                f"options=--dry-run --rundir {rundir}",
                str(AGENT),
            ],
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{AGENT} passed all tests" in res.stdout
    assert not list(rundir.glob("*.pid"))


def test_stop_finds_the_daemon_when_the_pid_file_is_gone(tmp_path: Path, rundir: Path) -> None:
    cfg = tmp_path / "gone.cf"
    env = dict(
        os.environ,
        OCF_ROOT="/usr/lib/ocf",
        OCF_RESKEY_configfile=str(cfg),
        OCF_RESKEY_ldirectord=LDIRECTORD,
        OCF_RESKEY_options=f"--dry-run --rundir {rundir}",
    )
    with http_reals(tmp_path, 1) as reals:
        demo_config(cfg, [reals[0].port])
        assert _agent("start", env).returncode == 0
        pid_file = rundir / "ldirectord.gone.cf.pid"
        pid = int(pid_file.read_text())
        assert _agent("monitor", env).returncode == 0
        pid_file.unlink()  # someone removed it (Perl ldirectord's CLI used to do exactly this)
        assert _agent("monitor", env).returncode == 7
        assert _agent("stop", env).returncode == 0
        wait_for(
            "the daemon to go",
            lambda: process_gone(pid),
            10,
        )
        # validate-all runs configtest: a broken config is OCF_ERR_CONFIGURED (6)
        cfg.write_text(cfg.read_text() + "\tbogus=1\n")
        assert _agent("validate-all", env).returncode == 6
        # monitor and stop never need the config
        assert _agent("monitor", env).returncode == 7
        assert _agent("stop", env).returncode == 0
