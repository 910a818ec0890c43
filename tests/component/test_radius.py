"""radius checks against a real FreeRADIUS 3.2 on loopback.

FreeRADIUS (Debian's freeradius) runs from our own radiusd.conf in a temp dir (client
127.0.0.1 with secret ``testing123``, user ``ldcheck``/``secret`` in a users file, PAP),
started by tests/helpers/servers.py. Replies a real server will not send on demand (a forged
authenticator) come from a UDP peer that speaks the protocol; hostile peers are a UDP black
hole, garbage datagrams and a closed port.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
from typing import Any

import pytest

from ldirectord.checks import run
from ldirectord.checks.base import CheckTarget, Reason
from ldirectord.protocols import radius as codec
from tests.helpers import hostile
from tests.helpers.servers import (
    PASSWORD,
    RADIUS_SECRET,
    USER,
    Running,
    beside,
    free_port,
    ipv6_loopback,
    module_server,
    start_freeradius,
    target,
)

pytestmark = [pytest.mark.component, pytest.mark.asyncio]

DEADLINE = 1.5
MARGIN = 1.0

freeradius = module_server(start_freeradius)


def radius(port: int, passwd: str = PASSWORD, secret: str = RADIUS_SECRET) -> CheckTarget:
    return target(
        "radius", port, protocol="udp", login=USER, passwd=passwd, secret=secret,
        timeout=DEADLINE,
    )  # fmt: skip


async def test_access_accept_is_up(freeradius: Running) -> None:
    outcome = await run(radius(freeradius.port("radius")))
    assert outcome.up, outcome
    assert "Access-Accept" in outcome.detail
    assert f"hello {USER}" in outcome.detail  # the Reply-Message came through


async def test_access_reject_is_auth(freeradius: Running) -> None:
    outcome = await run(radius(freeradius.port("radius"), passwd="wrong"))
    assert (outcome.up, outcome.reason) == (False, Reason.AUTH), outcome
    assert "Access-Reject" in outcome.detail


async def test_wrong_secret_gets_no_valid_reply(freeradius: Running) -> None:
    # FreeRADIUS drops a request whose Message-Authenticator does not verify: no answer at all
    outcome = await run(radius(freeradius.port("radius"), secret="not-the-secret"))
    assert (outcome.up, outcome.reason) == (False, Reason.TIMEOUT), outcome
    assert "shared secret" in outcome.detail
    assert outcome.duration < DEADLINE + MARGIN


async def test_missing_secret_is_config() -> None:
    outcome = await run(radius(free_port(udp=True), secret=""))
    assert (outcome.up, outcome.reason) == (False, Reason.CONFIG)


async def test_closed_port_is_refused() -> None:
    outcome = await run(radius(free_port(udp=True)))  # ICMP port unreachable
    assert (outcome.up, outcome.reason) == (False, Reason.REFUSED), outcome


def _answering(reply: Any) -> hostile.UdpPeer:
    def answer(data: bytes, addr: Any, transport: asyncio.DatagramTransport) -> None:
        transport.sendto(reply(data), addr)

    return hostile.UdpPeer(answer, name="radius-peer")


def _forged_accept(request: bytes) -> bytes:
    """An Access-Accept for the request's identifier, signed with the wrong secret."""
    header = struct.pack("!BBH", codec.Code.ACCESS_ACCEPT, request[1], 20)
    auth = hashlib.md5(header + request[4:20] + b"wrong-secret").digest()
    return header + auth


def _valid_accept(request: bytes) -> bytes:
    header = struct.pack("!BBH", codec.Code.ACCESS_ACCEPT, request[1], 20)
    auth = hashlib.md5(header + request[4:20] + RADIUS_SECRET.encode()).digest()
    return header + auth


async def test_protocol_accurate_peer_accept_is_up() -> None:
    with _answering(_valid_accept) as peer:
        outcome = await run(radius(peer.port))
    assert outcome.up, outcome


async def test_forged_reply_is_auth() -> None:
    with _answering(_forged_accept) as peer:
        outcome = await run(radius(peer.port))
    assert (outcome.up, outcome.reason) == (False, Reason.AUTH), outcome
    assert "authenticator" in outcome.detail


async def test_lost_request_is_sent_again() -> None:
    seen: list[bytes] = []

    def second_time_lucky(data: bytes) -> bytes:
        seen.append(data)
        return _valid_accept(data) if len(seen) > 1 else b""

    t = target(
        "radius", 0, protocol="udp", login=USER, passwd=PASSWORD, secret=RADIUS_SECRET,
        timeout=3.0,
    )  # fmt: skip
    with _answering(second_time_lucky) as peer:
        outcome = await run(t.__class__(**{**_fields(t), "port": peer.port}))
    assert outcome.up, outcome
    assert len(seen) == 2 and seen[0] == seen[1]  # same identifier and authenticator


def _fields(t: CheckTarget) -> dict[str, Any]:
    return {name: getattr(t, name) for name in t.__slots__}  # type: ignore[attr-defined]


HOSTILE = {
    "black-hole": (hostile.udp_black_hole, Reason.TIMEOUT),
    "garbage": (lambda: _answering(lambda data: hostile.JUNK[:100]), Reason.TIMEOUT),
}


@pytest.mark.parametrize("behaviour", sorted(HOSTILE))
async def test_hostile(freeradius: Running, behaviour: str) -> None:
    make, reason = HOSTILE[behaviour]
    with make() as peer:
        bad, good, not_delayed = await beside(radius(peer.port), radius(freeradius.port("radius")))
    assert (bad.up, bad.reason) == (False, reason), bad
    assert bad.duration < DEADLINE + MARGIN
    assert good.up and not_delayed, good


async def test_ipv6_real_server_up(freeradius: Running) -> None:
    if not ipv6_loopback():
        pytest.skip("no ::1 on this host")
    t = target(
        "radius", freeradius.port("radius"), host="::1", protocol="udp", login=USER,
        passwd=PASSWORD, secret=RADIUS_SECRET, timeout=DEADLINE,
    )  # fmt: skip
    outcome = await run(t)
    assert outcome.up, outcome
