"""smtp/submission, pop/pops and imap/imaps checks against real postfix and dovecot.

Postfix (smtp, submission) and Dovecot (pop, pops, imap, imaps, user ``ldcheck``) are the
Debian packages, started on free loopback ports by tests/helpers/servers.py. Misbehaviour a
real server will not produce on demand (a 554 greeting, a refused EHLO, ``-ERR``, ``* BYE``)
comes from scripted peers; hostile peers (hang, trickle, reset, garbage, TLS hang) come from
tests/helpers/hostile.py, each run beside a healthy check of the real server.
"""

from __future__ import annotations

import pytest

from ldirectord.checks import run
from ldirectord.checks.base import CheckTarget, Reason
from tests.helpers import hostile
from tests.helpers.servers import (
    PASSWORD,
    USER,
    Running,
    beside,
    module_server,
    scripted,
    start_dovecot,
    start_postfix,
    target,
)

pytestmark = [pytest.mark.component, pytest.mark.asyncio]

DEADLINE = 1.0
MARGIN = 1.0

postfix = module_server(start_postfix)
dovecot = module_server(start_dovecot)


def mail(service: str, port: int, **spec: object) -> CheckTarget:
    return target(service, port, timeout=DEADLINE, **spec)


# --------------------------------------------------------------------------- smtp


@pytest.mark.parametrize("service", ["smtp", "submission"])
async def test_smtp_up(postfix: Running, service: str) -> None:
    outcome = await run(mail(service, postfix.port("smtp")))
    assert outcome.up, outcome
    assert "220" in outcome.detail


async def test_smtp_refused() -> None:
    outcome = await run(mail("smtp", hostile.free_port()))
    assert (outcome.up, outcome.reason) == (False, Reason.REFUSED)


async def test_smtp_bad_greeting() -> None:
    with scripted(b"554 5.3.2 no service here\r\n", []) as peer:
        outcome = await run(mail("smtp", peer.port))
    assert (outcome.up, outcome.reason) == (False, Reason.BAD_STATUS)
    assert "554" in outcome.detail


async def test_smtp_ehlo_and_helo_refused() -> None:
    replies = [b"502 5.5.2 no EHLO\r\n", b"502-5.5.2 no HELO\r\n502 5.5.2 either\r\n"]
    with scripted(b"220-mx ESMTP\r\n220 welcome\r\n", replies) as peer:
        outcome = await run(mail("smtp", peer.port))
    assert (outcome.up, outcome.reason) == (False, Reason.BAD_STATUS)
    assert "EHLO/HELO" in outcome.detail


async def test_smtp_helo_fallback_is_up() -> None:
    with scripted(b"220 old mx\r\n", [b"500 what\r\n", b"250 hello\r\n"]) as peer:
        outcome = await run(mail("smtp", peer.port))
    assert outcome.up, outcome


# --------------------------------------------------------------------------- pop / imap


@pytest.mark.parametrize("service", ["pop", "pops", "imap", "imaps"])
async def test_greeting_only_is_up(dovecot: Running, service: str) -> None:
    outcome = await run(mail(service, dovecot.port(service)))
    assert outcome.up, outcome
    assert "ready" in outcome.detail


@pytest.mark.parametrize("service", ["pop", "pops", "imap", "imaps"])
async def test_login_up(dovecot: Running, service: str) -> None:
    outcome = await run(mail(service, dovecot.port(service), login=USER, passwd=PASSWORD))
    assert outcome.up, outcome
    assert f"logged in as {USER}" in outcome.detail


@pytest.mark.parametrize("service", ["pop", "pops", "imap", "imaps"])
async def test_login_failure_is_auth(dovecot: Running, service: str) -> None:
    outcome = await run(mail(service, dovecot.port(service), login=USER, passwd="wrong"))
    assert (outcome.up, outcome.reason) == (False, Reason.AUTH), outcome


@pytest.mark.parametrize("service", ["pop", "imap"])
async def test_nothing_listening_is_down_even_without_login(service: str) -> None:
    # Deliberate fix: Perl ldirectord says a POP server without login is always up.
    outcome = await run(mail(service, hostile.free_port()))
    assert (outcome.up, outcome.reason) == (False, Reason.REFUSED)


@pytest.mark.parametrize(
    ("service", "greeting"),
    [("pop", b"-ERR too busy\r\n"), ("imap", b"* BYE too busy\r\n")],
)
async def test_refusing_greeting_is_bad_status(service: str, greeting: bytes) -> None:
    with scripted(greeting, []) as peer:
        outcome = await run(mail(service, peer.port))
    assert (outcome.up, outcome.reason) == (False, Reason.BAD_STATUS)


async def test_imap_login_skips_untagged_lines() -> None:
    replies = [b"* CAPABILITY IMAP4rev1\r\n* OK still here\r\na1 OK logged in\r\n"]
    with scripted(b"* OK ready\r\n", replies) as peer:
        outcome = await run(mail("imap", peer.port, login='a"b', passwd="c\\d"))
    assert outcome.up, outcome


# --------------------------------------------------------------------------- hostile peers

PLAIN = ["smtp", "pop", "imap"]
HOSTILE_PLAIN = {
    "hang": (hostile.hang, Reason.TIMEOUT),
    "trickle": (lambda: hostile.trickle(b"220 " + b"x" * 200, wait_request=False), Reason.TIMEOUT),
    "reset": (hostile.reset, Reason.RESET),
    "garbage": (lambda: hostile.garbage(after_request=False), Reason.PROTOCOL),
    "close": (hostile.close_at_once, Reason.CLOSED),
}
HOSTILE_TLS = {
    "tls-hang": (hostile.tls_hang, Reason.TIMEOUT),
    "reset": (hostile.reset, Reason.RESET),
    "garbage": (lambda: hostile.garbage(after_request=True, then="close"), Reason.TLS),
}
PORT_OF = {"smtp": "smtp", "pop": "pop", "imap": "imap", "pops": "pops", "imaps": "imaps"}


def _healthy(service: str, postfix: Running, dovecot: Running) -> CheckTarget:
    server = postfix if service == "smtp" else dovecot
    return mail(service, server.port(PORT_OF[service]))


@pytest.mark.parametrize("behaviour", sorted(HOSTILE_PLAIN))
@pytest.mark.parametrize("service", PLAIN)
async def test_hostile_plain(
    postfix: Running, dovecot: Running, service: str, behaviour: str
) -> None:
    make, reason = HOSTILE_PLAIN[behaviour]
    with make() as peer:
        bad, good, not_delayed = await beside(
            mail(service, peer.port), _healthy(service, postfix, dovecot)
        )
    assert (bad.up, bad.reason) == (False, reason), bad
    assert bad.duration < DEADLINE + MARGIN
    assert good.up and not_delayed, good


@pytest.mark.parametrize("behaviour", sorted(HOSTILE_TLS))
@pytest.mark.parametrize("service", ["pops", "imaps"])
async def test_hostile_tls(
    postfix: Running, dovecot: Running, service: str, behaviour: str
) -> None:
    make, reason = HOSTILE_TLS[behaviour]
    with make() as peer:
        bad, good, not_delayed = await beside(
            mail(service, peer.port), _healthy(service, postfix, dovecot)
        )
    assert (bad.up, bad.reason) == (False, reason), bad
    assert bad.duration < DEADLINE + MARGIN
    assert good.up and not_delayed, good
