"""GenlSocket against this machine's real kernel, through the generic-netlink controller
(present on every Linux; IPVS itself is only in the UML guest, see tests/kernel/).

The controller answers GETFAMILY with a reply and an ack, and ENOENT for an unknown name, so
a batch mixing both shows that every request of a datagram is answered and matched to its
own sequence number. What the kernel cannot be made to send (a late answer to an abandoned
request, a malformed datagram) comes from a scripted peer at the end of a datagram socket
pair standing in for the netlink socket (same bytes, same framing).
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct

import pytest

from ldirectord.forwarding import netlink as nl
from ldirectord.forwarding.nlsocket import WINDOW, GenlSocket, NetlinkError


def _getfamily(name: str) -> tuple[int, bytes]:
    return nl.CTRL_CMD_GETFAMILY, nl.string(nl.CTRL_ATTR_FAMILY_NAME, name)


@pytest.mark.asyncio
async def test_open_resolves_a_family_and_an_unknown_one_is_enoent() -> None:
    sock = await GenlSocket.open("nlctrl", 2)
    try:
        assert sock.family == nl.GENL_ID_CTRL
    finally:
        sock.close()
    with pytest.raises(NetlinkError) as info:
        await GenlSocket.open("nosuchfamily", 1)
    assert info.value.code == errno.ENOENT


@pytest.mark.asyncio
async def test_a_dump_returns_every_entry() -> None:
    sock = await GenlSocket.open("nlctrl", 2)
    try:
        bodies = await sock.call(nl.CTRL_CMD_GETFAMILY, b"", dump=True)
        names = {nl.get_string(nl.parse_attrs(b)[nl.CTRL_ATTR_FAMILY_NAME]) for b in bodies}
        assert {"nlctrl"} <= names and len(bodies) == len(names)
        with pytest.raises(NetlinkError) as info:
            await sock.call(*_getfamily("nosuchfamily"))
        assert info.value.code == errno.ENOENT
        assert await sock.call(*_getfamily("nlctrl"))  # the socket is still good
    finally:
        sock.close()


@pytest.mark.asyncio
async def test_a_batch_answers_each_request_in_order_across_windows() -> None:
    sock = await GenlSocket.open("nlctrl", 2)
    count = WINDOW * 3 + 17
    try:
        requests = [_getfamily("nlctrl" if i % 3 else f"missing-{i}") for i in range(count)]
        async with asyncio.timeout(20):
            codes = await sock.batch(requests)
        assert codes == [0 if i % 3 else errno.ENOENT for i in range(count)]
        assert await sock.batch([]) == []
    finally:
        sock.close()


# --- a scripted peer: what the kernel cannot be made to send (a datagram socket pair stands in
# for the netlink socket; the framing is the same bytes) -----------------------------------


def _peer() -> tuple[GenlSocket, socket.socket]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours.setblocking(False)
    return GenlSocket(ours, family=30, version=1), theirs


def _seq_of(request: bytes) -> int:
    return int(struct.unpack_from("=IHHII", request)[3])


def _ack(seq: int, error: int = 0) -> bytes:
    return (
        struct.pack("=IHHII", 36, nl.NLMSG_ERROR, 0, seq, 0) + struct.pack("=i", -error) + bytes(16)
    )


@pytest.mark.asyncio
async def test_a_late_answer_to_an_earlier_request_is_skipped() -> None:
    sock, peer = _peer()
    try:
        call = asyncio.ensure_future(sock.call(5, b""))
        await asyncio.sleep(0.01)
        seq = _seq_of(peer.recv(4096))
        peer.send(_ack(seq - 1, errno.EEXIST))  # the answer to a request given up on
        peer.send(_ack(seq))
        async with asyncio.timeout(2):
            assert await call == []
        refused = asyncio.ensure_future(sock.call(5, b""))
        await asyncio.sleep(0.01)
        peer.send(_ack(_seq_of(peer.recv(4096)), errno.EEXIST))
        with pytest.raises(NetlinkError) as info:
            async with asyncio.timeout(2):
                await refused
        assert info.value.code == errno.EEXIST
    finally:
        sock.close()
        peer.close()


@pytest.mark.asyncio
async def test_a_malformed_answer_is_a_socket_error() -> None:
    sock, peer = _peer()
    try:
        call = asyncio.ensure_future(sock.call(5, b""))
        await asyncio.sleep(0.01)
        seq = _seq_of(peer.recv(4096))
        peer.send(_ack(seq)[:-20])  # a header announcing more bytes than the datagram has
        with pytest.raises(OSError) as info:
            async with asyncio.timeout(2):
                await call
        assert info.value.errno == errno.EPROTO
        assert not isinstance(info.value, NetlinkError)
    finally:
        sock.close()
        peer.close()
