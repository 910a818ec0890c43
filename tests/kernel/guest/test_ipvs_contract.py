"""IpvsBackend against the real kernel: every op kind and every field round-trips.

After each apply, the backend's dump must equal what we applied, and ``ipvsadm -Ln`` (read as
ldirectord reads it, with --thresholds and --persistent-conn) must say the same.
"""

from __future__ import annotations

import errno
import sys
from dataclasses import replace

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
    KernelTable,
    ServiceKey,
    ServiceSpec,
    VirtualEntry,
)
from ldirectord.forwarding.ipvs import IpvsBackend
from tests.kernel.guest.ipvsadm_text import read_table

pytestmark = [pytest.mark.kernel, pytest.mark.asyncio]

SCHEDULERS = ["rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh"]
TCP4 = ServiceKey(Protocol.TCP, Family.INET, "10.1.1.1", 80)
UDP4 = ServiceKey(Protocol.UDP, Family.INET, "10.1.1.2", 53)
TCP6 = ServiceKey(Protocol.TCP, Family.INET6, "fd00:1::1", 443)
UDP6 = ServiceKey(Protocol.UDP, Family.INET6, "fd00:1::2", 5060)
FWM4 = ServiceKey(Protocol.FWM, Family.INET, None, 0, 7)
FWM6 = ServiceKey(Protocol.FWM, Family.INET6, None, 0, 8)

SPECS = {
    **{f"tcp4-{s}": ServiceSpec(TCP4, scheduler=s) for s in SCHEDULERS},
    "udp4-ops": ServiceSpec(UDP4, scheduler="rr", ops=True),
    "udp4-persistent-ops": ServiceSpec(UDP4, scheduler="wlc", persistent=30, ops=True),
    "tcp4-persistent-mask": ServiceSpec(TCP4, persistent=300, netmask="255.255.255.0"),
    "tcp4-persistent-default-mask": ServiceSpec(TCP4, scheduler="lc", persistent=7200),
    "tcp6-persistent-mask": ServiceSpec(TCP6, scheduler="rr", persistent=600, netmask="64"),
    "tcp6-plain": ServiceSpec(TCP6, scheduler="wrr", netmask="128"),
    "udp6-ops": ServiceSpec(UDP6, scheduler="sed", netmask="128", ops=True),
    "fwm4": ServiceSpec(FWM4, scheduler="wlc"),
    "fwm4-persistent-mask": ServiceSpec(FWM4, persistent=60, netmask="255.255.0.0"),
    "fwm6-persistent": ServiceSpec(FWM6, scheduler="nq", persistent=20, netmask="128"),
    "fwm6-persistent-mask": ServiceSpec(FWM6, persistent=20, netmask="48"),
    "sh-fallback": ServiceSpec(TCP4, scheduler="sh", sched_flags=frozenset({"sh-fallback"})),
    "sh-port": ServiceSpec(TCP4, scheduler="sh", sched_flags=frozenset({"sh-port"})),
    "sh-both-persistent": ServiceSpec(
        TCP4, scheduler="sh", persistent=100, sched_flags=frozenset({"sh-fallback", "sh-port"})
    ),
    "mh-fallback-port": ServiceSpec(
        TCP6, scheduler="mh", netmask="128", sched_flags=frozenset({"mh-fallback", "mh-port"})
    ),
    "wrr-flag-1-3": ServiceSpec(TCP4, sched_flags=frozenset({"flag-1", "flag-3"})),
}


async def check(backend: IpvsBackend, expected: KernelTable) -> None:
    dumped = await backend.dump()
    assert dumped == expected
    assert read_table() == expected


def table(*entries: tuple[ServiceSpec, list[Dest]]) -> KernelTable:
    return KernelTable(
        {spec.key: VirtualEntry(spec, {d.key: d for d in dests}) for spec, dests in entries}
    )


def edited(spec: ServiceSpec) -> ServiceSpec:
    """Another value for every field that can change (the key stays)."""
    netmask = "128" if spec.key.family is Family.INET6 else "255.255.255.255"
    if spec.persistent is None:
        netmask = "96" if spec.key.family is Family.INET6 else "255.255.255.240"
    return replace(
        spec,
        scheduler="rr" if spec.scheduler != "rr" else "wlc",
        persistent=None if spec.persistent is not None else 900,
        netmask=netmask,
        sched_flags=frozenset(),
        ops=not spec.ops if spec.key.protocol is Protocol.UDP else spec.ops,
    )


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
async def test_service_add_edit_delete_round_trip(backend: IpvsBackend, spec: ServiceSpec) -> None:
    await backend.apply(AddService(spec))
    await check(backend, table((spec, [])))
    other = edited(spec)
    await backend.apply(EditService(other))
    await check(backend, table((other, [])))
    await backend.apply(EditService(spec))  # and back: an edit restores every field
    await check(backend, table((spec, [])))
    await backend.apply(DeleteService(spec.key))
    await check(backend, KernelTable())


DEST_CASES = {
    "tcp4-gate": (TCP4, Dest(DestKey("10.2.0.1", 80), Method.GATE)),
    "tcp4-masq-port": (TCP4, Dest(DestKey("10.2.0.2", 8080), Method.MASQ, weight=5)),
    "tcp4-ipip-thresholds": (
        TCP4,
        Dest(DestKey("10.2.0.3", 80), Method.IPIP, weight=3, upper=100, lower=50),
    ),
    "tcp4-weight-0": (TCP4, Dest(DestKey("10.2.0.4", 80), Method.GATE, weight=0)),
    "tcp4-weight-max": (TCP4, Dest(DestKey("10.2.0.5", 80), Method.MASQ, weight=65535)),
    "udp6-masq": (UDP6, Dest(DestKey("fd00:2::1", 5060), Method.MASQ, weight=2, upper=10)),
    "udp6-gate": (UDP6, Dest(DestKey("fd00:2::2", 5060), Method.GATE, lower=0, upper=0)),
    "tcp6-ipip": (TCP6, Dest(DestKey("fd00:2::3", 443), Method.IPIP, weight=7)),
    "fwm4-gate-port-0": (FWM4, Dest(DestKey("10.2.0.6", 0), Method.GATE)),
    "fwm4-masq": (FWM4, Dest(DestKey("10.2.0.7", 80), Method.MASQ, upper=5, lower=1)),
    "fwm6-ipip": (FWM6, Dest(DestKey("fd00:2::4", 0), Method.IPIP, weight=9)),
}


def spec_for(key: ServiceKey) -> ServiceSpec:
    return ServiceSpec(key, netmask="128" if key.family is Family.INET6 else "255.255.255.255")


@pytest.mark.parametrize(("service", "dest"), DEST_CASES.values(), ids=DEST_CASES.keys())
async def test_dest_add_edit_delete_round_trip(
    backend: IpvsBackend, service: ServiceKey, dest: Dest
) -> None:
    spec = spec_for(service)
    await backend.apply(AddService(spec))
    await backend.apply(AddDest(service, dest))
    await check(backend, table((spec, [dest])))
    # Each field alone: the full object goes out, so nothing else falls back to a default.
    other_method = Method.MASQ if dest.method is not Method.MASQ else Method.IPIP
    for changed in (
        replace(dest, weight=dest.weight + 1),
        replace(dest, weight=0),
        replace(dest, method=other_method),
        replace(dest, upper=dest.upper + 20, lower=dest.lower + 10),
        replace(dest, upper=0, lower=0),
        dest,
    ):
        await backend.apply(EditDest(service, changed))
        await check(backend, table((spec, [changed])))
    await backend.apply(DeleteDest(service, dest.key))
    await check(backend, table((spec, [])))


async def test_service_edit_keeps_its_dests(backend: IpvsBackend) -> None:
    spec = ServiceSpec(TCP4, persistent=300, netmask="255.255.255.0")
    dests = [
        Dest(DestKey("10.2.0.1", 80), Method.GATE, weight=2, upper=9, lower=3),
        Dest(DestKey("10.2.0.2", 8080), Method.MASQ, weight=0),
    ]
    await backend.apply(AddService(spec))
    for d in dests:
        await backend.apply(AddDest(TCP4, d))
    other = replace(spec, scheduler="lc", persistent=None, netmask="255.255.255.255")
    await backend.apply(EditService(other))
    await check(backend, table((other, dests)))


async def test_many_services_dump_whole_table(backend: IpvsBackend) -> None:
    entries = []
    for i in range(100):
        key = ServiceKey(Protocol.TCP, Family.INET, f"10.3.{i // 50}.{i % 50 + 1}", 80 + i)
        spec = ServiceSpec(key, scheduler=SCHEDULERS[i % len(SCHEDULERS)])
        dests = [Dest(DestKey(f"10.4.{i}.{j}", 80), Method.GATE, weight=j) for j in range(1, 4)]
        entries.append((spec, dests))
        await backend.apply(AddService(spec))
        for d in dests:
            await backend.apply(AddDest(key, d))
    await check(backend, table(*entries))


# --- refusals and convergence -------------------------------------------------------------


async def test_unknown_scheduler_is_a_backend_error(backend: IpvsBackend) -> None:
    op = AddService(ServiceSpec(TCP4, scheduler="no-such"))
    with pytest.raises(BackendError) as info:
        await backend.apply(op)
    assert info.value.errno == errno.ENOENT
    assert info.value.op == op
    await check(backend, KernelTable())


@pytest.mark.parametrize(
    ("dest", "code"),
    [
        (Dest(DestKey("10.2.0.1", 80), Method.GATE, upper=10, lower=20), errno.ERANGE),
        (Dest(DestKey("10.2.0.1", 80), Method.GATE, weight=2**31), errno.ERANGE),
        (Dest(DestKey("10.2.0.1", 80), Method.GATE, weight=2**32), errno.EINVAL),
    ],
    ids=["lower-above-upper", "weight-above-int-max", "weight-above-u32"],
)
async def test_invalid_dest_is_a_backend_error(backend: IpvsBackend, dest: Dest, code: int) -> None:
    await backend.apply(AddService(spec_for(TCP4)))
    op = AddDest(TCP4, dest)
    with pytest.raises(BackendError) as info:
        await backend.apply(op)
    assert (info.value.errno, info.value.op) == (code, op)
    await check(backend, table((spec_for(TCP4), [])))


async def test_ops_on_a_missing_service_are_refused(backend: IpvsBackend) -> None:
    dest = Dest(DestKey("10.2.0.1", 80), Method.GATE)
    for op in (AddDest(TCP4, dest), EditDest(TCP4, dest), EditService(spec_for(TCP4))):
        with pytest.raises(BackendError) as info:
            await backend.apply(op)
        assert (info.value.errno, info.value.op) == (errno.ESRCH, op)


async def test_edit_of_a_missing_dest_is_refused_not_re_added(backend: IpvsBackend) -> None:
    # readdquiescent=no relies on this: a real an admin deleted stays deleted.
    await backend.apply(AddService(spec_for(TCP4)))
    op = EditDest(TCP4, Dest(DestKey("10.2.0.1", 80), Method.GATE, weight=0))
    with pytest.raises(BackendError) as info:
        await backend.apply(op)
    assert info.value.errno == errno.ENOENT
    await check(backend, table((spec_for(TCP4), [])))


async def test_deleting_what_is_gone_is_done(backend: IpvsBackend) -> None:
    await backend.apply(AddService(spec_for(TCP4)))
    await backend.apply(DeleteDest(TCP4, DestKey("10.2.0.1", 80)))
    await backend.apply(DeleteService(TCP4))
    await backend.apply(DeleteService(TCP4))
    await check(backend, KernelTable())


async def test_add_of_an_existing_entry_converges_to_the_wanted_values(
    backend: IpvsBackend,
) -> None:
    spec = spec_for(TCP4)
    dest = Dest(DestKey("10.2.0.1", 80), Method.MASQ, weight=4, upper=8, lower=2)
    await backend.apply(AddService(spec))
    await backend.apply(AddDest(TCP4, replace(dest, method=Method.GATE, weight=1)))
    wanted = replace(spec, scheduler="sh", persistent=60)
    await backend.apply(AddService(wanted))  # EEXIST → edit
    await backend.apply(AddDest(TCP4, dest))  # EEXIST → edit
    await backend.apply(AddDest(TCP4, dest))  # EEXIST, already right → done
    await check(backend, table((wanted, [dest])))


async def test_a_table_made_by_ipvsadm_dumps_normalised(backend: IpvsBackend) -> None:
    # What ldirectord's ipvsadm calls leave behind, read back by us (a restart over Perl's table).
    from tests.kernel.guest.conftest import sh

    sh("ipvsadm", "-A", "-t", "10.1.1.1:80", "-s", "wrr", "-p", "300", "-M", "255.255.255.0")
    sh("ipvsadm", "-a", "-t", "10.1.1.1:80", "-r", "10.2.0.1:80", "-g", "-w", "2", "-x", "9")
    sh("ipvsadm", "-A", "-f", "8", "-6", "-s", "sh", "-b", "sh-port")
    sh("ipvsadm", "-a", "-f", "8", "-6", "-r", "[fd00:2::4]:0", "-i", "-w", "0")
    sh("ipvsadm", "-A", "-u", "[fd00:1::2]:53", "-s", "rr", "-o")
    expected = table(
        (
            ServiceSpec(TCP4, persistent=300, netmask="255.255.255.0"),
            [Dest(DestKey("10.2.0.1", 80), Method.GATE, weight=2, upper=9)],
        ),
        (
            ServiceSpec(FWM6, scheduler="sh", netmask="128", sched_flags=frozenset({"sh-port"})),
            [Dest(DestKey("fd00:2::4", 0), Method.IPIP, weight=0)],
        ),
        (
            ServiceSpec(
                ServiceKey(Protocol.UDP, Family.INET6, "fd00:1::2", 53),
                scheduler="rr",
                netmask="128",
                ops=True,
            ),
            [],
        ),
    )
    await check(backend, expected)


async def test_usable_as_root_and_why_not_without_cap_net_admin(backend: IpvsBackend) -> None:
    from ldirectord.forwarding.ipvs import usable
    from tests.kernel.guest.conftest import sh

    assert await usable() is None
    assert await backend.usable() is None
    code = "import asyncio; from ldirectord.forwarding.ipvs import usable; print(asyncio.run(usable()))"
    out = sh(
        "setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--inh-caps=-all",
        sys.executable, "-c", code,
    )  # fmt: skip
    assert "CAP_NET_ADMIN" in out
