"""forwarding/dryrun.py: an in-memory kernel that logs ops and refuses what the kernel refuses."""

from __future__ import annotations

import errno

import pytest

from ldirectord.config.model import Family, Method, Protocol
from ldirectord.errors import BackendError
from ldirectord.forwarding.base import (
    AddDest,
    AddService,
    DeleteDest,
    DeleteService,
    Dest,
    DestKey,
    EditDest,
    EditService,
    ServiceKey,
    ServiceSpec,
)
from ldirectord.forwarding.dryrun import DryRunBackend, command_for
from tests.unit.engine_support import dest, skey, table

V = skey()
SPEC = ServiceSpec(V, scheduler="wrr")
D1 = dest("10.0.0.1", weight=2, upper=10, lower=1)


@pytest.mark.asyncio
async def test_add_and_dump_and_log() -> None:
    lines: list[str] = []
    b = DryRunBackend(log=lines.append)
    await b.apply(AddService(SPEC))
    await b.apply(AddDest(V, D1))
    t = await b.dump()
    assert t.services[V].dests[D1.key] == D1
    assert lines == [
        "[dry-run] ipvsadm -A -t 192.168.6.240:80 -s wrr",
        "[dry-run] ipvsadm -a -t 192.168.6.240:80 -x 10 -y 1 -r 10.0.0.1:80 -g -w 2",
    ]
    assert b.applied == [AddService(SPEC), AddDest(V, D1)]


@pytest.mark.asyncio
async def test_initial_table_and_snapshot_isolation() -> None:
    b = DryRunBackend(table((V, [D1])))
    before = await b.dump()
    await b.apply(DeleteDest(V, D1.key))
    assert D1.key in before.services[V].dests
    assert D1.key not in (await b.dump()).services[V].dests


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("op", "code"),
    [
        (AddService(SPEC), errno.EEXIST),
        (AddDest(V, D1), errno.EEXIST),
        (EditService(ServiceSpec(skey("10.1.1.1"))), errno.ESRCH),
        (DeleteService(skey("10.1.1.1")), errno.ESRCH),
        (AddDest(skey("10.1.1.1"), D1), errno.ESRCH),
        (EditDest(V, dest("10.0.0.9")), errno.ENOENT),
        (DeleteDest(V, DestKey("10.0.0.9", 80)), errno.ENOENT),
        (EditService(ServiceSpec(V, scheduler="nope")), errno.ENOENT),
        (AddDest(V, dest("10.0.0.2", weight=-1)), errno.EINVAL),
    ],
)
async def test_refuses_like_the_kernel(op: object, code: int) -> None:
    b = DryRunBackend(table((SPEC, [D1])))
    with pytest.raises(BackendError) as info:
        await b.apply(op)  # type: ignore[arg-type]
    assert info.value.errno == code
    assert b.applied == []


@pytest.mark.asyncio
async def test_edit_and_delete_service() -> None:
    b = DryRunBackend(table((SPEC, [D1])))
    await b.apply(EditService(ServiceSpec(V, scheduler="wlc", persistent=60)))
    t = await b.dump()
    assert t.services[V].spec.scheduler == "wlc"
    assert D1.key in t.services[V].dests  # dests survive an edit
    await b.apply(EditDest(V, Dest(D1.key, Method.MASQ, 0)))
    assert (await b.dump()).services[V].dests[D1.key].weight == 0
    await b.apply(DeleteService(V))
    assert (await b.dump()).services == {}


@pytest.mark.asyncio
async def test_fail_next_and_close() -> None:
    b = DryRunBackend()
    b.fail_next.append(BackendError("boom", errno=errno.EIO))
    with pytest.raises(BackendError):
        await b.apply(AddService(SPEC))
    await b.apply(AddService(SPEC))
    await b.close()
    assert b.closed


def test_command_lines() -> None:
    fw6 = ServiceKey(Protocol.FWM, Family.INET6, None, 0, 5)
    assert command_for(AddService(ServiceSpec(fw6))) == "ipvsadm -A -f 5 -6 -s wrr"
    udp = ServiceSpec(
        ServiceKey(Protocol.UDP, Family.INET, "10.0.0.53", 53),
        scheduler="rr",
        persistent=300,
        netmask="255.255.255.0",
        sched_flags=frozenset({"sh-port"}),
        ops=True,
    )
    assert (
        command_for(EditService(udp))
        == "ipvsadm -E -u 10.0.0.53:53 -o -s rr -p 300 -M 255.255.255.0 -b sh-port"
    )
    assert command_for(DeleteDest(V, DestKey("10.0.0.1", 80))) == (
        "ipvsadm -d -t 192.168.6.240:80 -r 10.0.0.1:80"
    )
    v6 = ServiceKey(Protocol.TCP, Family.INET6, "2001:db8::1", 80)
    assert command_for(EditDest(v6, dest("2001:db8::2", method=Method.IPIP))) == (
        "ipvsadm -e -t [2001:db8::1]:80 -x 0 -y 0 -r [2001:db8::2]:80 -i -w 1"
    )
    assert command_for(DeleteService(V)) == "ipvsadm -D -t 192.168.6.240:80"
