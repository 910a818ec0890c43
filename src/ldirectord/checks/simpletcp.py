"""The ``simpletcp`` negotiate check (ldirectord's check_simpletcp, reference §2.2).

Connect, send ``request`` without its first character (ldirectord stores it with a leading
"/") and with every literal ``\\n`` turned into a newline, half-close (SHUT_WR), then read
lines until one matches the ``receive`` regex (up) or the server closes (down). An empty
receive matches the first line (Perl's empty pattern reuses the last match: undefined, we
take "anything"). Lines and the total read are bounded.
"""

from __future__ import annotations

from ldirectord.checks import _net
from ldirectord.checks._net import compile_receive
from ldirectord.checks.base import CheckFailed, CheckTarget, Outcome, Reason, set_phase

#: One line may be this long; the whole reply is read up to TOTAL_LIMIT before giving up.
LINE_LIMIT = 64 * 1024
TOTAL_LIMIT = 1 << 20


def request_bytes(request: str) -> bytes:
    """What ldirectord sends: ``substr(request, 1)`` with literal ``\\n`` made newlines."""
    return request[1:].replace("\\n", "\n").encode("utf-8", "surrogateescape")


async def check_simpletcp(target: CheckTarget) -> Outcome:
    pattern = compile_receive(target.receive)
    conn = await _net.open_tcp(target.host, target.port, limit=LINE_LIMIT)
    try:
        payload = request_bytes(target.request)
        if payload:
            await conn.send(payload)
        conn.shutdown_write()
        seen = 0
        lines = 0
        while seen < TOTAL_LIMIT:
            set_phase("waiting for a matching line")
            line = await conn.read_line(LINE_LIMIT)
            if not line:
                break
            seen += len(line)
            lines += 1
            if pattern.search(line) is not None:
                return Outcome.ok(line.decode("utf-8", "replace").strip()[:100])
    finally:
        conn.close()
    if lines == 0:
        raise CheckFailed(Reason.CLOSED, "connection closed without an answer")
    raise CheckFailed(Reason.NO_MATCH, f"no line of {lines} matched receive {target.receive!r}")
