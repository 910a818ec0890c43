"""IpvsBackend's own logic on the host, with a scripted netlink transport: deadlines, socket
reset, retry and convergence, batches, and the normalisation of dumped attributes. A scripted
transport, because a kernel cannot be made to hang or to answer EBUSY on demand; its dump
answers are real wire bytes (ipvs_wire's encoders). The kernel contract is in
guest/test_ipvs_contract.py.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from ldirectord.config.model import Family, Method, Protocol
from ldirectord.errors import BackendError
from ldirectord.forwarding import ipvs_wire as wire
from ldirectord.forwarding import netlink as nl
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
from ldirectord.forwarding.nlsocket import NetlinkError

TCP4 = ServiceKey(Protocol.TCP, Family.INET, "10.1.1.1", 80)
SPEC = ServiceSpec(TCP4)
DEST = Dest(DestKey("10.2.0.1", 80), Method.MASQ, weight=2, upper=5, lower=1)


def _addr(text: str) -> bytes:
    family = socket.AF_INET6 if ":" in text else socket.AF_INET
    return socket.inet_pton(family, text).ljust(16, b"\0")


def svc_msg(
    *,
    af: int = socket.AF_INET,
    protocol: int = socket.IPPROTO_TCP,
    addr: str = "10.1.1.1",
    port: int = 80,
    sched: str = "wrr",
    flags: int = 0x2,
    timeout: int = 0,
    netmask: bytes = socket.inet_aton("255.255.255.255"),
) -> bytes:
    """A GET_SERVICE dump message body as the kernel sends it (stats left out)."""
    return nl.nested(
        wire.CMD_ATTR_SERVICE,
        nl.u16(wire.SVC_AF, af),
        nl.u16(wire.SVC_PROTOCOL, protocol),
        nl.attr(wire.SVC_ADDR, _addr(addr)),
        nl.be16(wire.SVC_PORT, port),
        nl.string(wire.SVC_SCHED_NAME, sched),
        nl.attr(wire.SVC_FLAGS, struct.pack("=II", flags, 0xFFFFFFFF)),
        nl.u32(wire.SVC_TIMEOUT, timeout),
        nl.attr(wire.SVC_NETMASK, netmask),
    )


def dest_msg(fwd: int = 0, *, addr: str = "10.2.0.1", port: int = 80, weight: int = 2) -> bytes:
    """A GET_DEST dump message body as the kernel sends it (counters left out)."""
    return nl.nested(
        wire.CMD_ATTR_DEST,
        nl.attr(wire.DEST_ADDR, _addr(addr)),
        nl.be16(wire.DEST_PORT, port),
        nl.u32(wire.DEST_FWD_METHOD, fwd),
        nl.u32(wire.DEST_WEIGHT, weight),
        nl.u32(wire.DEST_U_THRESH, 5),
        nl.u32(wire.DEST_L_THRESH, 1),
        nl.u16(wire.DEST_ADDR_FAMILY, socket.AF_INET6 if ":" in addr else socket.AF_INET),
    )


Handler = Callable[[str, str], Any]


class FakeSocket:
    """Answers each request through ``handler(kind, command)`` (kind "service"/"dest",
    command "add"/"set"/"del"/"dump"): a list of message bodies, an exception, or "hang"
    (never answers)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.calls: list[tuple[str, str]] = []
        self.batches: list[int] = []
        self.closed = False

    async def _answer(self, cmd: int) -> list[bytes]:
        kind, command = wire.COMMANDS[cmd]
        self.calls.append((kind, command))
        result = self.handler(kind, command)
        if result == "hang":
            await asyncio.sleep(3600)
        if isinstance(result, BaseException):
            raise result
        return list(result)

    async def call(self, cmd: int, body: bytes, *, dump: bool = False) -> list[memoryview]:
        return [memoryview(b) for b in await self._answer(cmd)]

    async def batch(self, requests: Sequence[tuple[int, bytes]]) -> list[int]:
        self.batches.append(len(requests))
        codes = []
        for cmd, _body in requests:
            try:
                await self._answer(cmd)
            except NetlinkError as exc:
                codes.append(exc.code)
            else:
                codes.append(0)
        return codes

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
            return [svc_msg()] if kind == "service" else [dest_msg(weight=9)]
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
                    sched="sh",
                    flags=0x1 | 0x2 | 0x10,
                    timeout=300,
                    netmask=socket.inet_aton("255.255.255.0"),
                ),
                svc_msg(
                    af=socket.AF_INET6,
                    addr="FD00:0:0::1",
                    flags=0x1 | 0x2,
                    timeout=60,
                    netmask=struct.pack("=I", 64),
                ),
                svc_msg(protocol=132),  # SCTP: not ours, left out
            ]
        return [dest_msg(fwd=1), dest_msg(fwd=3, addr="10.2.0.2")]

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
    backend, conn = backend_with(lambda kind, cmd: [])
    assert await backend.usable() is None
    assert conn.calls == [("info", "get")]  # no dump of a table that may be large


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


@pytest.mark.asyncio
async def test_a_batch_reports_each_op_and_reverifies_failures_with_one_dump() -> None:
    ops = [AddDest(TCP4, Dest(DestKey(f"10.2.0.{i}", 80), Method.GATE)) for i in range(1, 11)]
    sends: list[str] = []
    dumps = 0

    def handler(kind: str, cmd: str) -> Any:
        nonlocal dumps
        if cmd == "dump":
            dumps += kind == "service"
            return [svc_msg()] if kind == "service" else []
        sends.append(cmd)
        if len(sends) == 3:
            return NetlinkError(errno.EBUSY)  # transient: sent again
        if len(sends) == 5:
            return NetlinkError(errno.EINVAL)  # refused for good: reported, not resent
        return []

    backend, conn = backend_with(handler)
    results = await backend.apply_batch(ops)
    assert [r.errno if r else None for r in results] == [None] * 4 + [errno.EINVAL] + [None] * 5
    assert results[4] is not None and results[4].op == ops[4]
    assert conn.sockets[0].batches == [10, 1]  # one batch, then the one op worth resending
    assert (len(sends), dumps) == (11, 1)


@pytest.mark.asyncio
async def test_a_refused_service_costs_one_dump_not_one_per_real() -> None:
    bad = ServiceSpec(TCP4, scheduler="nonsense")
    ops = [AddService(bad)] + [
        AddDest(TCP4, Dest(DestKey(f"10.2.{i // 250}.{i % 250 + 1}", 80), Method.GATE))
        for i in range(1000)
    ]
    dumps = 0

    def handler(kind: str, cmd: str) -> Any:
        nonlocal dumps
        if cmd == "dump":
            dumps += 1
            return []
        return NetlinkError(errno.ENOENT if kind == "service" else errno.ESRCH)

    backend, conn = backend_with(handler)
    results = await backend.apply_batch(ops)
    assert results[0] is not None and results[0].errno == errno.ENOENT
    assert all(r is not None and r.errno == errno.ESRCH for r in results[1:])
    assert dumps == 1
    assert len(conn.calls) == 1 + len(ops)  # each op sent once, plus the dump


@pytest.mark.asyncio
async def test_a_socket_failure_mid_batch_is_settled_by_the_table() -> None:
    ops = [AddDest(TCP4, DEST), AddDest(TCP4, Dest(DestKey("10.2.0.2", 80), Method.MASQ))]
    state = {"broken": True}

    class Broken(FakeSocket):
        async def batch(self, requests: Sequence[tuple[int, bytes]]) -> list[int]:
            if state["broken"]:
                state["broken"] = False
                raise OSError(errno.ENOBUFS, "No buffer space available")
            return await super().batch(requests)

    def handler(kind: str, cmd: str) -> Any:
        if cmd == "dump":  # the kernel had applied the first op before the socket failed
            return [svc_msg()] if kind == "service" else [dest_msg(weight=2)]
        return []

    sockets: list[FakeSocket] = []

    async def connect() -> FakeSocket:
        sockets.append(Broken(handler))
        return sockets[-1]

    backend = IpvsBackend(connect=connect, retry_delay=0.0)
    assert await backend.apply_batch(ops) == [None, None]
    assert sockets[0].closed
    # the table already held the first op; only the second was sent again, on a fresh socket
    assert [s.batches for s in sockets[1:]] == [[1]]
