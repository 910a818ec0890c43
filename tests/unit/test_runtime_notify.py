"""sd_notify against a real unix datagram socket; the stall detector against a real loop."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

import pytest

from ldirectord.runtime.sdnotify import Notifier, scrub_environment
from ldirectord.runtime.stall import StallDetector


def _recv_all(sock: socket.socket) -> list[str]:
    out = []
    sock.settimeout(2)
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except TimeoutError:
            return out
        sock.settimeout(0.2)


def test_notify_protocol_on_a_real_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    try:
        n = Notifier(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000"})
        assert n.enabled and n.watchdog_interval == 30.0
        assert n.ready("running: 1 virtual\nservice")
        assert n.status("2/3 up")
        assert n.reloading()
        assert n.watchdog()
        assert n.stopping()
        n.close()
        got = _recv_all(server)
    finally:
        server.close()
    assert got[0] == "READY=1\nSTATUS=running: 1 virtual service"
    assert got[1] == "STATUS=2/3 up"
    assert got[2].startswith("RELOADING=1\nMONOTONIC_USEC=")
    usec = int(got[2].split("=")[-1])
    assert abs(usec / 1e6 - time.monotonic()) < 60
    assert got[3:] == ["WATCHDOG=1", "STOPPING=1"]


def test_abstract_socket_and_no_socket() -> None:
    name = f"ldirectord-test-{os.getpid()}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(b"\0" + name.encode())
    try:
        n = Notifier(env={"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "1000000"})
        assert not Notifier(env={"NOTIFY_SOCKET": "@" + name}).watchdog()  # no WatchdogSec
        assert n.watchdog()
        n.close()
        assert _recv_all(server) == ["WATCHDOG=1"]
    finally:
        server.close()
    silent = Notifier(env={})
    assert not silent.enabled and not silent.ready() and silent.watchdog_interval is None
    # a socket nobody listens on: dropped, never raised
    gone = Notifier(env={"NOTIFY_SOCKET": "/nonexistent/notify"})
    assert not gone.ready() and gone.failed == 1
    gone.close()
    # the watchdog belongs to another pid: not ours
    assert Notifier(env={"WATCHDOG_USEC": "5", "WATCHDOG_PID": "1"}).watchdog_interval is None
    env = {"NOTIFY_SOCKET": "x", "WATCHDOG_USEC": "1", "OTHER": "y"}
    scrub_environment(env)
    assert env == {"OTHER": "y"}


@pytest.mark.asyncio
async def test_stall_detector_logs_the_blocking_stack() -> None:
    lines: list[str] = []
    loop = asyncio.get_running_loop()
    detector = StallDetector(loop, lines.append, threshold=0.3)
    detector.start()
    try:
        await asyncio.sleep(0.5)
        assert lines == []  # a turning loop is never reported

        def wedged_in_a_blocking_call() -> None:
            time.sleep(1.2)  # the fault: blocks the loop

        wedged_in_a_blocking_call()
        await asyncio.sleep(0.6)
    finally:
        detector.stop()
    assert detector.stalls == 1
    assert "Event loop stalled" in lines[0]
    assert "wedged_in_a_blocking_call" in lines[0]
    assert lines[-1] == "Event loop running again after a stall"
