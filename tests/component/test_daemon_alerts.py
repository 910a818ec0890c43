"""E-mail alerts delivered through a real postfix on loopback (and through `sendmail -t`)."""

from __future__ import annotations

import asyncio
import mailbox
import time
from pathlib import Path

import pytest

from ldirectord.config.model import (
    Config,
    DaemonStatus,
    Family,
    GlobalConfig,
    Method,
    Protocol,
    RealServer,
    VirtualService,
)
from ldirectord.runtime.alerts import EmailAlerts, build_mail
from tests.helpers.servers import Running, module_server, start_postfix

pytestmark = pytest.mark.component

postfix = module_server(start_postfix)


def _config(smtp: str | None, **kw: object) -> tuple[Config, VirtualService, RealServer]:
    real = RealServer("10.0.0.2", 80, Method.GATE)
    fields: dict[str, object] = dict(
        family=Family.INET,
        protocol=Protocol.TCP,
        address="10.0.0.1",
        port=80,
        fwmark=None,
        address_as_written="10.0.0.1:80",
        reals=(real,),
        emailalert="root@localhost",
        smtp=smtp,
    )
    fields.update(kw)
    virtual = VirtualService(**fields)  # type: ignore[arg-type]
    config = Config("/x.cf", GlobalConfig(emailalertfrom="ldirectord@director.example"), (virtual,))
    return config, virtual, real


def _messages(mbox_path: Path, count: int, timeout: float = 30) -> list[mailbox.mboxMessage]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if mbox_path.exists():
            box = mailbox.mbox(str(mbox_path))
            try:
                msgs = list(box)
            finally:
                box.close()
            if len(msgs) >= count:
                return msgs
        time.sleep(0.2)
    raise AssertionError(f"{count} mails did not arrive in {mbox_path} within {timeout} s")


@pytest.mark.asyncio
async def test_alert_and_reminder_through_real_postfix(postfix: Running) -> None:
    config, virtual, real = _config(
        f"127.0.0.1:{postfix.port('smtp')}", emailalertfreq=1, servicename="web"
    )
    logged: list[str] = []
    status = DaemonStatus.RUNNING
    alerts = EmailAlerts(config, logged.append, status=lambda: status, hostname="director1")
    msg = "Deleted real server: 10.0.0.2:80 (10.0.0.1:80)"
    alerts.real_changed(virtual, real, False, msg)
    assert "10.0.0.2:80 (10.0.0.1:80)" in alerts.reminders
    assert alerts.resend_due(time.time() + 2) == 1  # emailalertfreq=1: one reminder is due
    await alerts.drain(30)
    assert alerts.sent == 2 and alerts.failed == 0, logged
    mails = _messages(postfix.root / "mail" / "root", 2)
    subjects = sorted(str(m["Subject"]) for m in mails)
    assert subjects == [
        f"[web] {msg}",
        "[web] Inaccessible real server: 10.0.0.2:80 (10.0.0.1:80)",
    ]
    first = next(m for m in mails if str(m["Subject"]) == f"[web] {msg}")
    assert first["From"] == "ldirectord@director.example"
    assert first["To"] == "root@localhost"
    body = first.get_payload()
    assert isinstance(body, str)
    assert body.splitlines()[:4] == [
        "ldirectord host: director1",
        f"Log-Message: {msg}",
        "Daemon-Status: running",
        "Service name: web",
    ]
    assert logged[0] == f"emailalert: {msg}"
    # the real comes back: the reminder is cleared
    alerts2 = EmailAlerts(config, logged.append, status=lambda: status)
    alerts2.reminders = dict(alerts.reminders)
    alerts2.real_changed(virtual, real, True, "Added real server: 10.0.0.2:80")
    await alerts2.drain(30)
    assert not alerts2.reminders
    # purges and fallback changes never remind
    alerts2.real_changed(virtual, real, False, "Purged real server (stop): 10.0.0.2:80 (x)")
    alerts2.real_changed(virtual, real, False, "Deleted fallback server: 10.0.0.9:80 (x)")
    await alerts2.drain(30)
    assert not alerts2.reminders


@pytest.mark.asyncio
async def test_status_filter_and_unreachable_smtp() -> None:
    config, virtual, _ = _config("127.0.0.1:1", emailalertstatus=frozenset({"running"}))
    logged: list[str] = []
    status = DaemonStatus.STARTING
    alerts = EmailAlerts(config, logged.append, status=lambda: status, timeout=5)
    assert not alerts.send("starting mails are filtered", virtual)
    status = DaemonStatus.RUNNING
    assert alerts.send("Deleted real server: x", virtual)
    start = time.monotonic()
    await alerts.drain(20)
    assert time.monotonic() - start < 15
    assert alerts.failed == 1
    assert any(line.startswith("failed to send SMTP email message") for line in logged)


@pytest.mark.asyncio
async def test_sendmail_transport_with_deadline(tmp_path: Path) -> None:
    out = tmp_path / "sent.txt"
    fake = tmp_path / "sendmail"
    fake.write_text(f'#!/bin/sh\n[ "$1" = "-t" ] || exit 3\ncat > {out}\n')
    fake.chmod(0o755)
    config, virtual, _ = _config(None)
    alerts = EmailAlerts(config, [].append, status=lambda: DaemonStatus.RUNNING, sendmail=str(fake))
    alerts.send("Quiescent real server: 10.0.0.2:80 (10.0.0.1:80) (Weight set to 0)", virtual)
    await alerts.drain(20)
    text = out.read_text()
    assert "To: root@localhost\n" in text
    assert "Subject: Quiescent real server" in text
    hung = tmp_path / "hung"
    hung.write_text("#!/bin/sh\nexec sleep 60\n")
    hung.chmod(0o755)
    slow = EmailAlerts(
        config, [].append, status=lambda: DaemonStatus.RUNNING, sendmail=str(hung), timeout=1
    )
    slow.send("x", virtual)
    start = time.monotonic()
    await slow.drain(20)
    assert slow.failed == 1 and time.monotonic() - start < 10


def test_mail_layout_without_service_name() -> None:
    config, virtual, _ = _config(None, comment="rack 3")
    mail = build_mail(
        "Added real server: a",
        virtual,
        config=config,
        status=DaemonStatus.STARTING,
        hostname="h",
        user="root",
    )
    assert mail.sender == "root@h"
    assert mail.render().endswith("Daemon-Status: starting\nComment: rack 3\n")
    assert asyncio.iscoroutinefunction(EmailAlerts.drain)
