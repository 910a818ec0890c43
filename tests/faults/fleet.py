"""A fleet of loopback real servers in one process, each listener switchable to a fault at run time.

Run as a child process by the fault suite (``python tests/faults/fleet.py``); it imports nothing
from the repository, so its CPU and its sockets are its own and never share the test's GIL.

Protocol (JSON lines): the first line on stdin is ``{"listeners": [{"host": "127.77.0.5",
"proto": "tcp"|"udp", "mode": "http_ok"}, ...], "cert": PATH, "key": PATH}``; the fleet binds
every listener (port chosen by the kernel) and prints ``{"ports": [...]}`` in the same order.
Then each line is a command, answered by one line:

* ``{"op": "mode", "index": i, "mode": "hang"}`` → ``{"ok": true}``: new connections (or
  datagrams) of listener ``i`` get the new behaviour (``closed`` closes the listening socket:
  connect is refused; any other mode re-opens it on the same address and port);
* ``{"op": "stats"}`` → ``{"open": n, "accepted": n}``;
* EOF on stdin, or ``{"op": "quit"}``: close everything and exit.

TCP modes: ``http_ok`` (an HTTP/1.0 200 whose body is ``OK``), ``https_ok`` (the same over TLS),
``hang`` (accept, read everything, never answer), ``trickle`` (after the request, a 200 header
one byte per second, never finished), ``reset`` (RST at once), ``garbage`` (after the request,
binary junk, then hold), ``tls_hang`` (read the ClientHello, never answer), ``mysql_stall`` (a
valid MySQL handshake greeting, then read and never answer), ``proxy:PORT`` (relay to a real
server on 127.0.0.1:PORT, e.g. MariaDB), ``closed``. UDP modes: ``dns_ok``
(answers every A query with 192.0.2.10), ``black_hole`` (never answers).

Every connection ends when the client closes it (the daemon closes at its deadline) or when the
fleet exits; nothing here waits on anything else, and every loop is bounded by that.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import struct
import sys
from typing import Any

HTTP_OK = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nOK\n"
TRICKLE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" + b"X-Slow: y\r\n" * 200
JUNK = bytes(range(256)) * 4 + b"\x00\xff\xfe garbage \r\n"
DNS_ANSWER = bytes([192, 0, 2, 10])


def mysql_greeting() -> bytes:
    """A valid MySQL protocol-10 handshake packet (mysql_native_password)."""
    caps = 0x0001 | 0x0008 | 0x0200 | 0x8000 | 0x80000
    payload = b"\x0a" + b"5.5.5-10.11.6-MariaDB-fault-fleet\x00" + struct.pack("<I", 7)
    payload += b"abcdefgh\x00" + struct.pack("<HBHH", caps & 0xFFFF, 0x21, 2, caps >> 16)
    payload += bytes([21]) + bytes(10) + b"ijklmnopqrst\x00" + b"mysql_native_password\x00"
    return struct.pack("<I", len(payload))[:3] + b"\x00" + payload


def dns_reply(query: bytes) -> bytes | None:
    """A minimal answer (one A record) to a one-question query; None if it is not one."""
    if len(query) < 12:
        return None
    qdcount = struct.unpack("!H", query[4:6])[0]
    if qdcount != 1:
        return None
    end = 12
    while end < len(query) and query[end] != 0:
        end += query[end] + 1
    end += 5  # the root label, QTYPE, QCLASS
    if end > len(query):
        return None
    header = query[:2] + b"\x85\x80" + b"\x00\x01\x00\x01\x00\x00\x00\x00"
    answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + DNS_ANSWER
    return header + query[12:end] + answer


class Fleet:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.loop = asyncio.get_running_loop()
        self.listeners: list[dict[str, Any]] = spec["listeners"]
        self.sockets: list[socket.socket | None] = [None] * len(self.listeners)
        self.transports: list[asyncio.DatagramTransport | None] = [None] * len(self.listeners)
        self.ports: list[int] = [0] * len(self.listeners)
        self.tasks: set[asyncio.Task[None]] = set()
        self.open = 0
        self.accepted = 0
        self.tls: ssl.SSLContext | None = None
        if spec.get("cert"):
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(spec["cert"], spec["key"])

    # --- listeners ---------------------------------------------------------------------

    async def bind_all(self) -> None:
        for i, item in enumerate(self.listeners):
            if item["proto"] == "udp":
                await self._bind_udp(i)
            else:
                self._bind_tcp(i)

    def _bind_tcp(self, i: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.listeners[i]["host"], self.ports[i]))
        sock.listen(256)
        sock.setblocking(False)
        self.ports[i] = sock.getsockname()[1]
        self.sockets[i] = sock
        self.loop.add_reader(sock, self._on_accept, i, sock)

    def _close_tcp(self, i: int) -> None:
        sock = self.sockets[i]
        if sock is not None:
            self.loop.remove_reader(sock)
            sock.close()
            self.sockets[i] = None

    async def _bind_udp(self, i: int) -> None:
        fleet = self

        class Proto(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                fleet.transports[i] = transport  # type: ignore[assignment]

            def datagram_received(self, data: bytes, addr: Any) -> None:
                if fleet.listeners[i]["mode"] == "dns_ok":
                    reply = dns_reply(data)
                    transport = fleet.transports[i]
                    if reply is not None and transport is not None:
                        transport.sendto(reply, addr)

        await self.loop.create_datagram_endpoint(Proto, local_addr=(self.listeners[i]["host"], 0))
        transport = self.transports[i]
        assert transport is not None
        self.ports[i] = transport.get_extra_info("sockname")[1]

    def set_mode(self, i: int, mode: str) -> None:
        item = self.listeners[i]
        item["mode"] = mode
        if item["proto"] == "tcp":
            if mode == "closed":
                self._close_tcp(i)
            elif self.sockets[i] is None:
                self._bind_tcp(i)

    # --- connections -------------------------------------------------------------------

    def _on_accept(self, i: int, sock: socket.socket) -> None:
        for _ in range(64):
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            conn.setblocking(False)
            self.accepted += 1
            task = self.loop.create_task(self._serve(conn, self.listeners[i]["mode"]))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _serve(self, conn: socket.socket, mode: str) -> None:
        self.open += 1
        tls = mode == "https_ok"
        try:
            if tls:
                await self._serve_tls(conn)  # the transport owns (and closes) the socket
            else:
                await self._serve_plain(conn, mode)
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError, TimeoutError):
            pass
        finally:
            self.open -= 1
            if not tls:  # never close a transport's fd under it (the number gets reused)
                conn.close()

    async def _request(self, conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = await self.loop.sock_recv(conn, 65536)
            if not chunk:
                break
            data += chunk
        return data

    async def _hold(self, conn: socket.socket) -> None:
        while await self.loop.sock_recv(conn, 65536):  # until the client closes
            pass

    async def _serve_plain(self, conn: socket.socket, mode: str) -> None:
        if mode == "http_ok":
            await self._request(conn)
            await self.loop.sock_sendall(conn, HTTP_OK)
        elif mode == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif mode == "trickle":
            await self._request(conn)
            for i in range(len(TRICKLE)):
                await self.loop.sock_sendall(conn, TRICKLE[i : i + 1])
                await asyncio.sleep(1.0)
        elif mode == "garbage":
            await self._request(conn)
            await self.loop.sock_sendall(conn, JUNK)
            await self._hold(conn)
        elif mode.startswith("proxy:"):
            await self._proxy(conn, int(mode.split(":", 1)[1]))
        elif mode == "mysql_stall":
            await self.loop.sock_sendall(conn, mysql_greeting())
            await self._hold(conn)
        else:  # hang, tls_hang, and anything unknown: read, never answer
            await self._hold(conn)

    async def _proxy(self, conn: socket.socket, port: int) -> None:
        """Relay the connection to 127.0.0.1:port (a real server) until either side closes."""
        upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        upstream.setblocking(False)
        try:
            await asyncio.wait_for(self.loop.sock_connect(upstream, ("127.0.0.1", port)), 5.0)

            async def pump(src: socket.socket, dst: socket.socket) -> None:
                while data := await self.loop.sock_recv(src, 65536):
                    await self.loop.sock_sendall(dst, data)
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)

            tasks = [
                asyncio.ensure_future(pump(conn, upstream)),
                asyncio.ensure_future(pump(upstream, conn)),
            ]
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            upstream.close()

    async def _serve_tls(self, conn: socket.socket) -> None:
        assert self.tls is not None
        reader = asyncio.StreamReader()
        try:
            transport, _ = await self.loop.connect_accepted_socket(
                lambda: asyncio.StreamReaderProtocol(reader),
                conn,
                ssl=self.tls,
                ssl_handshake_timeout=5.0,
            )
        except BaseException:
            conn.close()  # no transport was made: the socket is still ours
            raise
        try:
            data = b""
            while b"\r\n\r\n" not in data and len(data) < 65536:
                chunk = await asyncio.wait_for(reader.read(65536), 5.0)
                if not chunk:
                    break
                data += chunk
            transport.write(HTTP_OK)
            await asyncio.sleep(0)
        finally:
            transport.close()

    # --- control -----------------------------------------------------------------------

    def command(self, line: str) -> dict[str, Any] | None:
        msg = json.loads(line)
        if msg["op"] == "mode":
            self.set_mode(int(msg["index"]), str(msg["mode"]))
            return {"ok": True}
        if msg["op"] == "stats":
            return {"open": self.open, "accepted": self.accepted}
        return None

    def close(self) -> None:
        for i in range(len(self.listeners)):
            self._close_tcp(i)
            transport = self.transports[i]
            if transport is not None:
                transport.close()
        for task in list(self.tasks):
            task.cancel()


async def main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    first = await reader.readline()
    fleet = Fleet(json.loads(first))
    await fleet.bind_all()
    print(json.dumps({"ports": fleet.ports}), flush=True)
    try:
        while line := await reader.readline():
            reply = fleet.command(line.decode())
            if reply is None:
                break
            print(json.dumps(reply), flush=True)
    finally:
        fleet.close()
        with contextlib.suppress(Exception):
            await asyncio.sleep(0.05)


if __name__ == "__main__":
    asyncio.run(main())
