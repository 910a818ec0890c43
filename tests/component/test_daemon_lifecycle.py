"""The "Done when" sequence, as the OCF agent drives it, against the real binary.

start → status 0 → pulse beating → reload → bad reload keeps running (table untouched) →
stop (waits) → status 3, on the dry-run backend with real loopback HTTP real servers, the
daemon daemonised as a subprocess with --rundir in a temp dir; READY=1 and friends arrive on a
real NOTIFY_SOCKET.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

from ldirectord import pulse_format
from ldirectord.runtime.pidfile import process_gone
from tests.component.test_daemon_support import (
    LDIRECTORD,
    demo_config,
    http_reals,
    ldirectord,
    read_state,
    wait_for,
)

pytestmark = [pytest.mark.component, pytest.mark.slow]


def test_start_status_pulse_reload_badreload_stop(tmp_path: Path, rundir: Path) -> None:
    cfg = tmp_path / "lvs.cf"
    opts = ["--dry-run", "--rundir", str(rundir)]
    pid_file = rundir / "ldirectord.lvs.cf.pid"
    pulse = rundir / "ldirectord.lvs.cf.pulse"
    with http_reals(tmp_path, 2) as reals:
        ports = [r.port for r in reals]
        demo_config(cfg, ports)

        # --- start: daemonises, returns after the first reconcile
        t0 = time.monotonic()
        started = ldirectord(*opts, str(cfg), "start")
        assert started.returncode == 0, started.stderr
        start_returned = time.monotonic() - t0
        wait_for("running with 2/2 up", lambda: _status_of(rundir, "lvs.cf") == ("running", 2))
        ready_after = time.monotonic() - t0
        pid = int(pid_file.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[-3:-1] == [str(cfg).encode(), b"start"]  # pgrep -f fallback
        assert LDIRECTORD.encode() in b" ".join(cmdline)
        assert os.readlink(f"/proc/{pid}/cwd") == "/"

        # --- start again: already running → 0, same daemon
        assert ldirectord(*opts, str(cfg), "start").returncode == 0
        assert int(pid_file.read_text()) == pid

        # --- status 0 with ldirectord's exact first line, then our table
        st = ldirectord(*opts, str(cfg), "status")
        assert st.returncode == 0
        assert st.stderr == f"ldirectord for {cfg} is running with pid: {pid}\n"
        assert f"127.0.0.1:{ports[0]}" in st.stdout and "up" in st.stdout
        js = json.loads(ldirectord(*opts, str(cfg), "status", "--json").stdout)
        assert js["running"] and js["pid"] == pid and js["state"]["virtuals"][0]["reals_up"] == 2

        # --- the pulse beats (checkinterval 1 s) and says 2/2 up
        first = pulse.stat().st_mtime
        wait_for("the pulse to beat", lambda: pulse.stat().st_mtime > first + 0.5, 20)
        doc = pulse_format.decode(pulse.read_bytes())
        assert doc is not None and doc.pid == pid and doc.checks_completed >= 2
        assert [(v.name, v.reals_up, v.reals_total) for v in doc.virtuals] == [
            ("127.0.0.1:8080", 2, 2)
        ]

        # --- reload: a new weight goes through the reconciler
        demo_config(cfg, ports, weights=[1, 5])
        assert ldirectord(*opts, str(cfg), "reload").returncode == 0
        wait_for("the reload", lambda: read_state(rundir, "lvs.cf")["reloads"] == 1)

        def weights() -> list[object]:
            virtuals = read_state(rundir, "lvs.cf")["virtuals"]
            assert isinstance(virtuals, list)
            return [r["weight"] for r in virtuals[0]["reals"]]

        wait_for("weight 5", lambda: weights() == [1, 5])
        table_before = _table(rundir, "lvs.cf")

        # --- bad reload from the CLI: exit 2 with file:line:col, the daemon is not told
        good_text = cfg.read_text()
        cfg.write_text(good_text + "\tbogus=1\n")
        bad = ldirectord(*opts, str(cfg), "reload")
        assert bad.returncode == 2
        assert f"{cfg}:" in bad.stderr
        assert pid_file.exists() and int(pid_file.read_text()) == pid  # pid file untouched
        # status and stop still work with the broken config
        assert ldirectord(*opts, str(cfg), "status").returncode == 0

        # --- bad reload by SIGHUP (as `kill -HUP`): logged, old config keeps running
        os.kill(pid, 1)
        wait_for("the failed reload", lambda: read_state(rundir, "lvs.cf")["failed_reloads"] == 1)
        log = (tmp_path / "ldirectord.log").read_text()
        assert f"Error reading file {cfg}: {cfg}:" in log
        assert re.search(
            rf"Reloaded {re.escape(str(cfg))} in [0-9.]+ s \(reading [0-9.]+ s, kernel table [0-9.]+ s\)",
            log,
        )
        assert "the running configuration is unchanged" in log
        assert weights() == [1, 5]
        assert _table(rundir, "lvs.cf") == table_before  # the table is untouched

        # --- stop with the broken config: TERM, and `stop` returns once the daemon is gone
        t1 = time.monotonic()
        stopped = ldirectord(*opts, str(cfg), "stop")
        stop_took = time.monotonic() - t1
        assert stopped.returncode == 0, stopped.stderr
        assert process_gone(pid)
        assert not pid_file.exists()
        assert not pulse.exists()  # a clean stop removes the pulse (a crash leaves it)

        # --- status 3
        st = ldirectord(*opts, str(cfg), "status")
        assert st.returncode == 3
        assert st.stdout.startswith(f"ldirectord is stopped for {cfg}\n")
        log = (tmp_path / "ldirectord.log").read_text()
        assert "Purged virtual server (stop): 127.0.0.1:8080" in log
        assert "Linux Director Daemon terminated on signal: SIGTERM" in log
    print(
        f"\nstart returned after {start_returned:.2f} s, all reals up after {ready_after:.2f} s,"
        f" stop took {stop_took:.2f} s"
    )
    assert stop_took < 31


def _table(run: Path, name: str) -> list[tuple[object, ...]]:
    """(virtual, real, weight, health, last change) of every real, from the state file."""
    virtuals = read_state(run, name)["virtuals"]
    assert isinstance(virtuals, list)
    return [
        (v["name"], r["name"], r["weight"], r["health"], r["last_change"])
        for v in virtuals
        for r in v["reals"]
    ]


def _status_of(run: Path, name: str) -> tuple[object, object] | None:
    try:
        doc = read_state(run, name)
    except (OSError, ValueError):
        return None
    virtuals = doc["virtuals"]
    assert isinstance(virtuals, list)
    return doc["status"], virtuals[0]["reals_up"] if virtuals else None


def _recv_until(sock: socket.socket, prefix: str) -> tuple[str, list[str]]:
    seen = []
    while True:
        msg = sock.recv(4096).decode()
        seen.append(msg)
        if msg.startswith(prefix):
            return msg, seen


def test_systemd_notify_flow(tmp_path: Path, rundir: Path) -> None:
    """Type=notify: no fork, pid file kept, READY/STATUS/WATCHDOG/RELOADING/STOPPING."""
    cfg = tmp_path / "sd.cf"
    notify_path = str(tmp_path / "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(30)
    env = dict(os.environ, NOTIFY_SOCKET=notify_path, WATCHDOG_USEC="20000000")
    opts = ["--dry-run", "--rundir", str(rundir)]
    try:
        with http_reals(tmp_path, 2) as reals:
            demo_config(cfg, [r.port for r in reals])
            t0 = time.monotonic()
            proc = subprocess.Popen(
                [LDIRECTORD, *opts, str(cfg), "start"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            try:
                ready, _ = _recv_until(notify, "READY=1")
                ready_after = time.monotonic() - t0
                assert "STATUS=running: 1 virtual services, 2/2 real servers up" in ready
                assert int((rundir / "ldirectord.sd.cf.pid").read_text()) == proc.pid
                _recv_until(notify, "WATCHDOG=1")  # pinged from the pulse beat
                st = ldirectord(*opts, str(cfg), "status")
                assert st.returncode == 0 and f"pid: {proc.pid}" in st.stderr
                assert ldirectord(*opts, str(cfg), "reload").returncode == 0
                _recv_until(notify, "RELOADING=1\nMONOTONIC_USEC=")
                _recv_until(notify, "READY=1")
                proc.terminate()
                _recv_until(notify, "STOPPING=1")
                assert proc.wait(30) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                assert proc.stderr is not None
                proc.stderr.close()
    finally:
        notify.close()
    assert not (rundir / "ldirectord.sd.cf.pid").exists()
    print(f"\nsystemd start → READY=1 after {ready_after:.2f} s")


def test_stale_pid_file_and_stopped(tmp_path: Path, rundir: Path) -> None:
    cfg = tmp_path / "x.cf"
    cfg.write_text("this is not a config\n")  # status never reads it
    opts = ["--rundir", str(rundir)]
    st = ldirectord(*opts, str(cfg), "status")
    assert (st.returncode, st.stdout, st.stderr) == (3, f"ldirectord is stopped for {cfg}\n", "")
    pid_file = rundir / "ldirectord.x.cf.pid"
    pid_file.write_text("999999\n")
    st = ldirectord(*opts, str(cfg), "status")
    assert st.returncode == 1
    assert st.stderr == f"ldirectord stale pid file {pid_file} for {cfg}\n"
    assert st.stdout.startswith(f"ldirectord is stopped for {cfg}\n")
    assert ldirectord(*opts, str(cfg), "stop").returncode == 0
    assert ldirectord(*opts, str(cfg), "try-restart").returncode == 0
    reload = ldirectord(*opts, str(cfg), "reload")
    assert reload.returncode == 2  # ldirectord reads the config first
    bad_start = ldirectord(*opts, str(cfg), "start")
    assert bad_start.returncode == 2 and f"{cfg}:1:" in bad_start.stderr
    assert pid_file.read_text() == "999999\n"  # a CLI command never deletes a pid file
    missing = ldirectord(*opts, str(tmp_path / "nope.cf"), "start")
    assert missing.returncode == 1 and "not found" in missing.stderr


def test_unwritable_pulse_directory_is_a_loud_start_error(tmp_path: Path, rundir: Path) -> None:
    cfg = tmp_path / "p.cf"
    demo_config(cfg, [1])
    blocker = tmp_path / "file"
    blocker.write_text("")
    res = ldirectord(
        "--dry-run", "--rundir", str(rundir), "--pulse", f"{blocker}/x.pulse", str(cfg), "start"
    )
    assert res.returncode == 1
    assert "x.pulse" in res.stderr
    assert not (rundir / "ldirectord.p.cf.pid").exists()


def test_restart_and_try_restart(tmp_path: Path, rundir: Path) -> None:
    cfg = tmp_path / "rs.cf"
    opts = ["--dry-run", "--rundir", str(rundir)]
    pid_file = rundir / "ldirectord.rs.cf.pid"
    with http_reals(tmp_path, 1) as reals:
        demo_config(cfg, [reals[0].port])
        assert ldirectord(*opts, str(cfg), "restart").returncode == 0  # not running: starts
        first = int(pid_file.read_text())
        assert ldirectord(*opts, str(cfg), "restart").returncode == 0
        second = int(pid_file.read_text())
        assert second != first and process_gone(first)
        assert ldirectord(*opts, str(cfg), "try-restart").returncode == 0
        third = int(pid_file.read_text())
        assert third != second
        # a restart with a broken config: exit 2, and the running daemon is left alone
        good = cfg.read_text()
        cfg.write_text(good + "\tbogus=1\n")
        assert ldirectord(*opts, str(cfg), "restart").returncode == 2
        assert int(pid_file.read_text()) == third
        assert ldirectord(*opts, str(cfg), "status").returncode == 0
        assert ldirectord(*opts, str(cfg), "stop").returncode == 0
        assert ldirectord(*opts, str(cfg), "status").returncode == 3


def test_execute_instances_follow_the_parent(tmp_path: Path, rundir: Path) -> None:
    parent, child = tmp_path / "parent.cf", tmp_path / "child.cf"
    opts = ["--dry-run", "--rundir", str(rundir)]
    child_pid = rundir / "ldirectord.child.cf.pid"
    with http_reals(tmp_path, 2) as reals:
        demo_config(child, [reals[1].port])
        demo_config(parent, [reals[0].port], extra=f"execute={child}\n")
        assert ldirectord(*opts, str(parent), "start").returncode == 0
        wait_for("the child instance", child_pid.exists, 20)
        st = ldirectord(*opts, str(parent), "status")
        assert st.returncode == 0
        assert f"ldirectord for {child} is running with pid: " in st.stderr  # child's status
        # a reload without execute= stops the child
        demo_config(parent, [reals[0].port])
        assert ldirectord(*opts, str(parent), "reload").returncode == 0
        wait_for("the child to stop", lambda: not child_pid.exists(), 40)
        # and one with it starts it again; stopping the parent stops the child
        demo_config(parent, [reals[0].port], extra=f"execute={child}\n")
        assert ldirectord(*opts, str(parent), "reload").returncode == 0
        wait_for("the child again", child_pid.exists, 20)
        assert ldirectord(*opts, str(parent), "stop").returncode == 0
        assert not child_pid.exists()
        assert ldirectord(*opts, str(child), "status").returncode == 3


def test_racing_starts_make_one_daemon(tmp_path: Path, rundir: Path) -> None:
    cfg = tmp_path / "race.cf"
    opts = ["--dry-run", "--rundir", str(rundir)]
    with http_reals(tmp_path, 1) as reals:
        demo_config(cfg, [reals[0].port])
        procs = [
            subprocess.Popen(
                [LDIRECTORD, *opts, str(cfg), "start"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(8)
        ]
        assert [p.wait(60) for p in procs] == [0] * 8
        time.sleep(1)
        pid = int((rundir / "ldirectord.race.cf.pid").read_text())
        daemons = [
            p.name
            for p in Path("/proc").iterdir()
            if p.name.isdigit()
            and _cmdline(p).endswith(f"{cfg} start")
            and not process_gone(int(p.name))
        ]
        assert daemons == [str(pid)]
        assert ldirectord(*opts, str(cfg), "stop").returncode == 0


def _cmdline(proc_dir: Path) -> str:
    try:
        return (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""
