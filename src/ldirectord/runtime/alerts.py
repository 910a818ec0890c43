"""E-mail alerts as Perl ldirectord sends them (reference §4.7), with deadlines.

Owns: which state change mails whom (emailalert, emailalertstatus filter on the daemon phase),
the reminder table (emailalertfreq: "Inaccessible real server: RIP:P (VIP:P)" while a real stays
down; fallback changes never remind), the message layout (From/To/Subject headers, the
"ldirectord host / Log-Message / Daemon-Status" body) and the transport: ``smtp=`` host via
smtplib on a small dedicated thread pool under an overall deadline, else ``/usr/sbin/sendmail -t``
in its own session, killed as a group at the deadline. A mail never blocks the event loop;
an overrunning SMTP thread is abandoned and counted.

Deliberate differences: the recipient list is split on commas for RCPT (ldirectord passes the
whole string as one recipient). ``host:port`` is understood by the transport (tests use it);
the config grammar, as ldirectord's, only passes a host.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import smtplib
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ldirectord.config.model import Config, DaemonStatus, Family, RealServer, VirtualService

SENDMAIL = "/usr/sbin/sendmail"
MAIL_TIMEOUT = 30.0
MAX_IN_FLIGHT = 16


@dataclass(frozen=True, slots=True)
class Mail:
    sender: str  # envelope MAIL FROM
    recipients: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]
    body: str
    smtp: str | None

    def render(self) -> str:
        head = "".join(f"{k}: {v}\n" for k, v in self.headers)
        return f"{head}\n{self.body}"


def local_user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def real_service(virtual: VirtualService, real: RealServer) -> str:
    """``RIP:PORT`` as ldirectord writes it in alert subjects (``[ip6]:port`` for IPv6)."""
    host = f"[{real.address}]" if virtual.family is Family.INET6 else real.address
    return f"{host}:{real.port if real.port else virtual.port}"


def build_mail(
    subject: str,
    virtual: VirtualService,
    *,
    config: Config,
    status: DaemonStatus,
    hostname: str,
    user: str,
) -> Mail:
    to_addr = virtual.emailalert
    sender = f"{user}@{hostname}"
    full_subject = f"[{virtual.servicename}] {subject}" if virtual.servicename else subject
    body = f"ldirectord host: {hostname}\nLog-Message: {subject}\nDaemon-Status: {status}\n"
    if virtual.servicename:
        body += f"Service name: {virtual.servicename}\n"
    if virtual.comment:
        body += f"Comment: {virtual.comment}\n"
    headers = (
        ("From", config.globals.emailalertfrom or sender),
        ("To", to_addr),
        ("Subject", full_subject),
    )
    recipients = tuple(a.strip() for a in to_addr.split(",") if a.strip())
    return Mail(sender, recipients, headers, body, virtual.smtp)


def smtp_endpoint(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if sep and port.isdigit() and host and not host.endswith(":"):
        return host.strip("[]"), int(port)
    return value, 25


def send_smtp(mail: Mail, timeout: float) -> None:
    """Blocking: runs on the alert thread pool, never on the event loop."""
    assert mail.smtp is not None
    host, port = smtp_endpoint(mail.smtp)
    with smtplib.SMTP(host, port, timeout=timeout, local_hostname=None) as client:
        client.sendmail(mail.sender, list(mail.recipients), mail.render().encode("utf-8"))


async def send_sendmail(mail: Mail, deadline: float, sendmail: str = SENDMAIL) -> None:
    from ldirectord.procs import run_process

    result = await run_process([sendmail, "-t"], deadline, stdin=mail.render().encode("utf-8"))
    if not result.ok:
        why = "timed out" if result.timed_out else f"exited {result.returncode}"
        detail = (result.error or result.output.decode(errors="replace")).strip()[:200]
        raise OSError(f"{sendmail} -t {why}: {detail}")


class EmailAlerts:
    def __init__(
        self,
        config: Config,
        log: Callable[[str], None],
        *,
        status: Callable[[], DaemonStatus],
        hostname: str | None = None,
        timeout: float = MAIL_TIMEOUT,
        sendmail: str = SENDMAIL,
    ) -> None:
        self.config = config
        self._log = log
        self._status = status
        self.hostname = hostname or os.environ.get("HOSTNAME") or socket.gethostname()
        self.user = local_user()
        self.timeout = timeout
        self.sendmail = sendmail
        #: reminder id "RIP:P (VIP:P)" -> (virtual, time of the last alert)
        self.reminders: dict[str, tuple[VirtualService, float]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ldirectord-smtp")
        self.sent = 0
        self.failed = 0
        self.abandoned = 0

    def set_config(self, config: Config) -> None:
        self.config = config
        names = {v.name: v for v in config.virtuals}
        self.reminders = {
            rid: (names[v.name], t) for rid, (v, t) in self.reminders.items() if v.name in names
        }

    def real_changed(
        self, virtual: VirtualService, real: RealServer, up: bool, message: str
    ) -> None:
        """ldirectord's ld_emailalert_send for one logged state change: a real that went down
        (quiescent or deleted) gets reminders; anything that brought it back, purged it, or
        concerned the fallback server clears them."""
        rid = f"{real_service(virtual, real)} ({virtual.name})"
        remind = not up and not message.startswith("Purged") and "fallback server" not in message
        if remind and virtual.emailalertfreq > 0:
            self.reminders[rid] = (virtual, time.time())
        else:
            self.reminders.pop(rid, None)
        self.send(message, virtual)

    def resend_due(self, now: float | None = None) -> int:
        """ldirectord's ld_emailalert_resend: reminders whose emailalertfreq has elapsed."""
        now = time.time() if now is None else now
        count = 0
        for rid, (virtual, last) in list(self.reminders.items()):
            if virtual.emailalertfreq and now - last >= virtual.emailalertfreq:
                self.reminders[rid] = (virtual, now)
                self.send(f"Inaccessible real server: {rid}", virtual)
                count += 1
        return count

    def send(self, subject: str, virtual: VirtualService) -> bool:
        status = self._status()
        if status not in virtual.emailalertstatus or not virtual.emailalert:
            return False
        if len(self._tasks) >= MAX_IN_FLIGHT:
            self.failed += 1
            self._log(f"emailalert: dropped (too many mails in flight): {subject}")
            return False
        self._log(f"emailalert: {subject}")
        mail = build_mail(
            subject,
            virtual,
            config=self.config,
            status=status,
            hostname=self.hostname,
            user=self.user,
        )
        task = asyncio.get_running_loop().create_task(self._deliver(mail))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _deliver(self, mail: Mail) -> None:
        try:
            if mail.smtp:
                loop = asyncio.get_running_loop()
                future = loop.run_in_executor(self._pool, send_smtp, mail, self.timeout)
                try:
                    await asyncio.wait_for(asyncio.shield(future), self.timeout + 1)
                except TimeoutError:
                    self.abandoned += 1
                    raise
            else:
                await send_sendmail(mail, self.timeout, self.sendmail)
        except asyncio.CancelledError:
            raise
        except (OSError, smtplib.SMTPException, TimeoutError) as exc:
            self.failed += 1
            how = "SMTP" if mail.smtp else "sendmail"
            self._log(f"failed to send {how} email message: {type(exc).__name__}: {exc}")
            return
        self.sent += 1

    async def drain(self, grace: float) -> None:
        """Let mails in flight finish (bounded), e.g. the stop alerts; cancel the rest."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)
