"""nntp checks against a real INN (innd 2.7 from Debian) on loopback.

innd runs as a private instance (its own inn.conf, db and spool in a temp dir) started by
tests/helpers/servers.py. Greetings INN will not send on demand (400, 502, junk) come from
scripted peers; hostile peers from tests/helpers/hostile.py.
"""

from __future__ import annotations

import pytest

from ldirectord.checks import run
from ldirectord.checks.base import CheckTarget, Reason
from tests.helpers import hostile
from tests.helpers.servers import Running, beside, module_server, scripted, start_inn, target

pytestmark = [pytest.mark.component, pytest.mark.asyncio]

DEADLINE = 1.0
MARGIN = 1.0

inn = module_server(start_inn)


def nntp(port: int) -> CheckTarget:
    return target("nntp", port, timeout=DEADLINE)


async def test_up(inn: Running) -> None:
    outcome = await run(nntp(inn.port("nntp")))
    assert outcome.up, outcome
    assert outcome.detail.startswith("200")


@pytest.mark.parametrize("greeting", [b"400 service temporarily unavailable\r\n", b"502 no\r\n"])
async def test_refusing_greeting_is_bad_status(greeting: bytes) -> None:
    with scripted(greeting, []) as peer:
        outcome = await run(nntp(peer.port))
    assert (outcome.up, outcome.reason) == (False, Reason.BAD_STATUS), outcome


async def test_posting_prohibited_greeting_is_up() -> None:
    with scripted(b"201 reader ready, posting prohibited\r\n", []) as peer:
        outcome = await run(nntp(peer.port))
    assert outcome.up, outcome


async def test_refused() -> None:
    outcome = await run(nntp(hostile.free_port()))
    assert (outcome.up, outcome.reason) == (False, Reason.REFUSED)


HOSTILE = {
    "hang": (hostile.hang, Reason.TIMEOUT),
    "no-accept": (hostile.no_accept, Reason.TIMEOUT),  # ldirectord's unbounded connect
    "trickle": (lambda: hostile.trickle(b"200 " + b"x" * 200, wait_request=False), Reason.TIMEOUT),
    "reset": (hostile.reset, Reason.RESET),
    "garbage": (lambda: hostile.garbage(after_request=False), Reason.PROTOCOL),
    "close": (hostile.close_at_once, Reason.CLOSED),
}


@pytest.mark.parametrize("behaviour", sorted(HOSTILE))
async def test_hostile(inn: Running, behaviour: str) -> None:
    make, reason = HOSTILE[behaviour]
    with make() as peer:
        bad, good, not_delayed = await beside(nntp(peer.port), nntp(inn.port("nntp")))
    assert (bad.up, bad.reason) == (False, reason), bad
    assert bad.duration < DEADLINE + MARGIN
    assert good.up and not_delayed, good
