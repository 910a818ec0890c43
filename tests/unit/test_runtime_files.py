"""pid file, pulse writer, monitorfile and log formats: pure-ish helpers on a tmp dir."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ldirectord.config.model import (
    CheckSpec,
    CheckType,
    Family,
    Method,
    Protocol,
    RealServer,
    Service,
    VirtualService,
)
from ldirectord.runtime import logsetup, monitorfile, pidfile
from ldirectord.runtime.pulse import ErrorGate, FileWriter, Pulse, check_writable, write_atomic
from ldirectord.runtime.sdnotify import Notifier


def test_pid_file_missing_stale_and_running(tmp_path: Path) -> None:
    path = str(tmp_path / "ldirectord.x.pid")
    assert pidfile.probe(path) == pidfile.PidState(path, False, None, False)
    Path(path).write_text("garbage\n")
    st = pidfile.probe(path)
    assert st.exists and st.stale and st.pid is None
    # a live process whose cmdline does not mention ldirectord: stale, as ldirectord says
    Path(path).write_text(f"{os.getpid()}\n")
    assert pidfile.probe(path).stale == ("ldirectord" not in " ".join(sys.argv))
    # a live process whose cmdline does
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)", "ldirectord", "x", "start"]
    )
    try:
        pidfile.write_pid(path, proc.pid)
        assert Path(path).read_text() == f"{proc.pid}\n"
        assert pidfile.probe(path).running
        assert not pidfile.remove_if_ours(path, proc.pid + 1)  # not ours: untouched
        assert os.path.exists(path)
    finally:
        proc.kill()
        proc.wait()
    assert pidfile.process_gone(proc.pid)
    assert pidfile.probe(path).stale
    assert pidfile.remove_if_ours(path, proc.pid)
    assert not os.path.exists(path)


def test_write_atomic_and_check_writable(tmp_path: Path) -> None:
    target = tmp_path / "p.pulse"
    write_atomic(str(target), b"abc")
    assert target.read_bytes() == b"abc"
    assert [p.name for p in tmp_path.iterdir()] == ["p.pulse"]  # no temp file left
    assert check_writable(str(target)) is None
    assert "does not exist" in (check_writable(str(tmp_path / "nope" / "x.pulse")) or "")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.geteuid() != 0:  # root writes anywhere; the daemon test covers a real failure
            assert check_writable(str(ro / "x.pulse")) is not None
    finally:
        ro.chmod(0o700)
    (tmp_path / "dir.pulse").mkdir()
    assert "directory" in (check_writable(str(tmp_path / "dir.pulse")) or "")


def test_pulse_rate_limit_and_watchdog(tmp_path: Path) -> None:
    errors: list[str] = []
    writer = FileWriter(lambda path, exc: errors.append(path))
    notifier = Notifier(env={})
    renders: list[float] = []

    def render(wall: float) -> bytes:
        renders.append(wall)
        return f"{len(renders)}".encode()

    pulse = Pulse(str(tmp_path / "x.pulse"), writer=writer, notifier=notifier, render=render)
    assert pulse.beat()
    assert not pulse.beat()  # within a second: no beat
    assert pulse.beat(force=True)
    pulse.last_beat -= 1.0
    assert pulse.beat()
    assert writer.flush(5)
    assert (tmp_path / "x.pulse").read_bytes() == b"3"
    writer.close()
    assert not errors


def test_writer_reports_failures(tmp_path: Path) -> None:
    errors: list[str] = []
    writer = FileWriter(lambda path, exc: errors.append(f"{path}: {exc.strerror}"))
    writer.submit(str(tmp_path / "missing-dir" / "x"), b"1")
    assert writer.flush(5)
    writer.close()
    assert errors and "No such file" in errors[0]


def test_error_gate_rate_limits() -> None:
    lines: list[str] = []
    gate = ErrorGate(lines.append, every=3600)
    for _ in range(5):
        gate("k", "boom")
    gate("other", "bang")
    assert lines == ["boom", "bang"]


def _virtual(**kw: object) -> VirtualService:
    base: dict[str, object] = dict(
        family=Family.INET,
        protocol=Protocol.TCP,
        address="192.168.6.240",
        port=80,
        fwmark=None,
        address_as_written="192.168.6.240:80",
        check=CheckSpec(checktype=CheckType.NEGOTIATE, service=Service.HTTP, receive="Test Page"),
    )
    base.update(kw)
    return VirtualService(**base)  # type: ignore[arg-type]


def test_monitorfile_line_matches_ldirectord() -> None:
    v = _virtual()
    r = RealServer("192.168.6.2", 80, Method.GATE, weight=1, request="/index.html")
    line = monitorfile.format_line(v, r, False, "500 Internal|Error\n100%", now=0, pid=42)
    stamp = logsetup.ctime_now(0)
    assert line == (
        f"[{stamp}] [42] negotiate http tcp 192.168.6.2 80 1 gate /index.html Test Page "
        "[down] 500 Internal%7cError%0a100%25\n"
    )
    assert monitorfile.format_line(v, r, True, "", now=0, pid=1).endswith("[up] -\n")


def test_monitorfile_write_failure_is_reported_once(tmp_path: Path) -> None:
    errors: list[str] = []
    mf = monitorfile.MonitorFile(errors.append)
    assert not mf.write(str(tmp_path / "no" / "file"), "x\n")
    assert not mf.write(str(tmp_path / "no" / "file"), "x\n")
    assert len(errors) == 1 and "Error writing to monitorfile" in errors[0]
    assert mf.write(str(tmp_path / "ok"), "x\n")


def test_log_file_format_opened_per_message(tmp_path: Path) -> None:
    path = tmp_path / "ld.log"
    log = logsetup.Logger(logsetup.LogMode.FILE, cfgname="ldirectord.cf", logfile=str(path))
    assert log.test_open() is None
    log.log("Added real server: 1.2.3.4:80 (5.6.7.8:80) (Weight set to 1)")
    path.rename(tmp_path / "ld.log.1")  # logrotate without a signal
    log.log("second")
    line = (tmp_path / "ld.log.1").read_text()
    assert re.fullmatch(
        r"\[\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\|ldirectord\.cf\|\d+\] Added real server: "
        r"1\.2\.3\.4:80 \(5\.6\.7\.8:80\) \(Weight set to 1\)\n",
        line,
    )
    assert path.read_text().endswith("] second\n")


def test_log_modes(capsys: pytest.CaptureFixture[str]) -> None:
    assert logsetup.choose_mode(debug=True, supervised=True, logfile="/x") is logsetup.LogMode.DEBUG
    assert (
        logsetup.choose_mode(debug=False, supervised=True, logfile="/x")
        is logsetup.LogMode.SUPERVISED
    )
    assert logsetup.choose_mode(debug=False, supervised=False, logfile="local0") is (
        logsetup.LogMode.SYSLOG
    )
    logsetup.Logger(logsetup.LogMode.DEBUG, debug_level=3).log("hello")
    logsetup.Logger(logsetup.LogMode.SUPERVISED).log("world")
    out, err = capsys.readouterr()
    assert err == "DEBUG2: hello\nhello\n"
    assert re.fullmatch(r"\[\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\] world\n", out)


def test_syslog_datagram_format(tmp_path: Path) -> None:
    import socket

    path = str(tmp_path / "log.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(5)
    try:
        log = logsetup.Logger(logsetup.LogMode.SYSLOG, logfile="local0", syslog_socket=path)
        log.log("Deleted real server: 1.2.3.4:80 (5.6.7.8:80)")
        data = server.recv(4096).decode()
        log.close()
    finally:
        server.close()
    # local0 (16) * 8 + info (6) = 134
    assert re.fullmatch(
        rf"<134>\w{{3}} [ \d]\d \d\d:\d\d:\d\d ldirectord\[{os.getpid()}\]: "
        r"Deleted real server: 1\.2\.3\.4:80 \(5\.6\.7\.8:80\)",
        data,
    )


def test_syslog_without_socket_drops_quietly(tmp_path: Path) -> None:
    log = logsetup.Logger(
        logsetup.LogMode.SYSLOG, logfile="daemon", syslog_socket=str(tmp_path / "none")
    )
    start = time.monotonic()
    log.log("nobody listens")
    assert log.dropped == 1 and time.monotonic() - start < 5
