"""ping checks: loopback answers; silence and no-route are tested inside a network namespace
created here (a veth pair with nobody behind it), so no packet leaves the machine."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from ldirectord.checks import ping as ping_module
from ldirectord.checks import run
from ldirectord.checks.base import Reason
from ldirectord.config.model import CheckType, Protocol, Service
from tests.conftest import ROOT
from tests.helpers import cancellation_sweep, check_target, open_fds

pytestmark = [pytest.mark.component]
TIMEOUT = 1.0


def ping(host: str, checkcount: int = 1, **kw: object):  # type: ignore[no-untyped-def]
    return check_target(
        Service.NONE, 0, kind=CheckType.PING, host=host, checktimeout=TIMEOUT,
        checkcount=checkcount, **kw,
    )  # fmt: skip


@pytest.mark.asyncio
@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1"])
async def test_loopback_answers(host: str) -> None:
    outcome = await run(ping(host))
    assert outcome.up, outcome
    assert "echo reply (1/1)" in outcome.detail


@pytest.mark.asyncio
async def test_many_concurrent_pings_share_one_socket_and_release_it() -> None:
    hosts = [f"127.0.{i // 250}.{i % 250 + 1}" for i in range(300)]
    outcomes = await asyncio.gather(*(run(ping(h, checkcount=2)) for h in hosts))
    assert all(o.up for o in outcomes), [o for o in outcomes if not o.up][:3]
    assert ping_module._PINGERS == {}


@pytest.mark.asyncio
async def test_a_burst_of_replies_queued_while_the_loop_is_busy_is_not_lost() -> None:
    # 800 echo requests sent, then the loop blocked while every reply queues on the one shared
    # socket (a raw socket as root also queues our own requests to local addresses): with
    # the default receive buffer the kernel dropped part of the burst (replies "lost").
    hosts = [f"127.1.{i // 250}.{i % 250 + 1}" for i in range(800)]
    tasks = [asyncio.ensure_future(run(ping(h))) for h in hosts]
    async with asyncio.timeout(TIMEOUT / 2):
        while len(ping_module._PINGERS) == 0 or any(
            not p.waiters for p in ping_module._PINGERS.values()
        ):
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)  # the sends are done
    time.sleep(0.4)  # block the loop on purpose: the replies wait in the socket buffer
    outcomes = await asyncio.gather(*tasks)
    assert all(o.up for o in outcomes), [o for o in outcomes if not o.up][:3]


@pytest.mark.asyncio
async def test_udp_connect_check_is_a_ping() -> None:
    target = check_target(
        Service.DNS, 53, kind=CheckType.CONNECT, protocol=Protocol.UDP, checktimeout=TIMEOUT
    )
    assert target.deadline == TIMEOUT
    outcome = await run(target)
    assert outcome.up, outcome


# --- inside a namespace of our own ---------------------------------------------------------

PROBE = """
import asyncio, json, sys, time
from ldirectord.checks import ping as ping_module
from ldirectord.checks import run
from tests.helpers import cancellation_sweep, check_target, open_fds
from ldirectord.config.model import CheckType, Service
async def main():
    out = {}
    for host in sys.argv[1:]:
        t = check_target(Service.NONE, 0, kind=CheckType.PING, host=host,
                         checktimeout=float(%r), checkcount=2)
        start = time.monotonic()
        o = await run(t)
        out[host] = [o.up, o.reason.value, o.detail, time.monotonic() - start]
    print(json.dumps(out))
asyncio.run(main())
"""


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to create a network namespace")
    name = f"ldtest-ping-{uuid.uuid4().hex[:8]}"
    if (
        subprocess.run(["ip", "netns", "add", name], check=False, capture_output=True).returncode
        != 0
    ):
        pytest.skip("network namespaces are not available here")
    try:
        for cmd in (
            "ip link set lo up",
            # a veth pair whose far end has no address: nobody answers ARP, packets die there
            "ip link add v0 type veth peer name v1",
            "ip link set v1 up",
            "ip link set v0 up",
            "ip addr add 10.213.0.1/24 dev v0",
        ):
            subprocess.run(["ip", "netns", "exec", name, *cmd.split()], check=True, timeout=10)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True, timeout=10)


def test_silence_and_no_route_inside_a_namespace(netns: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.monotonic()
    proc = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", PROBE % TIMEOUT,
         "127.0.0.1", "10.213.0.2", "10.99.0.1"],
        check=False, capture_output=True, text=True, timeout=30, env=env, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert results["127.0.0.1"][0] is True
    up, reason, _detail, elapsed = results["10.213.0.2"]  # on-link, nobody there: no reply
    assert (up, reason) == (False, Reason.TIMEOUT.value)
    assert elapsed < 2 * TIMEOUT + 1.0  # checkcount=2 attempts of checktimeout each
    up, reason, _detail, elapsed = results["10.99.0.1"]  # no route at all
    assert (up, reason) == (False, Reason.UNREACHABLE.value)
    assert elapsed < 1.0
    assert time.monotonic() - start < 20


@pytest.mark.asyncio
async def test_cancellation_at_any_point_leaks_no_socket() -> None:
    target = ping("127.0.0.1")
    before = open_fds()
    assert await cancellation_sweep(lambda: run(target)) > 0
    assert open_fds() <= before
    assert ping_module._PINGERS == {}
