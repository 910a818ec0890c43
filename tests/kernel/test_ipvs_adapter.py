"""IpvsBackend's own logic on the host, with a scripted netlink socket: deadlines, socket reset,
retry and convergence, and the normalisation of dumped attributes. (The kernel contract is in
guest/test_ipvs_contract.py; a kernel cannot be made to hang or to answer EBUSY on demand.)
"""

from __future__ import annotations

import asyncio
import errno
import time
from collections.abc import Callable
from typing import Any

import pytest
from pyroute2.netlink.exceptions import NetlinkError

from ldirectord.config.model import Family, Method, Protocol
from ldirectord.errors import BackendError
from ldirectord.forwarding import ipvs
from ldirectord.forwarding.base import (
    AddDest,
    AddService,
    DeleteDest,
    Dest,
    DestKey,
    EditDest,
    ServiceKey,
    ServiceSpec,
)
from ldirectord.forwarding.ipvs import IpvsBackend, sched_flag_bits, sched_flag_names

TCP4 = ServiceKey(Protocol.TCP, Family.INET, "10.1.1.1", 80)
SPEC = ServiceSpec(TCP4)
DEST = Dest(DestKey("10.2.0.1", 80), Method.MASQ, weight=2, upper=5, lower=1)


class Msg:
    def __init__(self, nla: str, attrs: dict[str, Any]) -> None:
        self._nla, self._attrs = nla, attrs

    def get_attr(self, name: str) -> Any:
        return {"attrs": list(self._attrs.items())} if name == self._nla else None


def svc_msg(**extra: Any) -> Msg:
    attrs = {
        "IPVS_SVC_ATTR_AF": 2,
        "IPVS_SVC_ATTR_PROTOCOL": 6,
        "IPVS_SVC_ATTR_ADDR": "10.1.1.1",
        "IPVS_SVC_ATTR_PORT": 80,
        "IPVS_SVC_ATTR_SCHED_NAME": "wrr",
        "IPVS_SVC_ATTR_FLAGS": {"flags": 0x2, "mask": 0xFFFFFFFF},
        "IPVS_SVC_ATTR_TIMEOUT": 0,
        "IPVS_SVC_ATTR_NETMASK": "255.255.255.255",
    }
    attrs.update(extra)
    return Msg("IPVS_CMD_ATTR_SERVICE", attrs)


def dest_msg(fwd: int = 0, **extra: Any) -> Msg:
    attrs = {
        "IPVS_DEST_ATTR_ADDR": "10.2.0.1",
        "IPVS_DEST_ATTR_PORT": 80,
        "IPVS_DEST_ATTR_FWD_METHOD": fwd,
        "IPVS_DEST_ATTR_WEIGHT": 2,
        "IPVS_DEST_ATTR_U_THRESH": 5,
        "IPVS_DEST_ATTR_L_THRESH": 1,
    }
    attrs.update(extra)
    return Msg("IPVS_CMD_ATTR_DEST", attrs)


Handler = Callable[[str, str], Any]


class FakeSocket:
    """Answers each request through ``handler(kind, command)``: a list, an exception, or
    "hang" (never answers)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.calls: list[tuple[str, str]] = []
        self.closed = False

    async def _answer(self, kind: str, command: str) -> list[Any]:
        self.calls.append((kind, command))
        result = self.handler(kind, command)
        if result == "hang":
            await asyncio.sleep(3600)
        if isinstance(result, BaseException):
            raise result
        return list(result)

    async def service(self, command: str, service: Any = None) -> list[Any]:
        return await self._answer("service", command)

    async def dest(self, command: str, service: Any, dest: Any = None) -> list[Any]:
        return await self._answer("dest", command)

    def close(self) -> None:
        self.closed = True


class Connector:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.sockets: list[FakeSocket] = []

    async def __call__(self) -> FakeSocket:
        sock = FakeSocket(self.handler)
        self.sockets.append(sock)
        return sock

    @property
    def calls(self) -> list[tuple[str, str]]:
        return [c for s in self.sockets for c in s.calls]


def backend_with(handler: Handler, **kwargs: Any) -> tuple[IpvsBackend, Connector]:
    connector = Connector(handler)
    kwargs.setdefault("retry_delay", 0.0)
    return IpvsBackend(connect=connector, **kwargs), connector


@pytest.mark.asyncio
async def test_a_hung_netlink_call_ends_at_its_deadline_and_the_socket_is_replaced() -> None:
    answers = iter(["hang", []])
    # a dump request is bounded by the dump deadline (one request, one answer per entry)
    backend, conn = backend_with(
        lambda kind, cmd: next(answers), call_timeout=0.2, dump_deadline=0.2
    )
    started = time.monotonic()
    with pytest.raises(BackendError) as info:
        await backend.dump()
    assert time.monotonic() - started < 0.2 + 1.5
    assert info.value.errno == errno.ETIMEDOUT
    assert conn.sockets[0].closed
    assert (await backend.dump()).services == {}  # a fresh socket answers
    assert len(conn.sockets) == 2


@pytest.mark.asyncio
async def test_a_whole_apply_has_one_deadline_across_retries() -> None:
    backend, _ = backend_with(
        lambda kind, cmd: "hang", call_timeout=0.3, apply_deadline=0.5, attempts=5
    )
    started = time.monotonic()
    with pytest.raises(BackendError) as info:
        await backend.apply(AddService(SPEC))
    assert time.monotonic() - started < 0.5 + 1.5
    assert info.value.errno == errno.ETIMEDOUT
    assert info.value.op == AddService(SPEC)


@pytest.mark.asyncio
async def test_a_cancelled_call_never_reuses_its_socket() -> None:
    backend, conn = backend_with(lambda kind, cmd: "hang", call_timeout=30)
    task = asyncio.create_task(backend.dump())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert conn.sockets[0].closed


@pytest.mark.asyncio
async def test_a_transient_error_resends_the_same_op() -> None:
    sends = []

    def handler(kind: str, cmd: str) -> Any:
        if cmd == "dump":
            return [svc_msg()] if kind == "service" else []
        sends.append(cmd)
        return NetlinkError(errno.EBUSY) if len(sends) == 1 else []

    backend, _ = backend_with(handler)
    await backend.apply(AddDest(TCP4, DEST))
    assert sends == ["add", "add"]


@pytest.mark.asyncio
async def test_a_permanent_refusal_is_sent_once_and_reported_with_errno_and_op() -> None:
    sends = []

    def handler(kind: str, cmd: str) -> Any:
        if cmd == "dump":
            return [svc_msg()] if kind == "service" else []
        sends.append(cmd)
        return NetlinkError(errno.EINVAL)

    backend, _ = backend_with(handler)
    op = AddDest(TCP4, DEST)
    with pytest.raises(BackendError) as info:
        await backend.apply(op)
    assert (info.value.errno, info.value.op, sends) == (errno.EINVAL, op, ["add"])


@pytest.mark.asyncio
async def test_an_add_that_meets_an_existing_entry_becomes_an_edit() -> None:
    sends = []

    def handler(kind: str, cmd: str) -> Any:
        if cmd == "dump":
            return [svc_msg()] if kind == "service" else [dest_msg(IPVS_DEST_ATTR_WEIGHT=9)]
        sends.append(cmd)
        return NetlinkError(errno.EEXIST) if cmd == "add" else []

    backend, _ = backend_with(handler)
    await backend.apply(AddDest(TCP4, DEST))
    assert sends == ["add", "set"]


@pytest.mark.asyncio
async def test_a_failed_op_whose_effect_already_holds_is_done() -> None:
    def handler(kind: str, cmd: str) -> Any:
        if cmd == "dump":
            return [svc_msg()] if kind == "service" else []
        return NetlinkError(errno.ENOENT)  # the dest was already gone

    backend, _ = backend_with(handler)
    await backend.apply(DeleteDest(TCP4, DEST.key))


@pytest.mark.asyncio
async def test_out_of_range_values_are_refused_before_anything_is_sent() -> None:
    backend, conn = backend_with(lambda kind, cmd: [])
    for bad in (
        Dest(DestKey("10.2.0.1", 80), Method.GATE, weight=2**32),
        Dest(DestKey("10.2.0.1", 70000), Method.GATE),
        Dest(DestKey("10.2.0.1", 80), Method.GATE, upper=-1),
    ):
        with pytest.raises(BackendError) as info:
            await backend.apply(EditDest(TCP4, bad))
        assert info.value.errno == errno.EINVAL
    assert conn.calls == []


@pytest.mark.asyncio
async def test_dump_normalises_flags_netmask_and_a_local_real() -> None:
    def handler(kind: str, cmd: str) -> Any:
        if kind == "service":
            return [
                svc_msg(
                    IPVS_SVC_ATTR_SCHED_NAME="sh",
                    IPVS_SVC_ATTR_FLAGS={"flags": 0x1 | 0x2 | 0x10, "mask": 0xFFFFFFFF},
                    IPVS_SVC_ATTR_TIMEOUT=300,
                    IPVS_SVC_ATTR_NETMASK="255.255.255.0",
                ),
                svc_msg(
                    IPVS_SVC_ATTR_AF=10,
                    IPVS_SVC_ATTR_ADDR="FD00:0:0::1",
                    IPVS_SVC_ATTR_FLAGS={"flags": 0x1 | 0x2, "mask": 0xFFFFFFFF},
                    IPVS_SVC_ATTR_TIMEOUT=60,
                    IPVS_SVC_ATTR_NETMASK=ipvs._encode_netmask(Family.INET6, "64"),
                ),
                svc_msg(IPVS_SVC_ATTR_PROTOCOL=132),  # SCTP: not ours, left out
            ]
        return [dest_msg(fwd=1), dest_msg(fwd=3, IPVS_DEST_ATTR_ADDR="10.2.0.2")]

    backend, _ = backend_with(handler)
    table = await backend.dump()
    v4 = table.services[TCP4]
    assert v4.spec == ServiceSpec(
        TCP4, scheduler="sh", persistent=300, netmask="255.255.255.0",
        sched_flags=frozenset({"sh-port"}),
    )  # fmt: skip
    v6 = table.services[ServiceKey(Protocol.TCP, Family.INET6, "fd00::1", 80)]
    assert (v6.spec.persistent, v6.spec.netmask) == (60, "64")
    assert v4.dests[DestKey("10.2.0.1", 80)].method is Method.GATE  # Local, nothing remembered
    assert v4.dests[DestKey("10.2.0.2", 80)].method is Method.GATE
    assert len(table.services) == 2


@pytest.mark.asyncio
async def test_a_local_real_dumps_with_the_method_last_applied() -> None:
    def handler(kind: str, cmd: str) -> Any:
        if cmd != "dump":
            return []
        return [svc_msg()] if kind == "service" else [dest_msg(fwd=1)]

    backend, _ = backend_with(handler)
    await backend.apply(AddDest(TCP4, DEST))
    assert (await backend.dump()).services[TCP4].dests[DEST.key] == DEST


def test_sched_flags_are_named_as_ipvsadm_names_them() -> None:
    assert sched_flag_names("sh", 0x8 | 0x10) == {"sh-fallback", "sh-port"}
    assert sched_flag_names("mh", 0x8) == {"mh-fallback"}
    assert sched_flag_names("wrr", 0x8 | 0x20) == {"flag-1", "flag-3"}
    assert sched_flag_bits(frozenset({"sh-port", "mh-fallback"})) == 0x18
    with pytest.raises(ValueError, match="unknown scheduler flag"):
        sched_flag_bits(frozenset({"sh-nonsense"}))


@pytest.mark.asyncio
async def test_usable_says_why_not_when_there_is_no_ipvs() -> None:
    backend, _ = backend_with(lambda kind, cmd: NetlinkError(errno.ENOENT))
    assert "no ip_vs" in (await backend.usable() or "")
    backend, _ = backend_with(lambda kind, cmd: NetlinkError(errno.EPERM))
    assert "CAP_NET_ADMIN" in (await backend.usable() or "")
    backend, _ = backend_with(lambda kind, cmd: [])
    assert await backend.usable() is None


@pytest.mark.asyncio
async def test_malformed_services_are_refused_before_anything_is_sent() -> None:
    backend, conn = backend_with(lambda kind, cmd: [])
    v6 = ServiceKey(Protocol.TCP, Family.INET6, "fd00::1", 80)
    for bad in (
        ServiceSpec(TCP4, sched_flags=frozenset({"sh-nonsense"})),
        ServiceSpec(TCP4, netmask="255.255.255.300"),
        ServiceSpec(v6, netmask="129"),
        ServiceSpec(ServiceKey(Protocol.TCP, Family.INET, "fd00::1", 80)),
        ServiceSpec(ServiceKey(Protocol.TCP, Family.INET, "not-an-ip", 80)),
        ServiceSpec(TCP4, persistent=2**32),
    ):
        with pytest.raises(BackendError) as info:
            await backend.apply(AddService(bad))
        assert info.value.errno == errno.EINVAL
    with pytest.raises(BackendError):
        await backend.apply(AddDest(TCP4, Dest(DestKey("10.2.0.x", 80), Method.GATE)))
    assert conn.calls == []
