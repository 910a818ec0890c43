"""Network plumbing every check shares: connect (optionally TLS), bounded reads, reset-close.

Owns: opening a TCP connection to a real server (TLS with *no* certificate or hostname
verification, as ldirectord intends), reading lines/until a separator/some bytes with size
limits, closing with SO_LINGER 0 (a reset: no TIME_WAIT on the director, performance.md §8),
a bare connect-and-reset probe for connect checks, and one UDP request/response exchange.
It does not own deadlines: the caller runs under ``guarded()`` (base.py), which cancels at the
check's hard deadline; helpers here only record the phase (``set_phase``) so a timeout can say
where it happened, and raise ``CheckFailed`` for protocol-level problems (too long, EOF).

Knows nothing about any particular protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import ipaddress
import os
import re
import socket
import ssl
import struct
from types import TracebackType
from typing import Any

from ldirectord.checks.base import CheckFailed, Reason, set_phase
from ldirectord.config.model import Family

#: Default limit for one line / one read_until: a health-check reply is small.
LINE_LIMIT = 8192
#: StreamReader buffer limit (readuntil raises beyond it).
STREAM_LIMIT = 65536
_LINGER_RESET = struct.pack("ii", 1, 0)


_PERL_ESCAPES = {"z": r"\Z", "Z": r"(?=\n?\Z)", "h": r"[ \t]", "H": r"[^ \t]"}
_PERL_CLASS_ESCAPES = {"h": r" \t"}


def perl_regex(pattern: str) -> str:
    """Rewrite the Perl-only spellings ldirectord users write into Python ``re`` syntax.

    ``\\z`` → ``\\Z`` (absolute end), Perl's ``\\Z`` → end or before a final newline,
    ``\\h``/``\\H`` → horizontal whitespace, ``(?<name>...)`` → ``(?P<name>...)`` and
    ``\\k<name>`` → ``(?P=name)``. Everything else is passed through unchanged.
    """
    out: list[str] = []
    i, n, in_class = 0, len(pattern), False
    while i < n:
        ch = pattern[i]
        if ch == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            table = _PERL_CLASS_ESCAPES if in_class else _PERL_ESCAPES
            if nxt in table:
                out.append(table[nxt])
            elif nxt == "k" and not in_class and pattern.startswith("<", i + 2):
                end = pattern.find(">", i + 3)
                if end < 0:
                    out.append(pattern[i : i + 2])
                else:
                    out.append(f"(?P={pattern[i + 3 : end]})")
                    i = end + 1
                    continue
            else:
                out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = ch != "]" or bool(out and out[-1] in ("[", "[^"))
            out.append(ch)
        elif ch == "[":
            in_class = True
            if pattern.startswith("^", i + 1):
                out.append("[^")
                i += 2
                continue
            out.append(ch)
        elif (
            pattern.startswith("(?<", i)
            and i + 3 < n
            and (pattern[i + 3].isalpha() or pattern[i + 3] == "_")
        ):
            out.append("(?P<")
            i += 3
            continue
        else:
            out.append(ch)
        i += 1
    return "".join(out)


@functools.lru_cache(maxsize=1024)
def compile_receive(receive: str) -> re.Pattern[bytes]:
    """A ``receive`` regex for matching reply bytes (Perl matches raw bytes too).

    Perl-only spellings are rewritten first (``perl_regex``); what is left is Python's ``re``
    (inline flags such as ``(?i)`` must open the pattern; no ``\\G``, ``(?{code})`` or
    recursion). An invalid pattern ends the check as down with Reason.CONFIG.
    """
    try:
        return re.compile(perl_regex(receive).encode("utf-8", "surrogateescape"))
    except re.error as exc:
        raise CheckFailed(Reason.CONFIG, f"receive is not a valid regex: {exc}") from None


def address_family(family: Family | str) -> socket.AddressFamily:
    return socket.AF_INET6 if family == Family.INET6 else socket.AF_INET


@functools.cache
def tls_context() -> ssl.SSLContext:
    """A client context that accepts any certificate from any name (ldirectord's intent).

    Neither the chain nor the host name is verified (reference §6.9: LWP's verify_hostname=0 no
    longer disables chain checks on current distros; we disable both). Old protocol versions
    and weak ciphers are allowed too: we check that a backend answers, not that it is secure.
    Built once: making a context costs milliseconds.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with contextlib.suppress(ValueError, ssl.SSLError):
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    with contextlib.suppress(ssl.SSLError):
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.options |= getattr(ssl, "OP_LEGACY_SERVER_CONNECT", 0)
    return ctx


def set_reset_on_close(sock: Any) -> None:
    """SO_LINGER {on, 0}: close() sends RST and leaves no TIME_WAIT behind."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)


async def connect_only(host: str, port: int, family: Family | str = Family.INET) -> None:
    """TCP connect, then close with a reset. Raises OSError on failure (refused, unreachable).

    A bare non-blocking socket watched for writability: no transport, no streams, and not even
    ``loop.sock_connect`` (its address resolution coroutine, partial and callbacks are most of
    a connect check's Python cost; docs/engine.md, Performance). Six system calls when the
    connection is pending: socket, setsockopt (linger), connect, epoll add, getsockopt, close
    (plus the epoll removal). A host that is not a numeric address goes through
    ``loop.sock_connect``, which resolves it without blocking the loop.
    """
    set_phase("connect")
    af = address_family(family)
    loop = asyncio.get_running_loop()
    sock = socket.socket(af, _STREAM_NONBLOCK)
    try:
        if not _NONBLOCK_FLAG:
            sock.setblocking(False)
        if not _numeric(af, host):
            await loop.sock_connect(sock, (host, port))
            set_reset_on_close(sock)
            return
        set_reset_on_close(sock)
        err = sock.connect_ex((host, port))
        if err in _IN_PROGRESS:
            fd = sock.fileno()
            writable = loop.create_future()
            loop.add_writer(fd, _wake, writable)
            try:
                await writable
            finally:
                loop.remove_writer(fd)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(
                err, os.strerror(err)
            )  # the errno's subclass, e.g. ConnectionRefusedError
    finally:
        sock.close()


#: connect_ex() results that mean "in progress" (asyncio's BlockingIOError and InterruptedError)
_IN_PROGRESS = frozenset(
    {errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK, errno.EALREADY, errno.EINTR}
)
_NONBLOCK_FLAG: int = getattr(socket, "SOCK_NONBLOCK", 0)
_STREAM_NONBLOCK = socket.SOCK_STREAM | _NONBLOCK_FLAG


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _numeric(af: socket.AddressFamily, host: str) -> bool:
    """True when ``host`` is an address the kernel takes as is (connect_ex would otherwise
    resolve it, blocking the loop; an IPv6 scope id also goes through the resolver)."""
    if "%" in host:
        return False
    try:
        socket.inet_pton(af, host)
    except (OSError, ValueError):
        return False
    return True


class Conn:
    """One TCP (or TLS) connection with bounded reads; always close() it (or use ``async with``)."""

    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def __aenter__(self) -> Conn:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def send(self, data: bytes) -> None:
        set_phase("sending")
        self.writer.write(data)
        await self.writer.drain()

    def shutdown_write(self) -> None:
        """Half-close (FIN) our side, as ldirectord's simpletcp check does."""
        if self.writer.can_write_eof():
            self.writer.write_eof()

    async def read_line(self, limit: int = LINE_LIMIT) -> bytes:
        """One line including its b"\\n"; the rest of the data at EOF (b"" when nothing left)."""
        return await self.read_until(b"\n", limit, eof_ok=True)

    async def read_until(
        self, separator: bytes, limit: int = LINE_LIMIT, *, eof_ok: bool = False
    ) -> bytes:
        """Bytes up to and including ``separator``; CheckFailed(PROTOCOL) beyond ``limit``.

        At EOF: the partial data if ``eof_ok`` else CheckFailed(CLOSED).
        """
        set_phase("reading")
        try:
            data = await self.reader.readuntil(separator)
        except asyncio.IncompleteReadError as exc:
            if eof_ok:
                return exc.partial
            raise CheckFailed(Reason.CLOSED, _closed_detail(exc.partial)) from None
        except asyncio.LimitOverrunError:
            raise CheckFailed(Reason.PROTOCOL, f"reply line longer than {limit} bytes") from None
        if len(data) > limit:
            raise CheckFailed(Reason.PROTOCOL, f"reply line longer than {limit} bytes")
        return data

    async def read_some(self, n: int = LINE_LIMIT) -> bytes:
        """Whatever arrives first, at most ``n`` bytes; b"" at EOF."""
        set_phase("reading")
        return await self.reader.read(n)

    async def read_exactly(self, n: int) -> bytes:
        set_phase("reading")
        try:
            return await self.reader.readexactly(n)
        except asyncio.IncompleteReadError as exc:
            raise CheckFailed(Reason.CLOSED, _closed_detail(exc.partial)) from None

    async def read_to_eof(self, limit: int) -> bytes:
        """Everything until the peer closes, at most ``limit`` bytes (the rest is not read)."""
        set_phase("reading")
        chunks: list[bytes] = []
        size = 0
        while size < limit:
            chunk = await self.reader.read(min(STREAM_LIMIT, limit - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        """Close at once with a reset: no TIME_WAIT, no waiting for the peer (or TLS close)."""
        transport = self.writer.transport
        set_reset_on_close(transport.get_extra_info("socket"))
        transport.abort()


def _closed_detail(partial: bytes) -> str:
    if not partial:
        return "connection closed by the server without an answer"
    return f"connection closed by the server after {partial[:60]!r}"


async def open_tcp(
    host: str,
    port: int,
    *,
    tls: bool = False,
    server_hostname: str | None = None,
    limit: int = STREAM_LIMIT,
) -> Conn:
    """Connect (and do the TLS handshake when ``tls``); raises OSError / ssl.SSLError.

    ``server_hostname`` is only the SNI name (never verified); None sends no SNI, as LWP does
    for an IP-literal URL.
    """
    set_phase("connect")
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    if tls and not _is_ip(host):  # a name (after a redirect): let asyncio resolve it
        set_phase("connect and tls handshake")
        transport, _ = await loop.create_connection(
            lambda: protocol, host, port, ssl=tls_context(), server_hostname=server_hostname or ""
        )
    elif tls:
        sock = socket.socket(address_family(_family_of(host)), socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, (host, port))
        except BaseException:
            set_reset_on_close(sock)
            sock.close()
            raise
        set_phase("tls handshake")
        # From here the socket belongs to asyncio's transport, which closes it on failure or
        # cancellation; closing it ourselves would free the fd while the transport still has
        # it registered (the next socket could reuse the number). Linger-0 is set now instead.
        set_reset_on_close(sock)
        transport, _ = await loop.create_connection(
            lambda: protocol,
            sock=sock,
            ssl=tls_context(),
            server_hostname=server_hostname or "",
        )
    else:
        transport, _ = await loop.create_connection(lambda: protocol, host, port)
    set_phase("connected")
    return Conn(reader, asyncio.StreamWriter(transport, protocol, reader, loop))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _family_of(host: str) -> Family:
    return Family.INET6 if ":" in host else Family.INET


async def udp_exchange(
    host: str,
    port: int,
    payload: bytes,
    *,
    max_size: int = 65535,
    retries: int = 0,
    retry_after: float = 1.0,
) -> bytes:
    """Send one datagram to host:port and return the first reply (connected UDP socket).

    An ICMP port unreachable surfaces as ConnectionRefusedError (→ Reason.REFUSED). With
    ``retries`` the datagram is re-sent every ``retry_after`` seconds while no reply came.
    The deadline is the caller's (guarded); this waits as long as it is allowed to.
    """
    loop = asyncio.get_running_loop()
    sock = socket.socket(address_family(_family_of(host)), socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        set_phase("connect")
        await loop.sock_connect(sock, (host, port))
        for attempt in range(retries + 1):
            set_phase("sending")
            await loop.sock_sendall(sock, payload)
            set_phase("waiting for a reply")
            if attempt == retries:
                return await loop.sock_recv(sock, max_size)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(retry_after):
                    return await loop.sock_recv(sock, max_size)
        raise AssertionError("unreachable")  # pragma: no cover
    finally:
        sock.close()
