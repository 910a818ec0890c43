"""The ``ping`` check (ldirectord's check_ping via Net::Ping "icmp", reference §2.2).

Up to ``checkcount`` ICMP echo requests, each waiting up to checktimeout for the reply; the
first reply is up. Also used for ``connect`` checks of UDP virtuals, as ldirectord does.

Sockets: the unprivileged ICMP "ping socket" (SOCK_DGRAM, IPPROTO_ICMP/ICMPV6) when
``net.ipv4.ping_group_range`` covers our group, else a raw socket (root / CAP_NET_RAW). With a
ping socket the kernel owns the echo identifier and hands us only our replies; a raw socket
sees every ICMP packet of the host, so replies are matched on source, identifier and
sequence. One socket per check: simple and leak-free; at thousands of pings per second a
shared socket would be cheaper (performance.md §5). IPv6 works too (ldirectord's did not).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import struct

from ldirectord.checks.base import CheckFailed, CheckTarget, Outcome, Reason, set_phase
from ldirectord.config.model import Family

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


async def _one_echo(
    sock: socket.socket, family: Family, host: str, ident: int, seq: int, *, raw: bool
) -> None:
    loop = asyncio.get_running_loop()
    await loop.sock_sendto(sock, echo_request(family, ident, seq), (host, 0))
    want = ECHO_REPLY[family]
    for _ in range(100_000):  # bounded: other hosts' ICMP traffic on a raw socket
        packet, addr = await loop.sock_recvfrom(sock, 2048)
        if addr[0] != host and not _same_address(addr[0], host):
            continue
        parsed = parse_reply(family, packet, raw=raw)
        if parsed is None:
            continue
        kind, got_ident, got_seq = parsed
        if kind == want and got_seq == seq and (not raw or got_ident == ident):
            return


def _same_address(a: str, b: str) -> bool:
    try:
        family = socket.AF_INET6 if ":" in b else socket.AF_INET
        return socket.inet_pton(family, a.split("%", maxsplit=1)[0]) == socket.inet_pton(family, b)
    except OSError:
        return False


async def check_ping(target: CheckTarget) -> Outcome:
    sock, raw = open_ping_socket(target.family)
    attempts = max(1, target.spec.checkcount)
    per_attempt = target.spec.checktimeout
    ident = (os.getpid() ^ id(sock)) & 0xFFFF
    try:
        sock.setblocking(False)
        for attempt in range(1, attempts + 1):
            set_phase(f"echo {attempt}/{attempts}")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(per_attempt):
                    await _one_echo(sock, target.family, target.host, ident, attempt, raw=raw)
                    return Outcome.ok(f"echo reply ({attempt}/{attempts})")
    finally:
        sock.close()
    return Outcome.down(Reason.TIMEOUT, f"no echo reply to {attempts} request(s)")
