"""Negotiate check for sip: an OPTIONS request whose final answer must be ``SIP/2.0 200 OK``.

Owns ldirectord's check_sip (reference §2.2) over the virtual's protocol: UDP (the usual
case: one datagram, re-sent every ``RETRY_AFTER`` seconds while nothing came back) or TCP (the
request on a stream, the response head read up to its blank line). Provisional ``1xx``
responses are skipped (ldirectord would call a ``100 Trying`` down); responses whose Call-ID
is not ours are ignored. Up only when the final status line starts with ``SIP/2.0 200 OK``.
The whole check runs under negotiatetimeout, enforced by ``guarded``. Message bytes live in
``protocols.sip``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket

from ldirectord.checks._net import Conn, address_family, open_tcp
from ldirectord.checks.base import CheckFailed, CheckTarget, Outcome, Reason, set_phase
from ldirectord.config.model import Protocol
from ldirectord.protocols import sip as codec

RETRY_AFTER = 1.0
MAX_RESPONSES = 20


def _request(target: CheckTarget, local: tuple[str, int], transport: str) -> tuple[bytes, str]:
    call_id = secrets.token_hex(8)
    try:
        data = codec.build_options(
            login=target.spec.login,
            local_host=local[0],
            local_port=local[1],
            transport=transport,
            call_id=call_id,
            branch=secrets.token_hex(8),
            tag=secrets.token_hex(4),
        )
    except ValueError as exc:
        raise CheckFailed(Reason.CONFIG, str(exc)) from None
    return data, call_id


def _judge(response: codec.Response) -> Outcome | None:
    """The outcome of a final response; None for a provisional one (keep waiting)."""
    if 100 <= response.status < 200:
        return None
    if response.status_line.startswith("SIP/2.0 200 OK"):
        return Outcome.ok(response.status_line[:120])
    raise CheckFailed(Reason.BAD_STATUS, response.status_line[:120])


def _parse(data: bytes) -> codec.Response:
    try:
        return codec.parse_response(data)
    except codec.SipError as exc:
        raise CheckFailed(Reason.PROTOCOL, str(exc)) from None


async def check_sip(target: CheckTarget) -> Outcome:
    if target.protocol is Protocol.UDP:
        return await _check_udp(target)
    return await _check_tcp(target)


async def _check_udp(target: CheckTarget) -> Outcome:
    loop = asyncio.get_running_loop()
    sock = socket.socket(address_family(target.family), socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        set_phase("connect")
        await loop.sock_connect(sock, (target.host, target.port))
        request, call_id = _request(target, sock.getsockname()[:2], "UDP")
        while True:  # bounded by the check's deadline (guarded)
            set_phase("sending OPTIONS")
            await loop.sock_sendall(sock, request)
            set_phase("waiting for the response")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RETRY_AFTER):
                    return await _udp_final(loop, sock, call_id)
    finally:
        sock.close()


async def _udp_final(loop: asyncio.AbstractEventLoop, sock: socket.socket, call_id: str) -> Outcome:
    for _ in range(MAX_RESPONSES):
        response = _parse(await loop.sock_recv(sock, 65535))
        if response.headers.get("call-id", call_id) != call_id:
            continue
        outcome = _judge(response)
        if outcome is not None:
            return outcome
    raise CheckFailed(Reason.PROTOCOL, f"no final response in {MAX_RESPONSES} datagrams")


async def _check_tcp(target: CheckTarget) -> Outcome:
    async with await open_tcp(target.host, target.port) as conn:
        local = conn.writer.get_extra_info("sockname")
        request, call_id = _request(target, local[:2], "TCP")
        await conn.send(request)
        for _ in range(MAX_RESPONSES):
            response = await _tcp_response(conn)
            if response.headers.get("call-id", call_id) != call_id:
                continue
            outcome = _judge(response)
            if outcome is not None:
                return outcome
    raise CheckFailed(Reason.PROTOCOL, f"no final response in {MAX_RESPONSES} responses")


async def _tcp_response(conn: Conn) -> codec.Response:
    set_phase("waiting for the response")
    head = await conn.read_until(b"\r\n\r\n", codec.MAX_HEAD)
    response = _parse(head)
    length = response.headers.get("content-length", "0")
    if length.isdigit() and int(length) > 0:
        set_phase("reading the response body")
        await conn.read_exactly(min(int(length), 65536))
    return response
