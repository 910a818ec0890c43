"""Negotiate check for nntp: the server's greeting must start with ``2`` (200/201).

Owns ldirectord's check_nntp (reference §2.2): connect, read the greeting line, up when its
first character is ``2``. ldirectord judges whatever its first read returns (at most 64
bytes); we wait for the whole first line (at most ``GREETING_LIMIT`` bytes), so a server that
trickles its greeting is down at the deadline instead of up on its first byte. Deliberate fix: the
connect is bounded too (ldirectord misspells its connect timeout, so a black-holed server
stalled the whole daemon); the whole check runs under negotiatetimeout, enforced by
``guarded``. Knows nothing about the engine.
"""

from __future__ import annotations

from ldirectord.checks._net import open_tcp
from ldirectord.checks.base import CheckFailed, CheckTarget, Outcome, Reason, set_phase

#: The longest greeting line we accept (RFC 3977 allows 512 octets per response line).
GREETING_LIMIT = 512


async def check_nntp(target: CheckTarget) -> Outcome:
    async with await open_tcp(target.host, target.port) as conn:
        set_phase("waiting for the greeting")
        greeting = await conn.read_line(GREETING_LIMIT)
        text = greeting.decode("utf-8", "replace").splitlines()[0][:120] if greeting else ""
        if not greeting:
            raise CheckFailed(Reason.CLOSED, "connection closed without a greeting")
        if not greeting.startswith(b"2"):
            reason = Reason.BAD_STATUS if greeting[:3].isdigit() else Reason.PROTOCOL
            raise CheckFailed(reason, f"greeting: {text!r}")
        return Outcome.ok(text)
