"""SIP OPTIONS request and response-head codec, as ldirectord's check_sip uses them.

Owns the bytes: ``build_options`` writes the request ldirectord sends (RFC 3261 OPTIONS to
``sip:<login>``, Via with our address and a branch, Max-Forwards 70, To/From/Contact
``<sip:login>``, Call-ID, ``CSeq: 63104 OPTIONS``, ``Accept: application/sdp``,
``Content-Length: 0``); ``parse_response`` reads a response's status line and headers.
Unlike ldirectord, the branch, tag and Call-ID are fresh per check (a fixed branch makes a
stateful proxy treat each check as a retransmission of the first) and the Via transport says
TCP on TCP. Pure: no IO, no randomness of its own (the caller passes the tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_HEAD = 16384


class SipError(ValueError):
    """Bytes that are not a SIP response."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    reason: str
    status_line: str
    headers: dict[str, str]  # lower-case name (compact forms expanded) → first value


_COMPACT = {
    "i": "call-id",
    "v": "via",
    "f": "from",
    "t": "to",
    "l": "content-length",
    "m": "contact",
}


def build_options(
    *,
    login: str,
    local_host: str,
    local_port: int,
    transport: str,
    call_id: str,
    branch: str,
    tag: str,
) -> bytes:
    """ldirectord's OPTIONS request (see the module docstring for what differs)."""
    if any(c in login for c in "\r\n"):
        raise ValueError("login must not contain line breaks")
    via_host = f"[{local_host}]" if ":" in local_host else local_host
    lines = [
        f"OPTIONS sip:{login} SIP/2.0",
        f"Via: SIP/2.0/{transport.upper()} {via_host}:{local_port};branch=z9hG4bK{branch}",
        "Max-Forwards: 70",
        f"To: <sip:{login}>",
        f"From: <sip:{login}>;tag={tag}",
        f"Call-ID: {call_id}",
        "CSeq: 63104 OPTIONS",
        f"Contact: <sip:{login}>",
        "Accept: application/sdp",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def parse_response(data: bytes) -> Response:
    """The status line and headers of a SIP response (the head up to the blank line)."""
    head = data.split(b"\r\n\r\n", 1)[0][:MAX_HEAD]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipError(f"not UTF-8: {data[:40]!r}") from exc
    lines = text.replace("\r\n", "\n").split("\n")
    status_line = lines[0].rstrip("\r")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or parts[0] != "SIP/2.0" or not (parts[1].isdigit() and len(parts[1]) == 3):
        raise SipError(f"not a SIP response: {status_line[:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            continue
        key = name.strip().lower()
        headers.setdefault(_COMPACT.get(key, key), value.strip())
    return Response(int(parts[1]), parts[2] if len(parts) > 2 else "", status_line, headers)
