"""Hostile peers on loopback for tests: servers that hang, trickle, reset, babble or stall TLS.

Each peer runs its own asyncio loop in a daemon thread, so it works the same from sync tests
and from async tests (whose loop it never touches). Use them as context managers; they bind
an ephemeral port on 127.0.0.1 (or ``host="::1"``), start in milliseconds, and on exit close
every socket and join the thread (bounded). A peer never outlives its ``with`` block.

    with hang() as peer:             # peer.host, peer.port, peer.address, peer.accepted
        outcome = asyncio.run(run(target_for(peer.port)))

Ready-made behaviours (each a factory returning a TcpPeer / UdpPeer):

* ``hang()``            accept, read and discard everything, never answer (hold until exit)
* ``no_accept()``       a full accept queue: connect() itself never completes (SYNs dropped)
* ``trickle(data)``     send ``data`` one byte per ``interval`` (default 1 s), never finish
* ``reset()``           accept and reset at once (SO_LINGER 0); ``after_request=True`` reads
                        the first bytes of the request before resetting
* ``close_at_once()``   accept and close cleanly (FIN) without a word
* ``garbage(data)``     send ``data`` (default: binary junk) on connect or after the request,
                        then hold (``then="hold"``) or close (``then="close"``)
* ``banner_then_hang(banner)``  send a greeting line, then read and never answer (SQL, SMTP...)
* ``tls_hang()``        accept, read the ClientHello, never reply
* ``udp_black_hole()``  a UDP socket that receives and never answers
* ``udp_reply(data)``   answers every datagram with ``data`` (default: junk)
* ``TcpPeer(handler)``  any ``async def handler(reader, writer)`` of your own

Custom handlers must only await things that end when the peer stops (they are cancelled at
exit); every loop here is bounded by the peer's lifetime.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

START_TIMEOUT = 5.0
STOP_TIMEOUT = 5.0
JUNK = bytes(range(256)) * 4 + b"\x00\xff\xfe garbage \r\n\x1b[0m"


def reset_socket(writer: asyncio.StreamWriter) -> None:
    """Close ``writer``'s connection with a RST (SO_LINGER 0)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _quiet_cancellations(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    if isinstance(context.get("exception"), asyncio.CancelledError):
        return  # handler tasks cancelled at teardown: expected
    loop.default_exception_handler(context)


class _LoopThread:
    """An asyncio loop in a daemon thread with a bounded start and stop."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self.error: BaseException | None = None

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve_outer())
        finally:
            with contextlib.suppress(Exception):
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    async def _serve_outer(self) -> None:
        self._stop = asyncio.Event()
        self.loop.set_exception_handler(_quiet_cancellations)
        try:
            await self.setup()
        except BaseException as exc:
            self.error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.teardown()
            for _ in range(5):  # let abort()'s scheduled socket closes run before the loop ends
                await asyncio.sleep(0)

    async def setup(self) -> None:
        raise NotImplementedError

    async def teardown(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise RuntimeError(f"{self._thread.name} did not start within {START_TIMEOUT} s")
        if self.error is not None:
            raise RuntimeError(f"{self._thread.name} failed to start: {self.error}")

    def stop(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # loop already closed
                self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(STOP_TIMEOUT)
        if self._thread.is_alive():
            raise RuntimeError(f"{self._thread.name} did not stop within {STOP_TIMEOUT} s")


class TcpPeer(_LoopThread):
    """A TCP server on loopback whose connections are served by ``handler``."""

    def __init__(self, handler: Handler, *, host: str = "127.0.0.1", name: str = "peer") -> None:
        super().__init__(f"hostile-{name}")
        self.handler = handler
        self.host = host
        self.port = 0
        self.accepted = 0  # connections accepted so far
        self._listener: socket.socket | None = None
        self._raw: set[socket.socket] = set()  # accepted, not yet a transport
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._transports: set[asyncio.BaseTransport] = set()

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    async def setup(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, 0))
        listener.listen(1024)
        listener.setblocking(False)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self.loop.add_reader(listener, self._on_accept, listener)

    def _on_accept(self, listener: socket.socket) -> None:
        # Our own accept rather than asyncio's server or sock_accept: asyncio 3.11 leaks the
        # socket of a connection reset before its transport is made, or accepted just as the
        # accepting task is cancelled. Here every accepted socket is tracked until adopted.
        for _ in range(64):
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            try:
                conn.setblocking(False)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # already reset by the client
                conn.close()
                continue
            self._raw.add(conn)
            self.loop.create_task(self._adopt(conn))

    async def _adopt(self, conn: socket.socket) -> None:
        peer = self

        class _Protocol(asyncio.StreamReaderProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                peer._transports.add(transport)  # so teardown can close it, started or not
                super().connection_made(transport)

        try:
            await self.loop.connect_accepted_socket(
                lambda: _Protocol(asyncio.StreamReader(), self._serve), conn
            )
        except OSError:
            conn.close()
        finally:
            self._raw.discard(conn)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            await self.handler(reader, writer)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:  # our own teardown; asyncio's stream callback would
            pass  # otherwise log the cancelled task's "exception"
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.transport.abort()

    async def teardown(self) -> None:
        if self._listener is not None:
            self.loop.remove_reader(self._listener)
            self._listener.close()
        current = asyncio.current_task()
        for _ in range(100):  # bounded: ~1 s; usually done in one or two rounds
            # asyncio turns accepted sockets into transports in its own tasks: let those
            # finish (cancelling them would leak the socket), then close every transport and
            # cancel our handler tasks.
            for transport in list(self._transports):
                if not transport.is_closing():
                    transport.abort()  # type: ignore[attr-defined]
            pending = [t for t in asyncio.all_tasks() if t is not current]
            for task in pending:
                if getattr(task.get_coro(), "__name__", "") == "_serve":
                    task.cancel()
            await asyncio.sleep(0.01)
            if not pending and all(t.is_closing() for t in self._transports):
                break
        for conn in list(self._raw):  # never adopted (should not happen): close anyway
            conn.close()

    def __enter__(self) -> TcpPeer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class NoAcceptPeer:
    """A listener whose accept queue is full, so a new connect() never completes.

    Linux drops the SYN when the accept queue (backlog 0 ⇒ 1 slot) is full, and the client
    keeps retransmitting: from the client's side, the connect hangs.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self._listener: socket.socket | None = None
        self._fillers: list[socket.socket] = []

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def __enter__(self) -> NoAcceptPeer:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.bind((self.host, 0))
        self._listener.listen(0)
        self.port = self._listener.getsockname()[1]
        for _ in range(4):  # fill the queue; later fillers hang in SYN_SENT, harmless
            filler = socket.socket(family, socket.SOCK_STREAM)
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect((self.host, self.port))
            self._fillers.append(filler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sock in [*self._fillers, self._listener]:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
        self._fillers.clear()


class UdpPeer(_LoopThread):
    """A UDP socket on loopback that calls ``on_datagram(data, addr, transport)`` (or ignores)."""

    def __init__(
        self,
        on_datagram: Callable[[bytes, Any, asyncio.DatagramTransport], None] | None = None,
        *,
        host: str = "127.0.0.1",
        name: str = "udp",
    ) -> None:
        super().__init__(f"hostile-{name}")
        self.on_datagram = on_datagram
        self.host = host
        self.port = 0
        self.received = 0
        self._transport: asyncio.DatagramTransport | None = None

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    async def setup(self) -> None:
        peer = self

        class _Proto(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                peer._transport = transport  # type: ignore[assignment]

            def datagram_received(self, data: bytes, addr: Any) -> None:
                peer.received += 1
                if peer.on_datagram is not None and peer._transport is not None:
                    peer.on_datagram(data, addr, peer._transport)

        await self.loop.create_datagram_endpoint(_Proto, local_addr=(self.host, 0))
        assert self._transport is not None
        self.port = self._transport.get_extra_info("sockname")[1]

    async def teardown(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def __enter__(self) -> UdpPeer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- behaviours --------------------------------------------------------------------------


async def _drain_forever(reader: asyncio.StreamReader) -> None:
    while await reader.read(65536):  # ends at EOF or when the peer stops (cancelled)
        pass
    await asyncio.Event().wait()  # EOF: keep the connection open, answer nothing


def hang(host: str = "127.0.0.1") -> TcpPeer:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _drain_forever(reader)

    return TcpPeer(handler, host=host, name="hang")


def no_accept(host: str = "127.0.0.1") -> NoAcceptPeer:
    return NoAcceptPeer(host)


def trickle(
    data: bytes = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" + b"X-Slow: y\r\n" * 1000,
    *,
    interval: float = 1.0,
    wait_request: bool = True,
    host: str = "127.0.0.1",
) -> TcpPeer:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if wait_request:
            await reader.read(65536)
        for i in range(len(data)):
            writer.write(data[i : i + 1])
            await writer.drain()
            await asyncio.sleep(interval)
        await _drain_forever(reader)

    return TcpPeer(handler, host=host, name="trickle")


def reset(*, after_request: bool = False, host: str = "127.0.0.1") -> TcpPeer:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if after_request:
            await reader.read(65536)
        reset_socket(writer)

    return TcpPeer(handler, host=host, name="reset")


def close_at_once(*, after_request: bool = False, host: str = "127.0.0.1") -> TcpPeer:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if after_request:
            await reader.read(65536)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    return TcpPeer(handler, host=host, name="close")


def garbage(
    data: bytes = JUNK,
    *,
    after_request: bool = True,
    then: str = "hold",
    host: str = "127.0.0.1",
) -> TcpPeer:
    if then not in ("hold", "close"):
        raise ValueError("then must be 'hold' or 'close'")

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if after_request:
            await reader.read(65536)
        writer.write(data)
        await writer.drain()
        if then == "close":
            writer.close()
            return
        await _drain_forever(reader)

    return TcpPeer(handler, host=host, name="garbage")


def banner_then_hang(banner: bytes, *, host: str = "127.0.0.1") -> TcpPeer:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(banner)
        await writer.drain()
        await _drain_forever(reader)

    return TcpPeer(handler, host=host, name="banner-hang")


def tls_hang(host: str = "127.0.0.1") -> TcpPeer:
    """Accept, read the ClientHello (a TLS record), never answer."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)  # the ClientHello
        await _drain_forever(reader)

    return TcpPeer(handler, host=host, name="tls-hang")


def udp_black_hole(host: str = "127.0.0.1") -> UdpPeer:
    return UdpPeer(None, host=host, name="udp-black-hole")


def udp_reply(data: bytes = JUNK, *, host: str = "127.0.0.1") -> UdpPeer:
    """Answers every datagram with ``data`` (default: junk): a babbling UDP server."""

    def reply(_data: bytes, addr: Any, transport: asyncio.DatagramTransport) -> None:
        transport.sendto(data, addr)

    return UdpPeer(reply, host=host, name="udp-reply")


def free_port(host: str = "127.0.0.1") -> int:
    """A port on which nothing listens right now (connect → refused). Racy only in theory."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port
