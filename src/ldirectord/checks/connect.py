"""The ``connect`` check (ldirectord's check_connect, reference §2.2).

A TCP connect to RIP:checkport; up when it completes. The socket is closed at once with a
reset (no TIME_WAIT). fwmark virtuals are checked over TCP. A connect check of a UDP virtual
is a ping in ldirectord; the registry dispatches that to ``ping.check_ping``.
"""

from __future__ import annotations

from ldirectord.checks import _net
from ldirectord.checks.base import CheckTarget, Outcome


async def check_connect(target: CheckTarget) -> Outcome:
    where = f"{target.host_for_url}:{target.port}"
    try:
        await _net.connect_only(target.host, target.port, target.family)
    except ConnectionResetError:
        # A reset (not a refusal) means the handshake completed and the server then closed:
        # ldirectord's blocking connect() had returned success by then.
        return Outcome.ok(f"connected to {where} (then reset by the server)")
    return Outcome.ok(f"connected to {where}")
