"""A generic-netlink socket driven by the running asyncio loop (the IO half of netlink.py).

One socket, bound to one generic-netlink family. ``call`` sends one request and collects its
answer (a dump's messages, or the ack); ``batch`` sends many requests in few datagrams and
returns each one's errno: the kernel handles every message of a datagram in order, acking each
(NLM_F_ACK) whether or not an earlier one failed, so a batch of N changes costs about N/window
sends and receives instead of N round trips (system calls cost 5-20x more in the UML guest the
kernel tests run in than on a host, see ../shared/docs/real-ipvs.md).

The window bounds how many acks can be queued on the socket at once: an ack that does not fit
the receive buffer is dropped by the kernel (ENOBUFS on the next read), so the buffer is
raised (SO_RCVBUFFORCE when we may) and the window kept well below what it holds.

Sending never waits: a netlink message to the kernel is handled synchronously inside send()
(the IPVS handlers take the IPVS mutex for the length of one change). Receiving waits for the
socket to be readable through the loop. Answers are matched by sequence number; a late answer
to a request that was given up on is skipped, but the IPVS backend drops the socket after any
deadline or cancellation anyway.
"""

from __future__ import annotations

import asyncio
import errno as errnos
import os
import socket
from collections.abc import Sequence

from ldirectord.forwarding import netlink as nl
from ldirectord.sockopts import raise_rcvbuf

#: Requests per datagram in a batch (their acks must fit the receive buffer at once).
WINDOW = 128
#: Receive buffer asked for; a dump datagram is at most 32 KiB, an ack's skb about 1 KiB.
RCVBUF = 4 << 20
_RECV_SIZE = 1 << 17


class NetlinkError(Exception):
    """The kernel answered a request with an error (errno in ``code``)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"{os.strerror(code)} (netlink errno {code})")
        self.code = code


class GenlSocket:
    """A generic-netlink socket for one family (use ``open``)."""

    def __init__(self, sock: socket.socket, family: int, version: int) -> None:
        self._sock = sock
        self.family = family
        self._version = version
        self._seq = int.from_bytes(os.urandom(3), "little") + 1
        self._buf = bytearray(_RECV_SIZE)

    @classmethod
    async def open(cls, name: str, version: int) -> GenlSocket:
        """A socket bound to the generic-netlink family ``name`` (NetlinkError ENOENT when
        the kernel has no such family, e.g. ip_vs not loaded)."""
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, nl.NETLINK_GENERIC)
        try:
            sock.setblocking(False)
            sock.bind((0, 0))
            raise_rcvbuf(sock, RCVBUF)
            sock.setsockopt(nl.SOL_NETLINK, nl.NETLINK_CAP_ACK, 1)  # acks without the request
            ctrl = cls(sock, nl.GENL_ID_CTRL, 1)
            name_attr = nl.string(nl.CTRL_ATTR_FAMILY_NAME, name)
            found = None
            for body in await ctrl.call(nl.CTRL_CMD_GETFAMILY, name_attr):
                found = nl.family_id(body) or found
            if found is None:
                raise NetlinkError(errnos.ENOENT)
        except BaseException:
            sock.close()
            raise
        return cls(sock, found, version)

    def close(self) -> None:
        self._sock.close()

    def _next_seq(self) -> int:
        self._seq = self._seq % 0xFFFFFFFF + 1
        return self._seq

    async def call(self, cmd: int, body: bytes, *, dump: bool = False) -> list[memoryview]:
        """One request; its answer's bodies (empty for a plain ack). NetlinkError on refusal."""
        seq = self._next_seq()
        self._sock.send(nl.request(self.family, cmd, self._version, seq, body, dump=dump))
        bodies: list[memoryview] = []
        while True:
            for msg in await self._messages():
                if msg.seq != seq:
                    continue  # a late answer to an earlier request
                if msg.kind in (nl.NLMSG_ERROR, nl.NLMSG_DONE):  # the ack, or the dump's end
                    if msg.error:
                        raise NetlinkError(msg.error)
                    return bodies
                bodies.append(msg.body)  # a dump entry, or an answer followed by its ack

    async def batch(self, requests: Sequence[tuple[int, bytes]]) -> list[int]:
        """Send each (cmd, body) as an acknowledged request, WINDOW per datagram; each one's
        errno in order (0: done)."""
        results = [0] * len(requests)
        for start in range(0, len(requests), WINDOW):
            pending: dict[int, int] = {}
            parts = []
            for index in range(start, min(start + WINDOW, len(requests))):
                cmd, body = requests[index]
                seq = self._next_seq()
                pending[seq] = index
                parts.append(nl.request(self.family, cmd, self._version, seq, body, dump=False))
            self._sock.send(b"".join(parts))
            while pending:
                for msg in await self._messages():
                    if msg.kind == nl.NLMSG_ERROR and msg.seq in pending:
                        results[pending.pop(msg.seq)] = msg.error
        return results

    async def _messages(self) -> list[nl.Message]:
        """The messages of the next datagram; a malformed one is a socket error (EPROTO), so
        the backend drops this socket like any other IO failure."""
        data = await self._recv()
        try:
            return list(nl.messages(data))
        except ValueError as exc:
            raise OSError(errnos.EPROTO, f"malformed netlink answer: {exc}") from None

    async def _recv(self) -> bytes:
        """One datagram (copied: the receive buffer is reused)."""
        while True:
            try:
                size = self._sock.recv_into(self._buf, len(self._buf), socket.MSG_TRUNC)
            except BlockingIOError:
                await self._readable()
                continue
            if size > len(self._buf):
                raise OSError(errnos.EMSGSIZE, f"netlink datagram of {size} bytes truncated")
            return bytes(self._buf[:size])

    async def _readable(self) -> None:
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        fd = self._sock.fileno()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, wake)
        try:
            await ready
        finally:
            loop.remove_reader(fd)
