"""The ``ping`` check (ldirectord's check_ping via Net::Ping "icmp", reference §2.2).

Up to ``checkcount`` ICMP echo requests, each waiting up to checktimeout for the reply; the
first reply is up. Also used for ``connect`` checks of UDP virtuals, as ldirectord does.

Sockets: the unprivileged ICMP "ping socket" (SOCK_DGRAM, IPPROTO_ICMP/ICMPV6) when
``net.ipv4.ping_group_range`` covers our group, else a raw socket (root / CAP_NET_RAW). With a
ping socket the kernel owns the echo identifier and hands us only our replies; a raw socket
sees every ICMP packet of the host, so replies are matched on source, identifier and
sequence. All pings in flight on a loop share one socket per family (performance.md §5: one
shared socket did ~27,000 pings/s where a socket per ping did ~4,700, and every raw socket
receives every ICMP packet of the host); it is closed when the last ping ends. IPv6 works too
(ldirectord's did not).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import struct
from collections.abc import Iterator

from ldirectord.checks.base import CheckFailed, CheckTarget, Outcome, Reason, set_phase
from ldirectord.config.model import Family
from ldirectord.sockopts import raise_rcvbuf

ECHO_REQUEST = {Family.INET: 8, Family.INET6: 128}
ECHO_REPLY = {Family.INET: 0, Family.INET6: 129}
PAYLOAD = b"ldirectord-py ping".ljust(56, b".")  # 64-byte ICMP message, as ping(8) sends


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return int(~total & 0xFFFF)


def echo_request(family: Family, ident: int, seq: int, payload: bytes = PAYLOAD) -> bytes:
    kind = ECHO_REQUEST[family]
    header = struct.pack("!BBHHH", kind, 0, 0, ident, seq)
    if family is Family.INET6:  # the kernel fills in the ICMPv6 checksum (pseudo-header)
        return header + payload
    return struct.pack("!BBHHH", kind, 0, checksum(header + payload), ident, seq) + payload


def parse_reply(family: Family, packet: bytes, *, raw: bool) -> tuple[int, int, int] | None:
    """(type, ident, seq) of an ICMP packet (skipping the IPv4 header on a raw socket)."""
    if raw and family is Family.INET:
        if len(packet) < 20:
            return None
        packet = packet[(packet[0] & 0x0F) * 4 :]
    if len(packet) < 8:
        return None
    kind, _code, _sum, ident, seq = struct.unpack("!BBHHH", packet[:8])
    return kind, ident, seq


@functools.cache
def _dgram_allowed(family: Family) -> bool:
    """Whether the unprivileged ping socket works here (ping_group_range), remembered."""
    try:
        _open(family, socket.SOCK_DGRAM).close()
    except OSError:
        return False
    return True


def _open(family: Family, kind: socket.SocketKind) -> socket.socket:
    if family is Family.INET6:
        return socket.socket(socket.AF_INET6, kind, socket.IPPROTO_ICMPV6)
    return socket.socket(socket.AF_INET, kind, socket.IPPROTO_ICMP)


def open_ping_socket(family: Family) -> tuple[socket.socket, bool]:
    """(socket, is_raw). Raises CheckFailed(CONFIG) when neither kind is allowed."""
    if _dgram_allowed(family):
        with contextlib.suppress(OSError):
            return _open(family, socket.SOCK_DGRAM), False
    try:
        return _open(family, socket.SOCK_RAW), True
    except PermissionError:
        raise CheckFailed(
            Reason.CONFIG,
            "ICMP not permitted: run as root or widen net.ipv4.ping_group_range",
        ) from None


#: Receive buffer of the shared socket: hundreds of replies can arrive in one burst (a check
#: round of many reals), and what does not fit is dropped by the kernel as a lost reply.
PING_RCVBUF = 4 << 20
_SOL_RAW, _ICMP_FILTER, _ICMP6_FILTER = 255, 1, 1


def _tune(sock: socket.socket, family: Family, *, raw: bool) -> None:
    """A big receive buffer and, on a raw socket (which sees every ICMP packet of the host,
    our own echo requests to local addresses included), a kernel filter passing only echo
    replies. Best effort: a socket left untuned still works, with more chance of loss."""
    with contextlib.suppress(OSError):
        raise_rcvbuf(sock, PING_RCVBUF)
    if not raw:
        return  # a ping socket only hands us replies to our own requests
    with contextlib.suppress(OSError):
        reply = ECHO_REPLY[family]
        if family is Family.INET:  # a set bit blocks that ICMP type
            sock.setsockopt(_SOL_RAW, _ICMP_FILTER, struct.pack("=I", ~(1 << reply) & 0xFFFFFFFF))
        else:
            words = [0xFFFFFFFF] * 8
            words[reply >> 5] &= ~(1 << (reply & 31)) & 0xFFFFFFFF
            sock.setsockopt(socket.IPPROTO_ICMPV6, _ICMP6_FILTER, struct.pack("=8I", *words))


def _canonical(address: str) -> bytes:
    """Packed form of an address (scope id dropped), for matching replies to requests."""
    bare = address.split("%", maxsplit=1)[0]
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    try:
        return socket.inet_pton(family, bare)
    except OSError:
        return bare.encode()


class _Pinger:
    """One ICMP socket shared by every ping in flight on one loop for one family.

    Replies are dispatched to waiters by (source address, sequence number); the identifier is
    checked on a raw socket (a ping socket's kernel rewrites it and only hands us our own).
    The socket lives while pings are in flight and is closed when the last one ends, so an
    idle daemon (or a finished test loop) holds nothing.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, family: Family) -> None:
        self.loop = loop
        self.family = family
        self.sock, self.raw = open_ping_socket(family)
        self.sock.setblocking(False)
        _tune(self.sock, family, raw=self.raw)
        self.ident = (os.getpid() ^ id(self)) & 0xFFFF
        self.want = ECHO_REPLY[family]
        self.users = 0
        self.next_seq = 0
        self.waiters: dict[tuple[bytes, int], asyncio.Future[None]] = {}
        loop.add_reader(self.sock, self._on_readable)

    def _on_readable(self) -> None:
        for _ in range(256):  # bounded per wake-up; the loop calls again while data remains
            try:
                packet, addr = self.sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error queued on the socket: not ours to judge
                continue
            parsed = parse_reply(self.family, packet, raw=self.raw)
            if parsed is None:
                continue
            kind, ident, seq = parsed
            if kind != self.want or (self.raw and ident != self.ident):
                continue
            waiter = self.waiters.get((_canonical(addr[0]), seq))
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def _sequence(self, key_host: bytes) -> int:
        for _ in range(0x10000):
            self.next_seq = (self.next_seq + 1) & 0xFFFF
            if (key_host, self.next_seq) not in self.waiters:
                return self.next_seq
        raise CheckFailed(Reason.INTERNAL, "no free ICMP sequence number")

    async def echo(self, host: str) -> None:
        """Send one echo request to ``host`` and wait (without limit) for its reply."""
        key_host = _canonical(host)
        seq = self._sequence(key_host)
        waiter: asyncio.Future[None] = self.loop.create_future()
        self.waiters[(key_host, seq)] = waiter
        try:
            packet = echo_request(self.family, self.ident, seq)
            await self.loop.sock_sendto(self.sock, packet, (host, 0))
            await waiter
        finally:
            self.waiters.pop((key_host, seq), None)

    def close(self) -> None:
        self.loop.remove_reader(self.sock)
        self.sock.close()


_PINGERS: dict[tuple[int, Family], _Pinger] = {}


@contextlib.contextmanager
def _pinger(family: Family) -> Iterator[_Pinger]:
    loop = asyncio.get_running_loop()
    key = (id(loop), family)
    pinger = _PINGERS.get(key)
    if pinger is None or pinger.loop is not loop:
        pinger = _PINGERS[key] = _Pinger(loop, family)
    pinger.users += 1
    try:
        yield pinger
    finally:
        pinger.users -= 1
        if pinger.users == 0:
            pinger.close()
            if _PINGERS.get(key) is pinger:
                del _PINGERS[key]


async def check_ping(target: CheckTarget) -> Outcome:
    attempts = max(1, target.spec.checkcount)
    per_attempt = target.spec.checktimeout
    with _pinger(target.family) as pinger:
        for attempt in range(1, attempts + 1):
            set_phase(f"echo {attempt}/{attempts}")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(per_attempt):
                    await pinger.echo(target.host)
                    return Outcome.ok(f"echo reply ({attempt}/{attempts})")
    return Outcome.down(Reason.TIMEOUT, f"no echo reply to {attempts} request(s)")
