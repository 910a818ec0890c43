"""Negotiate check for radius: an Access-Request that must be answered with Access-Accept.

Owns ldirectord's check_radius (reference §2.2) over UDP: User-Name = ``login``,
User-Password = ``passwd`` hidden with ``secret`` (RFC 2865), NAS-IP-Address and a
Message-Authenticator (codec in ``protocols.radius``). The reply must come from the real
server's address and port with our identifier and a valid Response Authenticator; up only on
Access-Accept. Access-Reject → down (AUTH); a reply that fails verification → down (AUTH,
"wrong shared secret?") at once rather than at the deadline. Datagrams that are not for us
(other identifier, too short) are ignored. The request is re-sent (same identifier and
authenticator, as RFC 2865 allows) every ``RETRY_AFTER`` seconds until the deadline
(checktimeout, as ldirectord's alarm), enforced by ``guarded``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket

from ldirectord.checks._net import address_family
from ldirectord.checks.base import CheckFailed, CheckTarget, Outcome, Reason, set_phase
from ldirectord.protocols import radius as codec

RETRY_AFTER = 1.0


async def check_radius(target: CheckTarget) -> Outcome:
    spec = target.spec
    secret = spec.secret.encode("utf-8")
    if not secret:
        raise CheckFailed(Reason.CONFIG, "the radius check needs secret")
    password = spec.passwd.encode("utf-8")
    if len(password) > codec.MAX_PASSWORD:
        raise CheckFailed(Reason.CONFIG, f"passwd longer than {codec.MAX_PASSWORD} bytes")
    loop = asyncio.get_running_loop()
    sock = socket.socket(address_family(target.family), socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        set_phase("connect")
        await loop.sock_connect(sock, (target.host, target.port))
        identifier = secrets.randbelow(256)
        authenticator = secrets.token_bytes(16)
        request = codec.encode_access_request(
            identifier=identifier,
            authenticator=authenticator,
            secret=secret,
            user_name=spec.login.encode("utf-8"),
            password=password,
            nas_ip=sock.getsockname()[0],
        )
        while True:  # bounded by the check's deadline (guarded)
            set_phase("sending the Access-Request")
            await loop.sock_sendall(sock, request)
            set_phase("waiting for the reply; none is valid without the right shared secret")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RETRY_AFTER):
                    reply = await _reply(loop, sock, identifier, authenticator, secret)
                    return _judge(reply)
    finally:
        sock.close()


async def _reply(
    loop: asyncio.AbstractEventLoop,
    sock: socket.socket,
    identifier: int,
    authenticator: bytes,
    secret: bytes,
) -> codec.Reply:
    while True:  # each pass consumes one datagram; bounded by the caller's timeout
        data = await loop.sock_recv(sock, codec.MAX_PACKET)
        if codec.peek_identifier(data) != identifier:
            continue  # not a RADIUS reply to this request
        try:
            return codec.decode_reply(
                data, identifier=identifier, authenticator=authenticator, secret=secret
            )
        except codec.RadiusError as exc:
            raise CheckFailed(Reason.AUTH, str(exc)) from None


def _judge(reply: codec.Reply) -> Outcome:
    message = reply.first(codec.REPLY_MESSAGE)
    text = f" ({message.decode('utf-8', 'replace')[:80]})" if message else ""
    if reply.code == codec.Code.ACCESS_ACCEPT:
        return Outcome.ok("Access-Accept" + text)
    if reply.code == codec.Code.ACCESS_REJECT:
        raise CheckFailed(Reason.AUTH, "Access-Reject" + text)
    if reply.code == codec.Code.ACCESS_CHALLENGE:
        raise CheckFailed(Reason.AUTH, "Access-Challenge (the check cannot answer one)")
    raise CheckFailed(Reason.PROTOCOL, f"unexpected RADIUS code {reply.code}")
