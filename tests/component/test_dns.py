"""dns checks against a real dnsmasq on loopback (UDP and TCP, A and PTR records).

dnsmasq (Debian's dnsmasq-base) answers ``www.ldtest.example A 192.0.2.10`` and its PTR from
a ``--host-record``, started by tests/helpers/servers.py; with no upstream it refuses other
names. Hostile peers: a UDP black hole, UDP garbage, and the TCP behaviours of
tests/helpers/hostile.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ldirectord.checks import run
from ldirectord.checks.base import CheckTarget, Reason
from tests.helpers import hostile
from tests.helpers.servers import (
    DNS_ADDRESS,
    DNS_NAME,
    Running,
    beside,
    ipv6_loopback,
    module_server,
    start_dnsmasq,
    target,
)

pytestmark = [pytest.mark.component, pytest.mark.asyncio]

DEADLINE = 1.0
MARGIN = 1.0

dnsmasq = module_server(start_dnsmasq)


def dns(
    port: int, request: str = f"/{DNS_NAME}", receive: str = DNS_ADDRESS, protocol: str = "udp"
) -> CheckTarget:
    return target(
        "dns", port, protocol=protocol, request=request, receive=receive, timeout=DEADLINE
    )


@pytest.mark.parametrize("protocol", ["udp", "tcp"])
async def test_a_record_up(dnsmasq: Running, protocol: str) -> None:
    outcome = await run(dns(dnsmasq.port("dns"), protocol=protocol))
    assert outcome.up, outcome
    assert DNS_ADDRESS in outcome.detail


async def test_receive_is_a_regex(dnsmasq: Running) -> None:
    outcome = await run(dns(dnsmasq.port("dns"), receive=r"^192\.0\.2\.\d+$"))
    assert outcome.up, outcome


@pytest.mark.parametrize("protocol", ["udp", "tcp"])
async def test_ptr_record_up(dnsmasq: Running, protocol: str) -> None:
    t = dns(
        dnsmasq.port("dns"), request=f"/{DNS_ADDRESS}", receive=r"^www\.ldtest", protocol=protocol
    )
    outcome = await run(t)
    assert outcome.up, outcome


async def test_addn_hosts_record_up(dnsmasq: Running) -> None:
    outcome = await run(
        dns(dnsmasq.port("dns"), request="/other.ldtest.example", receive="192.0.2.20")
    )
    assert outcome.up, outcome


async def test_wrong_receive_is_no_match(dnsmasq: Running) -> None:
    outcome = await run(dns(dnsmasq.port("dns"), receive="^10\\."))
    assert (outcome.up, outcome.reason) == (False, Reason.NO_MATCH), outcome


async def test_unknown_name_is_bad_status(dnsmasq: Running) -> None:
    outcome = await run(dns(dnsmasq.port("dns"), request="/missing.example.org"))
    assert (outcome.up, outcome.reason) == (False, Reason.BAD_STATUS), outcome


async def test_empty_receive_is_config(dnsmasq: Running) -> None:
    # ldirectord: an empty receive can never match, so the check is always down
    outcome = await run(dns(dnsmasq.port("dns"), receive=""))
    assert (outcome.up, outcome.reason) == (False, Reason.CONFIG), outcome


async def test_tcp_refused() -> None:
    outcome = await run(dns(hostile.free_port(), protocol="tcp"))
    assert (outcome.up, outcome.reason) == (False, Reason.REFUSED)


def _udp_reply(payload: bytes) -> hostile.UdpPeer:
    def answer(data: bytes, addr: Any, transport: asyncio.DatagramTransport) -> None:
        transport.sendto(payload, addr)

    return hostile.UdpPeer(answer, name="udp-reply")


HOSTILE = {
    "udp-black-hole": ("udp", hostile.udp_black_hole, Reason.TIMEOUT),
    "udp-garbage": ("udp", lambda: _udp_reply(b"\xff\x00 not dns " * 20), Reason.PROTOCOL),
    "tcp-hang": ("tcp", hostile.hang, Reason.TIMEOUT),
    "tcp-trickle": ("tcp", lambda: hostile.trickle(b"\x00\x40" + b"\x00" * 64), Reason.TIMEOUT),
    "tcp-reset": ("tcp", lambda: hostile.reset(after_request=True), Reason.RESET),
    "tcp-garbage": ("tcp", lambda: hostile.garbage(after_request=False), Reason.PROTOCOL),
}


@pytest.mark.parametrize("behaviour", sorted(HOSTILE))
async def test_hostile(dnsmasq: Running, behaviour: str) -> None:
    protocol, make, reason = HOSTILE[behaviour]
    with make() as peer:
        bad, good, not_delayed = await beside(
            dns(peer.port, protocol=protocol), dns(dnsmasq.port("dns"), protocol=protocol)
        )
    assert (bad.up, bad.reason) == (False, reason), bad
    assert bad.duration < DEADLINE + MARGIN
    assert good.up and not_delayed, good


@pytest.mark.parametrize("protocol", ["udp", "tcp"])
async def test_ipv6_real_server_up(dnsmasq: Running, protocol: str) -> None:
    if not ipv6_loopback():
        pytest.skip("no ::1 on this host")
    t = target(
        "dns", dnsmasq.port("dns"), host="::1", protocol=protocol, request=f"/{DNS_NAME}",
        receive=DNS_ADDRESS, timeout=DEADLINE,
    )  # fmt: skip
    outcome = await run(t)
    assert outcome.up, outcome
