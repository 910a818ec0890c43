"""A fleet of loopback HTTP real servers for the benchmark scenarios (runs inside the guest).

Owns one process holding one listening socket per real server, each on its own loopback
address (127.1.x.y, port 80 by default): a healthy real answers every request with
``HTTP/1.0 200 OK`` and ``ok``, a hung real accepts the connection and never answers (it
holds the socket until the checker gives up). A real can be killed (its listener and its open
connections closed, so new connects are refused, as when the server process dies) and revived.

Stdlib only (it starts inside the User-Mode Linux guest, where imports are slow). Control is
line-based on stdin/stdout so a scenario driver can run it as a child process:

    python -m bench.guest_fleet SPEC_JSON       prints "ready <n>" once every socket listens
    stdin: "kill 127.1.0.5:80"  -> "ok"         close that real's listener and connections
           "revive"             -> "ok"         reopen every killed listener
           "quit"                               exit

No traffic leaves the machine: every address is in 127.0.0.0/8.
"""

from __future__ import annotations

import asyncio
import json
import resource
import socket
import struct
import sys
from dataclasses import dataclass, field

RESPONSE = (
    b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
    b"Connection: close\r\n\r\nok"
)
MAX_REQUEST = 16384


def real_address(index: int) -> str:
    """The loopback address of real server number ``index`` (0-based): 127.1.0.1, ..."""
    return f"127.1.{index // 250}.{index % 250 + 1}"


def fleet_addresses(count: int, port: int = 80) -> list[str]:
    return [f"{real_address(i)}:{port}" for i in range(count)]


class _Healthy(asyncio.Protocol):
    def __init__(self, owner: _Real) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.owner.conns.add(transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if b"\r\n\r\n" in self.buffer or len(self.buffer) > MAX_REQUEST:
            assert self.transport is not None
            self.transport.write(RESPONSE)
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.owner.conns.discard(self.transport)


class _Hung(_Healthy):
    def data_received(self, data: bytes) -> None:
        pass  # accept, read and never answer; the peer's timeout ends it


@dataclass
class _Real:
    address: str
    hung: bool
    server: asyncio.AbstractServer | None = None
    conns: set[asyncio.Transport] = field(default_factory=set)

    async def start(self) -> None:
        host, port = self.address.rsplit(":", 1)
        # A ready socket, not host/port: create_server would resolve every address in a
        # thread, and thread hand-offs are slow inside the guest.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, int(port)))
        sock.listen(1024)
        sock.setblocking(False)
        kind = _Hung if self.hung else _Healthy
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: kind(self), sock=sock)

    def kill(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for transport in list(self.conns):
            sock = transport.get_extra_info("socket")
            if sock is not None:  # reset, as a dying process's sockets are
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        self.conns.clear()


def _raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(wanted, hard), max(wanted, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def serve(healthy: list[str], hung: list[str]) -> None:
    _raise_fd_limit(4 * (len(healthy) + len(hung)) + 256)
    reals = {a: _Real(a, False) for a in healthy} | {a: _Real(a, True) for a in hung}
    for real in reals.values():
        await real.start()
    out = sys.stdout
    out.write(f"ready {len(reals)}\n")
    out.flush()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().strip():
        verb, _, arg = line.partition(" ")
        if verb == "kill" and arg in reals:
            reals[arg].kill()
        elif verb == "revive":
            for real in reals.values():
                if real.server is None:
                    await real.start()
        elif verb == "quit":
            break
        out.write("ok\n")
        out.flush()
    for real in reals.values():
        real.kill()


def main() -> None:
    spec = json.loads(sys.argv[1])
    asyncio.run(serve(list(spec["healthy"]), list(spec["hung"])))


if __name__ == "__main__":
    main()
