"""The Daemon class in-process on the dry-run backend: e-mail alerts and monitorfile wiring
when a real server dies and comes back, a good and a bad reload, and a clean stop."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from ldirectord.config import load
from ldirectord.runtime.daemon import Daemon, DaemonOptions
from ldirectord.runtime.logsetup import Logger, LogMode
from ldirectord.runtime.sdnotify import Notifier
from ldirectord.runtime.signals import Command, Request
from tests.component.test_daemon_support import demo_config, http_reals

pytestmark = pytest.mark.component


async def _until(what: str, predicate: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.asyncio
async def test_alerts_monitorfile_reload_and_stop_in_process(tmp_path: Path) -> None:
    mails = tmp_path / "mails.txt"
    fake_sendmail = tmp_path / "sendmail"
    fake_sendmail.write_text(f"#!/bin/sh\ncat >> {mails}\necho '----' >> {mails}\n")
    fake_sendmail.chmod(0o755)
    monitor = tmp_path / "monitor.log"
    cfg = tmp_path / "inproc.cf"
    with http_reals(tmp_path, 2) as reals:
        ports = [r.port for r in reals]
        demo_config(cfg, ports, extra="emailalert=ops@example.org\nemailalertfreq=1\n")
        cfg.write_text(cfg.read_text() + f'\tmonitorfile="{monitor}"\n')
        config = load(str(cfg))
        options = DaemonOptions(
            config_path=str(cfg),
            cfgname="inproc.cf",
            backend="dryrun",
            pulse_file=str(tmp_path / "p.pulse"),
            state_file=str(tmp_path / "p.state"),
        )
        logger = Logger(LogMode.FILE, cfgname="inproc.cf", logfile=config.globals.logfile)
        daemon = Daemon(options, config, logger, notifier=Notifier(env={}))
        daemon.alerts.sendmail = str(fake_sendmail)
        task = asyncio.create_task(daemon.run())
        try:
            await _until("running", lambda: str(daemon.status) == "running")
            # a real server dies: Deleted mail, then an "Inaccessible" reminder (freq 1 s)
            os.killpg(reals[1].proc.pid, signal.SIGKILL)
            await _until(
                "the reminder",
                lambda: mails.exists() and "Inaccessible real server" in mails.read_text(),
            )
            text = mails.read_text()
            assert f"Subject: Deleted real server: 127.0.0.1:{ports[1]} (127.0.0.1:8080)" in text
            assert "To: ops@example.org" in text and "Daemon-Status: running" in text
            assert "[down]" in monitor.read_text()
            # a good reload, then a bad one that leaves everything as it was
            demo_config(cfg, ports, extra="emailalert=ops@example.org\n", weights=[3, 1])
            daemon.submit(Request(Command.RELOAD, "test"))
            await _until("the reload", lambda: daemon.counters.reloads == 1)
            assert daemon.config.virtuals[0].reals[0].weight == 3
            cfg.write_text("virtual=bogus\n")
            daemon.submit(Request(Command.RELOAD, "test"))
            await _until("the failed reload", lambda: daemon.counters.failed_reloads == 1)
            assert daemon.config.virtuals[0].reals[0].weight == 3
            # three HUPs in a row: one reload reads the newest file
            for _ in range(3):
                daemon.submit(Request(Command.RELOAD, "SIGHUP"))
            await _until("the coalesced reload", lambda: daemon.counters.failed_reloads == 2)
            await asyncio.sleep(1.0)
            assert daemon.counters.failed_reloads == 2
            daemon.submit(Request(Command.STOP, "SIGTERM"))
            assert await asyncio.wait_for(task, 30) == 0
        finally:
            if not task.done():
                task.cancel()
    log = (tmp_path / "ldirectord.log").read_text()
    assert "emailalert: Deleted real server" in log
    assert "Linux Director Daemon terminated on signal: SIGTERM" in log
    assert not (tmp_path / "p.pulse").exists()
