"""GenlSocket against this machine's real kernel, through the generic-netlink controller
(present on every Linux; IPVS itself is only in the UML guest, see tests/kernel/).

The controller answers GETFAMILY with a reply and an ack, and ENOENT for an unknown name, so
a batch mixing both shows that every request of a datagram is answered and matched to its
own sequence number.
"""

from __future__ import annotations

import asyncio
import errno

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
