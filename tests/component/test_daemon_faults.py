"""Daemon faults: autoreload with half-written and vanished configs, monitorfile, callback,
and a blocked event loop (test-only hook) that the stall detector and the pulse expose."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.component.test_daemon_support import (
    demo_config,
    http_reals,
    ldirectord,
    read_state,
    wait_for,
)

pytestmark = [pytest.mark.component, pytest.mark.faults, pytest.mark.slow]


def _replace(path: Path, text: str) -> None:
    tmp = path.with_suffix(".new")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_autoreload_survives_half_written_and_vanished_config(tmp_path: Path, rundir: Path) -> None:
    cfg = tmp_path / "auto.cf"
    log = tmp_path / "ldirectord.log"
    monitor = tmp_path / "monitor.log"
    callback = tmp_path / "callback.sh"
    called = tmp_path / "called.txt"
    callback.write_text(f'#!/bin/sh\necho "$@" >> {called}\n')
    callback.chmod(0o755)
    opts = ["--dry-run", "--rundir", str(rundir)]
    extra = f'autoreload=yes\ncallback="{callback}"\n'
    with http_reals(tmp_path, 2) as reals:
        ports = [r.port for r in reals]
        demo_config(cfg, ports, extra=extra)
        cfg.write_text(cfg.read_text() + f'\tmonitorfile="{monitor}"\n')
        good = cfg.read_text()
        assert ldirectord(*opts, str(cfg), "start").returncode == 0
        pid = int((rundir / "ldirectord.auto.cf.pid").read_text())
        wait_for("monitorfile lines", lambda: monitor.exists() and "[up]" in monitor.read_text())
        line = monitor.read_text().splitlines()[0]
        assert f"] [{pid}] negotiate http tcp 127.0.0.1 " in line

        # a good change is picked up by the poll (mtime, then content hash)
        _replace(cfg, good.replace(f":{ports[1]} masq 1", f":{ports[1]} masq 7"))
        wait_for("the autoreload", lambda: read_state(rundir, "auto.cf")["reloads"] == 1)
        text = log.read_text()
        assert f"Configuration file '{cfg}' has changed on disk" in text
        assert " - reread new configuration" in text
        wait_for("the callback", lambda: called.exists() and str(cfg) in called.read_text())

        # half-written: the old config keeps running, untouched
        cfg.write_text(good[: good.index("\treal=") + 12])
        wait_for("the failed reload", lambda: read_state(rundir, "auto.cf")["failed_reloads"] == 1)
        virtuals = read_state(rundir, "auto.cf")["virtuals"]
        assert isinstance(virtuals, list)
        assert [r["weight"] for r in virtuals[0]["reals"]] == [1, 7]

        # the config replaced by a directory: logged, the daemon keeps running
        cfg.unlink()
        cfg.mkdir()
        time.sleep(2.5)
        assert ldirectord(*opts, str(cfg), "status").returncode == 0
        assert int((rundir / "ldirectord.auto.cf.pid").read_text()) == pid

        # and back to a good file: reloaded again
        cfg.rmdir()
        cfg.write_text(good)
        wait_for("the second reload", lambda: read_state(rundir, "auto.cf")["reloads"] == 2)
        assert ldirectord(*opts, str(cfg), "stop").returncode == 0
    text = log.read_text()
    assert "Reload abandoned" in text and "the running configuration is unchanged" in text


def test_blocked_loop_is_diagnosed_and_stops_the_pulse(tmp_path: Path, rundir: Path) -> None:
    cfg = tmp_path / "stall.cf"
    log = tmp_path / "ldirectord.log"
    pulse = rundir / "ldirectord.stall.cf.pulse"
    env = dict(os.environ, LDIRECTORD_TEST_STALL="8")
    opts = ["--dry-run", "--rundir", str(rundir)]
    with http_reals(tmp_path, 1) as reals:
        demo_config(cfg, [reals[0].port])
        assert ldirectord(*opts, str(cfg), "start", env=env).returncode == 0
        pid = int((rundir / "ldirectord.stall.cf.pid").read_text())
        first = pulse.stat().st_mtime
        wait_for("the pulse to beat", lambda: pulse.stat().st_mtime > first, 10)
        os.kill(pid, signal.SIGUSR2)
        wait_for("the hook", lambda: "TEST HOOK: blocking the event loop" in log.read_text())
        frozen = pulse.stat().st_mtime
        wait_for("the stall report", lambda: "Event loop stalled" in log.read_text(), 15)
        assert pulse.stat().st_mtime == frozen  # no beat while the loop is blocked
        text = log.read_text()
        assert "main thread stack:" in text and "block" in text
        wait_for("recovery", lambda: "Event loop running again" in log.read_text(), 15)
        wait_for("the pulse to beat again", lambda: pulse.stat().st_mtime > frozen, 10)
        assert ldirectord(*opts, str(cfg), "stop").returncode == 0


def test_hung_real_server_blocks_neither_pulse_nor_stop(tmp_path: Path, rundir: Path) -> None:
    from tests.helpers.hostile import hang

    cfg = tmp_path / "hung.cf"
    pulse = rundir / "ldirectord.hung.cf.pulse"
    opts = ["--dry-run", "--rundir", str(rundir)]
    with http_reals(tmp_path, 1) as reals, hang() as peer:
        cfg.write_text(
            "checkinterval=1\nnegotiatetimeout=25\nchecktimeout=25\n"
            f'logfile="{tmp_path}/ldirectord.log"\n'
            "virtual=127.0.0.1:8080\n"
            f"\treal=127.0.0.1:{reals[0].port} masq 1\n"
            f"\treal=127.0.0.1:{peer.port} masq 1\n"
            '\tservice=http\n\trequest="health.html"\n\treceive="OK"\n'
        )
        t0 = time.monotonic()
        assert ldirectord(*opts, str(cfg), "start").returncode == 0
        assert time.monotonic() - t0 < 10  # start does not wait for the hung check
        first = pulse.stat().st_mtime
        # the healthy real's checks keep the pulse beating while the other check hangs
        wait_for("two more beats", lambda: pulse.stat().st_mtime > first + 1.5, 10)
        st = ldirectord(*opts, str(cfg), "status")
        assert st.returncode == 0
        t1 = time.monotonic()
        stopped = ldirectord(*opts, str(cfg), "stop")
        took = time.monotonic() - t1
        assert stopped.returncode == 0 and took < 10, (took, stopped.stderr)


def test_stop_during_slow_first_checks(tmp_path: Path, rundir: Path) -> None:
    """TERM while the first round of checks still waits on a hung real: out in seconds."""
    import socket
    import subprocess

    from tests.component.test_daemon_support import LDIRECTORD
    from tests.helpers.hostile import hang

    cfg = tmp_path / "slow.cf"
    notify_path = str(tmp_path / "notify.sock")
    with hang() as peer, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(notify_path)
        cfg.write_text(
            "checkinterval=1\nnegotiatetimeout=25\nchecktimeout=25\n"
            f'logfile="{tmp_path}/ldirectord.log"\n'
            "virtual=127.0.0.1:8080\n"
            f"\treal=127.0.0.1:{peer.port} masq 1\n"
            '\tservice=http\n\trequest="health.html"\n\treceive="OK"\n'
        )
        proc = subprocess.Popen(
            [LDIRECTORD, "--dry-run", "--rundir", str(rundir), str(cfg), "start"],
            env=dict(os.environ, NOTIFY_SOCKET=notify_path),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for("the first check to hang", lambda: peer.accepted >= 1, 10)
            t0 = time.monotonic()
            proc.terminate()
            assert proc.wait(15) == 0
            assert time.monotonic() - t0 < 10
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_pulse_write_failure_is_loud_and_recovers(tmp_path: Path, rundir: Path) -> None:
    import shutil

    cfg = tmp_path / "pw.cf"
    log = tmp_path / "ldirectord.log"
    pulse_dir = tmp_path / "pulse"
    pulse_dir.mkdir()
    pulse = pulse_dir / "pw.pulse"
    opts = ["--dry-run", "--rundir", str(rundir), "--pulse", str(pulse)]
    with http_reals(tmp_path, 1) as reals:
        demo_config(cfg, [reals[0].port])
        assert ldirectord(*opts, str(cfg), "start").returncode == 0
        wait_for("the pulse", pulse.exists, 10)
        shutil.rmtree(pulse_dir)  # the pulse directory vanishes under the running daemon
        wait_for("the loud error", lambda: "the pulse has stopped" in log.read_text(), 10)
        time.sleep(3)  # several failed beats: still one line (rate-limited), still running
        assert log.read_text().count("the pulse has stopped") == 1
        assert ldirectord(*opts, str(cfg), "status").returncode == 0
        pulse_dir.mkdir()
        wait_for("the pulse to come back", pulse.exists, 10)
        assert ldirectord(*opts, str(cfg), "stop").returncode == 0


def test_status_answers_for_a_frozen_daemon(tmp_path: Path, rundir: Path) -> None:
    cfg = tmp_path / "frozen.cf"
    opts = ["--dry-run", "--rundir", str(rundir)]
    with http_reals(tmp_path, 1) as reals:
        demo_config(cfg, [reals[0].port])
        assert ldirectord(*opts, str(cfg), "start").returncode == 0
        pid = int((rundir / "ldirectord.frozen.cf.pid").read_text())
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(4)
            st = ldirectord(*opts, str(cfg), "status", "--json")
            doc = json.loads(st.stdout)
            assert st.returncode == 0 and doc["pulse"]["age"] >= 3.0  # the pulse stopped
        finally:
            os.kill(pid, signal.SIGCONT)
        pulse = rundir / "ldirectord.frozen.cf.pulse"
        thawed = pulse.stat().st_mtime
        wait_for("the beat after SIGCONT", lambda: pulse.stat().st_mtime > thawed, 10)
        assert ldirectord(*opts, str(cfg), "stop").returncode == 0
