"""End to end in the guest: the engine (Director + IpvsBackend) in the director namespace,
real HTTP servers in rs1/rs2, a client sending requests to the VIP (topology.sh).

Run under ``ip netns exec director`` after topology.sh (tests/kernel/test_traffic.py does).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest

from ldirectord.config import parse_text
from ldirectord.config.model import Family, Method, Protocol
from ldirectord.engine.director import Director
from ldirectord.engine.events import LoggingEventSink
from ldirectord.errors import BackendError
from ldirectord.forwarding.base import Dest, DestKey, EditDest, KernelTable, Op, ServiceKey
from ldirectord.forwarding.ipvs import IpvsBackend
from tests.kernel.guest.conftest import sh
from tests.kernel.guest.ipvsadm_text import read_table
from tests.kernel.guest.netns import VIP, Client, NameServer

pytestmark = [pytest.mark.kernel, pytest.mark.asyncio]

SERVICE = ServiceKey(Protocol.TCP, Family.INET, VIP, 80)
RS = {"rs1": DestKey("10.10.0.11", 80), "rs2": DestKey("10.10.0.12", 80)}
#: Engine timings for these configs: 1 s interval, 2 s timeouts (detection is ~1-3 s).
CONVERGE = 20.0


def config_text(
    method: str = "masq",
    *,
    quiescent: bool = False,
    cleanstop: bool = True,
    weights: tuple[int, int] = (1, 1),
    fallback: str = "",
) -> str:
    return f"""checkinterval=1
checktimeout=2
negotiatetimeout=2
quiescent={"yes" if quiescent else "no"}
cleanstop={"yes" if cleanstop else "no"}

virtual={VIP}:80
\treal=10.10.0.11:80 {method} {weights[0]}
\treal=10.10.0.12:80 {method} {weights[1]}
\tservice=http
\trequest="/"
\treceive="rs"
\tscheduler=wrr
\tprotocol=tcp
\tchecktype=negotiate
{fallback}"""


class Recording:
    """The real backend, with every op the engine applies written down."""

    name = "ipvs"

    def __init__(self) -> None:
        self.inner = IpvsBackend()
        self.ops: list[Op] = []

    async def dump(self) -> KernelTable:
        return await self.inner.dump()

    async def apply(self, op: Op) -> None:
        self.ops.append(op)
        await self.inner.apply(op)

    async def apply_batch(self, ops: Sequence[Op]) -> list[BackendError | None]:
        self.ops.extend(ops)
        return await self.inner.apply_batch(ops)

    async def close(self) -> None:
        await self.inner.close()


@contextlib.asynccontextmanager
async def running(text: str, backend: Recording | None = None) -> AsyncIterator[Director]:
    backend = backend or Recording()
    director = Director(parse_text(text, check_files=False), backend, LoggingEventSink())
    await director.start()
    try:
        assert await director.wait_first_checks(timeout=CONVERGE)
        yield director
    finally:
        await director.stop()
        await backend.close()


def reals_in(table: KernelTable) -> dict[str, tuple[Method, int]]:
    """rs name (else ip:port) → (method, weight) for the VIP's dests in table."""
    entry = table.services.get(SERVICE)
    if entry is None:
        return {}
    names = {v: k for k, v in RS.items()}
    return {
        names.get(k, f"{k.address}:{k.port}"): (d.method, d.weight) for k, d in entry.dests.items()
    }


async def wait_reals(want: dict[str, tuple[Method, int]], timeout: float = CONVERGE) -> float:
    """Poll the kernel until the VIP holds exactly ``want``; seconds it took."""
    backend = IpvsBackend()
    started = time.monotonic()
    try:
        while True:
            have = reals_in(await backend.dump())
            if have == want:
                assert reals_in(read_table()) == want  # ipvsadm agrees
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise AssertionError(f"table never became {want}; last: {have}")
            await asyncio.sleep(0.1)
    finally:
        await backend.close()


@pytest.fixture
def servers(clean_table: None) -> Iterator[dict[str, NameServer]]:
    servers = {name: NameServer(name) for name in RS}
    for server in servers.values():
        server.start()
    yield servers
    for server in servers.values():
        server.close()


@pytest.fixture
def client() -> Iterator[Client]:
    c = Client()
    yield c
    c.close()


@pytest.fixture
def front_legs(request: pytest.FixtureRequest) -> Iterator[None]:
    """Real servers' front legs up (DR and TUN replies bypass the director) or down (NAT)."""
    up = request.param in ("gate", "ipip")
    for ns, dest in RS.items():
        sh("ip", "-n", ns, "link", "set", "front", "up" if up else "down")
        sh("ip", "-n", ns, "neigh", "flush", "all")
        if up:  # the reply path works (and its neighbours are resolved) before traffic starts
            wait_ping(ns, "10.10.9.10")
        wait_ping("director", dest.address)
    yield
    for ns in RS:
        sh("ip", "-n", ns, "link", "set", "front", "down")


def wait_ping(ns: str, address: str, attempts: int = 10) -> None:
    for _ in range(attempts):
        argv = ["ip", "netns", "exec", ns, "ping", "-c1", "-W1", address]
        if subprocess.run(argv, capture_output=True, timeout=10, check=False).returncode == 0:
            return
    raise AssertionError(f"{ns} cannot reach {address}")


async def requests(client: Client, n: int = 20) -> Counter[str]:
    counts = await asyncio.to_thread(client.many, n)
    if any(name.startswith("error") for name in counts):
        network_state()
    return counts


def network_state() -> None:
    """What the namespaces hold, printed for a failing traffic assertion."""
    for ns in ("client", "director", "rs1", "rs2"):
        for what in (["neigh"], ["-br", "addr"], ["route"]):
            out = sh("ip", "-n", ns, *what, check=False)
            print(f"--- {ns}: ip {' '.join(what)}\n{out}", file=sys.stderr)
    print(sh("ipvsadm", "-Ln", "--stats", check=False), file=sys.stderr)
    print(sh("ipvsadm", "-Lnc", check=False), file=sys.stderr)


def timing(what: str, seconds: float) -> None:
    """Measured engine timings end up in the guest output (docs/kernel-tests.md quotes them)."""
    print(f"timing: {what}: {seconds:.2f} s", file=sys.stderr)


@pytest.mark.parametrize(
    ("method", "front_legs"), [(m, m) for m in ("masq", "gate", "ipip")], indirect=["front_legs"]
)
@pytest.mark.parametrize("quiescent", [False, True], ids=["remove", "quiescent"])
@pytest.mark.usefixtures("front_legs")
async def test_a_dead_real_leaves_and_comes_back_while_every_request_succeeds(
    servers: dict[str, NameServer], client: Client, method: str, quiescent: bool
) -> None:
    m = Method(method)
    both = {"rs1": (m, 1), "rs2": (m, 1)}
    async with running(config_text(method, quiescent=quiescent)):
        await wait_reals(both)
        assert await requests(client) == {"rs1": 10, "rs2": 10}

        servers["rs1"].stop()
        gone = {"rs1": (m, 0), "rs2": (m, 1)} if quiescent else {"rs2": (m, 1)}
        timing(f"{method} real down → out of service", await wait_reals(gone))
        assert await requests(client) == {"rs2": 20}

        servers["rs1"].start()
        timing(f"{method} real back → in service", await wait_reals(both))
        assert await requests(client) == {"rs1": 10, "rs2": 10}
    assert SERVICE not in read_table().services  # cleanstop=yes


async def kill9_director(text: str, tmp_path: Path) -> None:
    """Start a director in its own process, wait until it is ready, kill -9 it."""
    path = tmp_path / "ldirectord.cf"
    path.write_text(text)
    script = Path(__file__).with_name("run_director.py")
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), CONVERGE + 30)
        assert line == "ready\n"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("how", ["stop-without-cleanstop", "kill-9"])
async def test_restart_against_the_live_table_changes_nothing(
    servers: dict[str, NameServer], client: Client, how: str, tmp_path: Path
) -> None:
    text = config_text("masq", cleanstop=False)
    both = {"rs1": (Method.MASQ, 1), "rs2": (Method.MASQ, 1)}
    kept = None
    if how == "kill-9":
        await kill9_director(text, tmp_path)
        await wait_reals(both)
        kept = client.keepalive()
        first = kept.get()
    else:
        async with running(text):
            await wait_reals(both)
            kept = client.keepalive()
            first = kept.get()
    before = read_table()
    assert reals_in(before) == both  # no cleanstop: the table outlives the director

    again = Recording()
    async with running(text, again):
        assert again.ops == []  # start-up over a table that is already right: zero ops
        assert read_table() == before
        assert kept.get() == first  # the established connection went on working
        assert await requests(client) == {"rs1": 10, "rs2": 10}
    assert again.ops == []  # stop without cleanstop leaves the table too
    kept.close()


async def test_reload_with_one_real_changed_is_exactly_that_op(
    servers: dict[str, NameServer], client: Client
) -> None:
    backend = Recording()
    async with running(config_text("masq"), backend) as director:
        await wait_reals({"rs1": (Method.MASQ, 1), "rs2": (Method.MASQ, 1)})
        backend.ops.clear()
        await director.reload(parse_text(config_text("masq", weights=(1, 3)), check_files=False))
        assert backend.ops == [EditDest(SERVICE, Dest(RS["rs2"], Method.MASQ, weight=3))]
        await wait_reals({"rs1": (Method.MASQ, 1), "rs2": (Method.MASQ, 3)})
        assert await requests(client, 20) == {"rs1": 5, "rs2": 15}


async def test_every_real_dead_then_back(servers: dict[str, NameServer], client: Client) -> None:
    # No fallback: the service stays, empty; requests fail (nothing can answer) until a real
    # comes back, then all succeed again.
    both = {"rs1": (Method.MASQ, 1), "rs2": (Method.MASQ, 1)}
    async with running(config_text("masq")):
        await wait_reals(both)
        for server in servers.values():
            server.stop()
        await wait_reals({})
        servers["rs2"].start()
        await wait_reals({"rs2": (Method.MASQ, 1)})
        assert await requests(client) == {"rs2": 20}


async def test_the_fallback_server_takes_over_when_every_real_is_dead(
    servers: dict[str, NameServer], client: Client
) -> None:
    sorry = NameServer("rs2", port=8080, answer="sorry")
    sorry.start()
    fallback = DestKey("10.10.0.12", 8080)
    try:
        text = config_text("masq", fallback="\tfallback=10.10.0.12:8080 masq\n")
        async with running(text):
            await wait_reals({"rs1": (Method.MASQ, 1), "rs2": (Method.MASQ, 1)})
            for server in servers.values():
                server.stop()
            await wait_reals({"10.10.0.12:8080": (Method.MASQ, 1)})  # weight 1, thresholds 0
            entry = read_table().services[SERVICE]
            assert entry.dests[fallback] == Dest(fallback, Method.MASQ, weight=1, upper=0, lower=0)
            assert await requests(client) == {"sorry": 20}
            servers["rs1"].start()
            await wait_reals({"rs1": (Method.MASQ, 1)})  # and the fallback is gone again
            assert await requests(client) == {"rs1": 20}
    finally:
        sorry.close()


TABLE_CHANGE = re.compile(r"\b(Added|Changed|Purged|Restored|Quiescent|Deleted|Removed)\b")


def start_daemon(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """Our daemon in the foreground (-d) with the IPVS backend, in its own process group."""
    argv = [sys.executable, "-m", "ldirectord", "-d", "--backend", "ipvs", str(config), "start"]
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def kill9(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


async def test_the_daemon_killed_9_and_started_again_changes_nothing(
    servers: dict[str, NameServer], client: Client, tmp_path: Path
) -> None:
    config = tmp_path / "ldirectord.cf"
    config.write_text(config_text("masq", cleanstop=False))
    both = {"rs1": (Method.MASQ, 1), "rs2": (Method.MASQ, 1)}
    first = start_daemon(config, tmp_path / "first.log")
    try:
        await wait_reals(both)
    finally:
        kill9(first)
    kept = client.keepalive()
    answer = kept.get()
    before = read_table()

    second_log = tmp_path / "second.log"
    second = start_daemon(config, second_log)
    try:
        await asyncio.sleep(5)  # start-up and several check rounds (1 s interval)
        assert second.poll() is None, second_log.read_text()
        assert read_table() == before
        assert kept.get() == answer  # the established connection went on working
        assert await requests(client) == {"rs1": 10, "rs2": 10}
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
        kept.close()
    assert TABLE_CHANGE.search((tmp_path / "first.log").read_text())  # the wording is seen
    changes = [line for line in second_log.read_text().splitlines() if TABLE_CHANGE.search(line)]
    assert changes == [], second_log.read_text()
    assert read_table() == before  # SIGTERM without cleanstop leaves the table too


VIP6 = "fd00:9::100"
SERVICE6 = ServiceKey(Protocol.TCP, Family.INET6, VIP6, 80)
CONFIG6 = """checkinterval=1
checktimeout=2
negotiatetimeout=2

virtual6=[fd00:9::100]:80
\treal6=[fd00::11]:80 masq
\treal6=[fd00::12]:80 masq
\tservice=http
\trequest="/"
\treceive="rs"
\tchecktype=negotiate
"""


async def wait_v6(want: set[str]) -> None:
    backend = IpvsBackend()
    try:
        for _ in range(int(CONVERGE * 10)):
            entry = (await backend.dump()).services.get(SERVICE6)
            if entry is not None and {d.address for d in entry.dests} == want:
                assert read_table().services[SERVICE6] == entry
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"the IPv6 service never held {want}")
    finally:
        await backend.close()


async def test_ipv6_nat_failover(servers: dict[str, NameServer], client: Client) -> None:
    async with running(CONFIG6):
        await wait_v6({"fd00::11", "fd00::12"})
        assert await asyncio.to_thread(client.many, 20, VIP6) == {"rs1": 10, "rs2": 10}
        servers["rs1"].stop()
        await wait_v6({"fd00::12"})
        assert await asyncio.to_thread(client.many, 20, VIP6) == {"rs2": 20}
        servers["rs1"].start()
        await wait_v6({"fd00::11", "fd00::12"})
        assert await asyncio.to_thread(client.many, 20, VIP6) == {"rs1": 10, "rs2": 10}
