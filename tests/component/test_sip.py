"""sip checks against a real Kamailio 5.6 on loopback, over UDP and TCP.

Kamailio (Debian's kamailio) runs a tiny routing script started by tests/helpers/servers.py:
OPTIONS gets ``200 OK`` (``486 Busy Here`` for the user ``busy``), anything else 404.
Responses Kamailio will not send on demand (a ``100 Trying`` before the 200, a reply for
another Call-ID, garbage) come from a UDP peer; hostile peers from tests/helpers/hostile.py.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from ldirectord.checks import run
from ldirectord.checks.base import CheckTarget, Reason
from tests.helpers import hostile
from tests.helpers.servers import (
    LOOPBACK,
    USER,
    Running,
    beside,
    free_port,
    ipv6_loopback,
    module_server,
    start_kamailio,
    target,
)

pytestmark = [pytest.mark.component, pytest.mark.asyncio]

DEADLINE = 1.5
MARGIN = 1.0

kamailio = module_server(start_kamailio)


def sip(port: int, protocol: str = "udp", login: str = f"{USER}@{LOOPBACK}") -> CheckTarget:
    return target("sip", port, protocol=protocol, login=login, timeout=DEADLINE)


@pytest.mark.parametrize("protocol", ["udp", "tcp"])
async def test_options_200_is_up(kamailio: Running, protocol: str) -> None:
    outcome = await run(sip(kamailio.port("sip"), protocol))
    assert outcome.up, outcome
    assert outcome.detail.startswith("SIP/2.0 200 OK")


@pytest.mark.parametrize("protocol", ["udp", "tcp"])
async def test_busy_is_bad_status(kamailio: Running, protocol: str) -> None:
    outcome = await run(sip(kamailio.port("sip"), protocol, login=f"busy@{LOOPBACK}"))
    assert (outcome.up, outcome.reason) == (False, Reason.BAD_STATUS), outcome
    assert "486" in outcome.detail


async def test_udp_closed_port_is_refused() -> None:
    outcome = await run(sip(free_port(udp=True)))
    assert (outcome.up, outcome.reason) == (False, Reason.REFUSED), outcome


async def test_tcp_refused() -> None:
    outcome = await run(sip(hostile.free_port(), "tcp"))
    assert (outcome.up, outcome.reason) == (False, Reason.REFUSED), outcome


def _call_id(request: bytes) -> str:
    match = re.search(rb"\r\nCall-ID: ([^\r]+)\r\n", request)
    assert match
    return match.group(1).decode()


def _response(status: str, call_id: str) -> bytes:
    return (
        f"SIP/2.0 {status}\r\nVia: SIP/2.0/UDP 127.0.0.1\r\nCall-ID: {call_id}\r\n"
        "CSeq: 63104 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def _udp_peer(replies: Any) -> hostile.UdpPeer:
    def answer(data: bytes, addr: Any, transport: asyncio.DatagramTransport) -> None:
        for reply in replies(data):
            transport.sendto(reply, addr)

    return hostile.UdpPeer(answer, name="sip-peer")


async def test_provisional_then_ok_is_up() -> None:
    def replies(data: bytes) -> list[bytes]:
        return [_response("100 Trying", _call_id(data)), _response("200 OK", _call_id(data))]

    with _udp_peer(replies) as peer:
        outcome = await run(sip(peer.port))
    assert outcome.up, outcome


async def test_reply_for_another_call_is_ignored() -> None:
    def replies(data: bytes) -> list[bytes]:
        return [_response("503 Unavailable", "someone-else"), _response("200 OK", _call_id(data))]

    with _udp_peer(replies) as peer:
        outcome = await run(sip(peer.port))
    assert outcome.up, outcome


async def test_request_is_ldirectords_options() -> None:
    seen: list[bytes] = []

    def replies(data: bytes) -> list[bytes]:
        seen.append(data)
        return [_response("200 OK", _call_id(data))]

    with _udp_peer(replies) as peer:
        outcome = await run(sip(peer.port, login="alice@example.org"))
    assert outcome.up, outcome
    lines = seen[0].decode().split("\r\n")
    assert lines[0] == "OPTIONS sip:alice@example.org SIP/2.0"
    assert lines[1].startswith("Via: SIP/2.0/UDP 127.0.0.1:") and ";branch=z9hG4bK" in lines[1]
    for header in (
        "Max-Forwards: 70",
        "To: <sip:alice@example.org>",
        "CSeq: 63104 OPTIONS",
        "Contact: <sip:alice@example.org>",
        "Accept: application/sdp",
        "Content-Length: 0",
    ):
        assert header in lines
    assert seen[0].endswith(b"\r\n\r\n")


HOSTILE = {
    "udp-black-hole": ("udp", hostile.udp_black_hole, Reason.TIMEOUT),
    "udp-garbage": ("udp", lambda: _udp_peer(lambda data: [hostile.JUNK[:200]]), Reason.PROTOCOL),
    "tcp-hang": ("tcp", hostile.hang, Reason.TIMEOUT),
    "tcp-trickle": ("tcp", lambda: hostile.trickle(b"SIP/2.0 200 OK\r\n" * 10), Reason.TIMEOUT),
    "tcp-reset": ("tcp", lambda: hostile.reset(after_request=True), Reason.RESET),
    "tcp-garbage": ("tcp", lambda: hostile.garbage(b"HTTP/1.1 400 no\r\n\r\n"), Reason.PROTOCOL),
}


@pytest.mark.parametrize("behaviour", sorted(HOSTILE))
async def test_hostile(kamailio: Running, behaviour: str) -> None:
    protocol, make, reason = HOSTILE[behaviour]
    with make() as peer:
        bad, good, not_delayed = await beside(
            sip(peer.port, protocol), sip(kamailio.port("sip"), protocol)
        )
    assert (bad.up, bad.reason) == (False, reason), bad
    assert bad.duration < DEADLINE + MARGIN
    assert good.up and not_delayed, good


@pytest.mark.parametrize("protocol", ["udp", "tcp"])
async def test_ipv6_real_server_up(kamailio: Running, protocol: str) -> None:
    if not ipv6_loopback():
        pytest.skip("no ::1 on this host")
    t = target(
        "sip",
        kamailio.port("sip"),
        host="::1",
        protocol=protocol,
        login=f"{USER}@[::1]",
        timeout=DEADLINE,
    )
    outcome = await run(t)
    assert outcome.up, outcome
