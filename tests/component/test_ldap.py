"""ldap and ldaps checks against a real OpenLDAP slapd on loopback.

slapd (Debian's 2.5) runs from a static slapd.conf in a temp dir with the suffix
``dc=ldtest,dc=example`` and the user ``uid=ldcheck,ou=people,...`` (password ``secret``),
started by tests/helpers/servers.py; ldaps uses a self-signed certificate (never verified, as
Net::LDAP's default). The check runs ldap3 in the bounded thread pool, so the hostile cases
also show that an overrunning thread is abandoned, counted, and released.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from ldirectord.checks import _blocking, run
from ldirectord.checks.base import CheckTarget, Reason
from tests.helpers import hostile
from tests.helpers.servers import (
    LDAP_SUFFIX,
    LDAP_USER_DN,
    PASSWORD,
    Running,
    beside,
    ipv6_loopback,
    module_server,
    start_slapd,
    target,
)

pytestmark = [
    pytest.mark.component,
    pytest.mark.asyncio,
    # ldap3 2.9.1 uses pyasn1's old tagMap name; harmless, and ignored outside tests anyway
    pytest.mark.filterwarnings("ignore:tagMap is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:typeMap is deprecated:DeprecationWarning"),
]

DEADLINE = 1.0
MARGIN = 1.0

slapd = module_server(start_slapd)


def ldap(port: int, base: str = LDAP_SUFFIX, service: str = "ldap", **spec: object) -> CheckTarget:
    return target(service, port, request=f"/{base}", timeout=DEADLINE, **spec)


async def test_anonymous_base_search_up(slapd: Running) -> None:
    outcome = await run(ldap(slapd.port("ldap")))
    assert outcome.up, outcome
    assert LDAP_SUFFIX in outcome.detail


async def test_root_dse_up(slapd: Running) -> None:
    outcome = await run(ldap(slapd.port("ldap"), base=""))  # request "/" → base ""
    assert outcome.up, outcome


@pytest.mark.parametrize("service", ["ldap", "ldaps"])
async def test_bind_and_receive_up(slapd: Running, service: str) -> None:
    t = ldap(
        slapd.port(service), base=LDAP_USER_DN, service=service, login=LDAP_USER_DN,
        passwd=PASSWORD, receive="^uid=ldcheck,",
    )  # fmt: skip
    outcome = await run(t)
    assert outcome.up, outcome


async def test_login_without_passwd_binds_anonymously(slapd: Running) -> None:
    # ldirectord binds with login only when passwd is set too
    outcome = await run(ldap(slapd.port("ldap"), login=LDAP_USER_DN))
    assert outcome.up, outcome


@pytest.mark.parametrize("service", ["ldap", "ldaps"])
async def test_wrong_password_is_auth(slapd: Running, service: str) -> None:
    t = ldap(slapd.port(service), service=service, login=LDAP_USER_DN, passwd="wrong")
    outcome = await run(t)
    assert (outcome.up, outcome.reason) == (False, Reason.AUTH), outcome
    assert "invalidCredentials" in outcome.detail


async def test_missing_base_is_bad_status(slapd: Running) -> None:
    outcome = await run(ldap(slapd.port("ldap"), base="dc=nowhere,dc=example"))
    assert (outcome.up, outcome.reason) == (False, Reason.BAD_STATUS), outcome


async def test_receive_mismatch_is_no_match(slapd: Running) -> None:
    outcome = await run(ldap(slapd.port("ldap"), receive="^ou=elsewhere"))
    assert (outcome.up, outcome.reason) == (False, Reason.NO_MATCH), outcome


async def test_refused() -> None:
    outcome = await run(ldap(hostile.free_port()))
    assert (outcome.up, outcome.reason) == (False, Reason.REFUSED), outcome


async def _no_abandoned_threads_left(limit: float = 5.0) -> bool:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if _blocking.abandoned_running() == 0:
            return True
        await asyncio.sleep(0.05)
    return False


HOSTILE = {
    "hang": ("ldap", hostile.hang, Reason.TIMEOUT),
    "trickle": ("ldap", lambda: hostile.trickle(b"\x30\x84" + b"\x00" * 50), Reason.TIMEOUT),
    "reset": ("ldap", lambda: hostile.reset(after_request=True), Reason.RESET),
    "garbage": (
        "ldap",
        lambda: hostile.garbage(b"\x01\x02junk" * 10, then="close"),
        Reason.PROTOCOL,
    ),
    "tls-hang": ("ldaps", hostile.tls_hang, Reason.TIMEOUT),
}


@pytest.mark.parametrize("behaviour", sorted(HOSTILE))
async def test_hostile(slapd: Running, behaviour: str) -> None:
    service, make, reason = HOSTILE[behaviour]
    before = _blocking.abandoned_total()
    with make() as peer:
        bad, good, not_delayed = await beside(
            ldap(peer.port, service=service), ldap(slapd.port(service), service=service)
        )
        assert (bad.up, bad.reason) == (False, reason), bad
        assert bad.duration < DEADLINE + MARGIN
        assert good.up and not_delayed, good
        # an overrunning worker is abandoned (counted) and released while the peer still holds on
        if reason is Reason.TIMEOUT:
            assert _blocking.abandoned_total() > before
        assert await _no_abandoned_threads_left()


@pytest.mark.parametrize("service", ["ldap", "ldaps"])
async def test_ipv6_real_server_up(slapd: Running, service: str) -> None:
    if not ipv6_loopback():
        pytest.skip("no ::1 on this host")
    t = target(
        service, slapd.port(service), host="::1", request=f"/{LDAP_SUFFIX}", timeout=DEADLINE
    )
    outcome = await run(t)
    assert outcome.up, outcome
