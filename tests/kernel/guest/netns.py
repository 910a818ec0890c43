"""Guest-side helpers for traffic tests: threads living in a network namespace of topology.sh,
real HTTP servers answering with their own name, and a client behind the VIP.

A thread may join another network namespace (setns(CLONE_NEWNET) is per thread); every socket
it creates lives there. So one test process holds the director (its own namespace: the tests
run under ``ip netns exec director``), the real servers and the client, without a process
spawn per request.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import http.client
import os
import socket
import socketserver
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
VIP = "10.10.9.100"
_libc = ctypes.CDLL(None, use_errno=True)


def enter(name: str) -> None:
    """Move the calling thread into network namespace ``name`` (from ``ip netns add``)."""
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


class NsThread:
    """One worker thread inside a namespace; ``run`` calls a function there."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._pool = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix=f"ns-{name}", initializer=enter, initargs=(name,)
        )

    def run(self, fn: Callable[..., T], *args: object, timeout: float = 30) -> T:
        return self._pool.submit(fn, *args).result(timeout=timeout)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class _NameHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a connection can outlive a director restart

    def do_GET(self) -> None:
        body = self.server.answer  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    address_family = socket.AF_INET6  # bound to "::": IPv6 and (dual stack) IPv4

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(): a reverse DNS lookup that hangs for
        # seconds in a namespace without a resolver. The name is never used here.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "localhost", self.server_address[1]


class NameServer:
    """A real HTTP server in namespace ``ns`` (port 80 by default) answering its own name."""

    def __init__(self, ns: str, port: int = 80, answer: str | None = None) -> None:
        self.ns, self.port, self.answer = ns, port, answer or ns
        self._thread_ns = NsThread(ns)
        self._server: ThreadingHTTPServer | None = None
        self._serving: threading.Thread | None = None

    def start(self) -> None:
        def make() -> ThreadingHTTPServer:
            server = _Server(("::", self.port), _NameHandler)
            server.answer = self.answer.encode()  # type: ignore[attr-defined]
            return server

        self._server = self._thread_ns.run(make)
        self._serving = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._serving.start()

    def stop(self) -> None:
        """Gone: the listening socket is closed, new connections are refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._serving is not None:
            self._serving.join(timeout=10)
            self._serving = None

    def close(self) -> None:
        self.stop()
        self._thread_ns.close()


class Client:
    """HTTP requests to the VIP from the client namespace."""

    def __init__(self) -> None:
        self._ns = NsThread("client")

    @staticmethod
    def _get(conn: http.client.HTTPConnection) -> str:
        conn.request("GET", "/")
        response = conn.getresponse()
        body = response.read().decode()
        if response.status != 200:
            raise AssertionError(f"HTTP {response.status}: {body!r}")
        return body

    def one(self, timeout: float = 3.0, vip: str = VIP) -> str:
        """One request on a fresh connection: the server's name, or ``error: ...``."""

        def go() -> str:
            conn = http.client.HTTPConnection(vip, 80, timeout=timeout)
            try:
                return self._get(conn)
            except (OSError, http.client.HTTPException, AssertionError) as exc:
                return f"error: {exc!r}"
            finally:
                conn.close()

        return self._ns.run(go, timeout=timeout + 10)

    def many(self, n: int = 20, vip: str = VIP) -> Counter[str]:
        return Counter(self.one(vip=vip) for _ in range(n))

    def keepalive(self) -> KeptConnection:
        conn = self._ns.run(lambda: http.client.HTTPConnection(VIP, 80, timeout=5))
        return KeptConnection(self._ns, conn)

    def close(self) -> None:
        self._ns.close()


class KeptConnection:
    """One client TCP connection through the VIP, used for several requests."""

    def __init__(self, ns: NsThread, conn: http.client.HTTPConnection) -> None:
        self._ns, self._conn = ns, conn

    def get(self) -> str:
        return self._ns.run(Client._get, self._conn, timeout=15)

    def local_port(self) -> int:
        sock = self._conn.sock
        assert sock is not None
        return int(sock.getsockname()[1])

    def close(self) -> None:
        self._ns.run(self._conn.close)
