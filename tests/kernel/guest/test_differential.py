"""Differential: Debian's Perl ldirectord and ours (the engine in-process, and the daemon
``python -m ldirectord -d --backend ipvs CONFIG start``), same config, same healthy and dead
real servers, same guest: the kernel tables (``ipvsadm -Ln`` and ``--thresholds``) must be
identical once each has settled. One config per forwarding method, several virtuals each
(quiescent or not, persistence + netmask + scheduler flags, thresholds, a fallback when every
real is dead, fwmark, UDP with one-packet scheduling, gate reals on another port).

rs1 (10.10.0.11) serves HTTP on 80 and 8080; rs2 (10.10.0.12) and 10.10.0.13 serve nothing.
A dead real appears in one virtual only: Perl ldirectord queues the start-up treatment of
dead reals by ``ip:port`` alone (ld_start's ``$server_down``), so a dead real shared by several
virtuals is treated for the last one only; test_shared_dead_real_... pins that difference.
Run under ``ip netns exec director`` after topology.sh (tests/kernel/test_differential.py).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ldirectord.config import load
from ldirectord.engine.director import Director
from ldirectord.engine.events import LoggingEventSink
from ldirectord.forwarding.ipvs import IpvsBackend
from tests.kernel.guest.conftest import sh
from tests.kernel.guest.netns import NameServer

pytestmark = [pytest.mark.kernel]

PERL_LDIRECTORD = "/usr/sbin/ldirectord"
GLOBALS = "checkinterval=1\nchecktimeout=2\nnegotiatetimeout=2\n"
HTTP = '\tservice=http\n\trequest="/"\n\treceive="rs"\n\tchecktype=negotiate\n'

CONFIGS = {
    "masq": GLOBALS
    + "\nvirtual=10.10.9.100:80\n"
    + "\treal=10.10.0.11:80 masq\n\treal=10.10.0.12:80 masq\n"
    + HTTP
    + "\tscheduler=wrr\n\tquiescent=no\n"
    + "\nvirtual=10.10.9.101:80\n"
    + "\treal=10.10.0.11:8080 masq 3 l:10 u:100\n\treal=10.10.0.12:81 masq 2\n"
    + HTTP
    + "\tscheduler=sh\n\tschedflags=sh-port\n\tpersistent=300\n\tnetmask=255.255.255.0\n"
    + "\tquiescent=yes\n"
    + "\nvirtual=10.10.9.102:80\n"
    + "\treal=10.10.0.12:80 masq\n\treal=10.10.0.13:80 masq\n"
    + "\tfallback=10.10.0.11:8080 masq\n"
    + HTTP
    + "\tquiescent=no\n",
    "gate": GLOBALS
    + "\nvirtual=10.10.9.100:80\n"
    + "\treal=10.10.0.11:80 gate 5\n\treal=10.10.0.12:80 gate\n"
    + HTTP
    + "\tscheduler=rr\n\tquiescent=yes\n"
    + "\nvirtual=1\n"
    + "\treal=10.10.0.11:80 gate\n\treal=10.10.0.12:82 gate 2\n"
    + HTTP
    + "\tscheduler=wlc\n\tpersistent=60\n\tquiescent=no\n"
    + "\nvirtual=10.10.9.103:8080\n"
    + "\treal=10.10.0.11:8080 gate\n\treal=10.10.0.12:8080 gate\n"
    + HTTP
    + "\tscheduler=lc\n\tquiescent=no\n"
    + "\nvirtual=10.10.9.102:80\n"
    + "\treal=10.10.0.12:83 gate\n"
    + "\tfallback=127.0.0.1:80 gate\n"
    + HTTP
    + "\tquiescent=yes\n",
    "ipip": GLOBALS
    + "\nvirtual=10.10.9.100:80\n"
    + "\treal=10.10.0.11:80 ipip 2\n\treal=10.10.0.12:80 ipip 3\n"
    + HTTP
    + "\tscheduler=mh\n\tschedflags=mh-fallback,mh-port\n\tquiescent=yes\n"
    + "\tpersistent=120\n\tnetmask=255.255.0.0\n"
    + "\nvirtual=10.10.9.104:53\n"
    + "\treal=10.10.0.11:53 ipip\n\treal=10.10.0.12:53 ipip\n"
    + "\tchecktype=on\n\tprotocol=udp\n\tops=yes\n\tscheduler=rr\n",
}


def listing() -> str:
    """``ipvsadm -Ln`` and ``--thresholds``, each service's reals sorted: the kernel lists reals
    in the order they were added, and our checks run concurrently, Perl's one by one."""
    return normalised(sh("ipvsadm", "-Ln")) + normalised(sh("ipvsadm", "-Ln", "--thresholds"))


def normalised(text: str) -> str:
    out: list[str] = []
    reals: list[str] = []
    in_service = False
    for line in text.splitlines(keepends=True):
        if in_service and line.startswith("  -> "):
            reals.append(line)
            continue
        out.extend(sorted(reals))
        reals = []
        out.append(line)
        in_service = line[:4] in ("TCP ", "UDP ", "FWM ")
    out.extend(sorted(reals))
    return "".join(out)


def services_in(config: Path) -> int:
    return sum(line.startswith("virtual=") for line in config.read_text().splitlines())


def settle(
    started: float, services: int, quiet: float = 5.0, timeout: float = 90.0
) -> tuple[str, float]:
    """The table once it holds ``services`` services and has not changed for ``quiet`` s,
    and how long after ``started`` it last changed."""
    last, since = listing(), time.monotonic()
    while True:
        time.sleep(0.25)
        now = listing()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet and _count(now) == services:
            return now, since - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"table still changing after {timeout} s:\n{now}")


def _count(text: str) -> int:
    first = text.split("IP Virtual Server", 2)[1]
    return sum(line[:4] in ("TCP ", "UDP ", "FWM ") for line in first.splitlines())


def perl_table(config: Path, workdir: Path) -> tuple[str, float]:
    """Run Perl ldirectord (-d: foreground, no ./ipvsadm in its cwd) until its table settles."""
    return daemon_table([PERL_LDIRECTORD, "-d", str(config), "start"], config, workdir, "perl")


def daemon_table(argv: list[str], config: Path, workdir: Path, name: str) -> tuple[str, float]:
    """Run a daemon in the foreground until its table settles; SIGTERM it; flush the table."""
    log = (workdir / f"{name}.log").open("w")
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        return settle(started, services_in(config))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)
        log.close()
        sh("ipvsadm", "-C")


async def our_table(config: Path) -> tuple[str, float]:
    backend = IpvsBackend()
    started = time.monotonic()
    director = Director(load(str(config), check_files=False), backend, LoggingEventSink())
    await director.start()
    try:
        assert await director.wait_first_checks(timeout=60)
        return await asyncio.to_thread(settle, started, services_in(config))
    finally:
        await director.stop()
        await backend.close()
        sh("ipvsadm", "-C")


@pytest.fixture
def rs1(clean_table: None) -> Iterator[None]:
    servers = []
    for port in (80, 8080):
        server = NameServer("rs1", port=port)
        server.start()
        servers.append(server)
    yield
    for server in servers:
        server.close()


@pytest.mark.skipif(shutil.which(PERL_LDIRECTORD) is None, reason="ldirectord not installed")
@pytest.mark.parametrize("method", CONFIGS)
@pytest.mark.usefixtures("rs1")
def test_same_table_as_perl_ldirectord(method: str, tmp_path: Path) -> None:
    config = tmp_path / "ldirectord.cf"
    config.write_text(CONFIGS[method])
    perl, perl_s = perl_table(config, tmp_path)
    engine, engine_s = asyncio.run(our_table(config))
    daemon, daemon_s = daemon_table(
        [sys.executable, "-m", "ldirectord", "-d", "--backend", "ipvs", str(config), "start"],
        config,
        tmp_path,
        "ours",
    )
    print(
        f"timing: {method}: table final after start: Perl {perl_s:.1f} s, "
        f"our engine {engine_s:.1f} s, our daemon {daemon_s:.1f} s"
    )
    if not perl == engine == daemon:
        print(f"--- Perl ldirectord\n{perl}--- our engine\n{engine}--- our daemon\n{daemon}")
        print((tmp_path / "perl.log").read_text()[-20000:])
        print((tmp_path / "ours.log").read_text()[-20000:])
    assert engine == perl
    assert daemon == perl


SHARED = (
    GLOBALS
    + "\nvirtual=10.10.9.100:80\n"
    + "\treal=10.10.0.11:80 masq\n\treal=10.10.0.12:80 masq 2\n"
    + HTTP
    + "\tquiescent=yes\n"
    + "\nvirtual=10.10.9.101:80\n"
    + "\treal=10.10.0.11:80 masq\n\treal=10.10.0.12:80 masq\n"
    + HTTP
    + "\tquiescent=no\n"
)
QUIESCED = "  -> 10.10.0.12:80                Masq    0      0          0         \n"


@pytest.mark.skipif(shutil.which(PERL_LDIRECTORD) is None, reason="ldirectord not installed")
@pytest.mark.usefixtures("rs1")
def test_shared_dead_real_is_quiesced_in_every_quiescent_virtual(tmp_path: Path) -> None:
    """Deliberate difference. A real that is down at start-up in a quiescent=yes virtual is
    put in at weight 0 (ldirectord's documented start-up: every configured real that is not up
    exists at weight 0). Perl ldirectord skips that when the same ip:port is also a real of a
    later virtual: its start-up queue is keyed by ip:port, the later virtual wins, and the
    quiescent virtual keeps the dead real missing (readdquiescent=no leaves it so)."""
    config = tmp_path / "ldirectord.cf"
    config.write_text(SHARED)
    perl, _ = perl_table(config, tmp_path)
    ours, _ = asyncio.run(our_table(config))
    # Ours has one more line in each listing of the quiescent virtual: rs2 at weight 0.
    threshold = "  -> 10.10.0.12:80                0          0          0          0         \n"
    extra = {QUIESCED, threshold}
    lines = ours.splitlines(keepends=True)
    assert [line for line in lines if line in extra] == [QUIESCED, threshold]
    block = [i for i, line in enumerate(lines) if line.startswith("TCP  10.10.9.100:80")]
    assert all(lines[i + 2] in extra for i in block)  # after rs1 (sorted), in .100's blocks
    assert "".join(line for line in lines if line not in extra) == perl
