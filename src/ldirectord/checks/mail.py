"""Negotiate checks for mail services: smtp and submission, pop and pops, imap and imaps.

Owns what ldirectord's check_smtp / check_pop / check_imap / check_imaps test (reference
§2.2), spoken directly over asyncio streams (``_net``); every read is bounded in size and runs
under the check's hard deadline (negotiatetimeout), enforced by ``guarded``.

* smtp, submission: the greeting must be 2xx, then ``EHLO`` (``HELO`` if EHLO is refused) must
  be 2xx, as Net::SMTP's constructor requires; then QUIT. No STARTTLS, no AUTH (as ldirectord).
* pop, pops: the greeting must be ``+OK``; with a login, ``USER``/``PASS`` must both be ``+OK``.
  Deliberate fix: ldirectord says up without a login even when nothing listens (a quirk of
  Mail::POP3Client); we always check the greeting.
* imap, imaps: the greeting must be ``* OK`` (or ``* PREAUTH``); with a login, ``LOGIN`` must
  end in a tagged ``OK``; then LOGOUT.

pops and imaps speak TLS from the first byte, without certificate or host name verification
(see ``_net.tls_context``). Knows nothing about the engine.
"""

from __future__ import annotations

import re

from ldirectord.checks._net import Conn, open_tcp
from ldirectord.checks.base import CheckFailed, CheckTarget, Outcome, Reason, set_phase
from ldirectord.config.model import Service

#: The EHLO argument Net::SMTP sends when none is configured.
HELLO_DOMAIN = "localhost.localdomain"
_RESP_CODE = re.compile(r"\[[^\]]*\]\s*")
#: Bound on the lines of one multi-line reply (EHLO lists a dozen extensions).
MAX_REPLY_LINES = 100


def _text(line: bytes) -> str:
    return line.decode("utf-8", "replace").rstrip("\r\n")


def _short(line: bytes | str) -> str:
    text = _text(line) if isinstance(line, bytes) else line
    return text[:120]


async def _line(conn: Conn, what: str) -> bytes:
    set_phase(f"waiting for {what}")
    line = await conn.read_line()
    if not line:
        raise CheckFailed(Reason.CLOSED, f"connection closed before {what}")
    return line


# --------------------------------------------------------------------------- SMTP


async def _smtp_reply(conn: Conn, what: str) -> tuple[int, str]:
    """One (possibly multi-line) SMTP reply: its code and its first line."""
    first = ""
    for _ in range(MAX_REPLY_LINES):
        line = _text(await _line(conn, what))
        code = line[:3]
        if len(line) < 3 or not code.isdigit() or line[3:4] not in ("", " ", "-"):
            raise CheckFailed(Reason.PROTOCOL, f"not an SMTP reply to {what}: {_short(line)!r}")
        first = first or line
        if line[3:4] != "-":
            return int(code), first
    raise CheckFailed(Reason.PROTOCOL, f"{what}: more than {MAX_REPLY_LINES} reply lines")


async def check_smtp(target: CheckTarget) -> Outcome:
    """smtp and submission: 2xx greeting, 2xx EHLO (or HELO), QUIT."""
    async with await open_tcp(target.host, target.port) as conn:
        code, greeting = await _smtp_reply(conn, "the greeting")
        if code // 100 != 2:
            raise CheckFailed(Reason.BAD_STATUS, f"greeting: {_short(greeting)}")
        await conn.send(f"EHLO {HELLO_DOMAIN}\r\n".encode())
        code, reply = await _smtp_reply(conn, "EHLO")
        if code // 100 != 2:
            await conn.send(f"HELO {HELLO_DOMAIN}\r\n".encode())
            code, reply = await _smtp_reply(conn, "HELO")
            if code // 100 != 2:
                raise CheckFailed(Reason.BAD_STATUS, f"EHLO/HELO refused: {_short(reply)}")
        await conn.send(b"QUIT\r\n")
        return Outcome.ok(_short(greeting))


# --------------------------------------------------------------------------- POP3


def _pop_ok(line: bytes) -> bool:
    return line.startswith(b"+OK")


async def check_pop(target: CheckTarget) -> Outcome:
    """pop and pops: ``+OK`` greeting; with a login, USER and PASS accepted; QUIT."""
    tls = target.service is Service.POPS
    spec = target.spec
    async with await open_tcp(target.host, target.port, tls=tls) as conn:
        greeting = await _line(conn, "the greeting")
        if not _pop_ok(greeting):
            reason = Reason.BAD_STATUS if greeting.startswith(b"-ERR") else Reason.PROTOCOL
            raise CheckFailed(reason, f"greeting: {_short(greeting)}")
        if spec.login:
            _no_line_breaks(spec.login, spec.passwd)
            await conn.send(f"USER {spec.login}\r\n".encode())
            reply = await _line(conn, "the reply to USER")
            if _pop_ok(reply):
                await conn.send(f"PASS {spec.passwd}\r\n".encode())
                reply = await _line(conn, "the reply to PASS")
            if not _pop_ok(reply):
                await conn.send(b"QUIT\r\n")
                raise CheckFailed(Reason.AUTH, f"login as {spec.login!r}: {_short(reply)}")
        await conn.send(b"QUIT\r\n")
        return Outcome.ok(_short(greeting) + (f"; logged in as {spec.login}" if spec.login else ""))


# --------------------------------------------------------------------------- IMAP


def _imap_quote(value: str) -> str:
    """An IMAP quoted string (RFC 3501): backslash-escape ``\\`` and ``"``."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def _imap_tagged(conn: Conn, tag: str, what: str) -> str:
    """Read until the tagged completion of ``tag``; return it (untagged lines are skipped)."""
    for _ in range(MAX_REPLY_LINES):
        line = _text(await _line(conn, what))
        if line.startswith(f"{tag} "):
            return line[len(tag) + 1 :]
        if line.startswith("* BYE"):
            raise CheckFailed(Reason.BAD_STATUS, f"{what}: {_short(line)}")
    raise CheckFailed(Reason.PROTOCOL, f"{what}: no tagged reply in {MAX_REPLY_LINES} lines")


async def check_imap(target: CheckTarget) -> Outcome:
    """imap and imaps: ``* OK`` greeting; with a login, LOGIN must be OK; LOGOUT."""
    tls = target.service is Service.IMAPS
    spec = target.spec
    async with await open_tcp(target.host, target.port, tls=tls) as conn:
        greeting = _text(await _line(conn, "the greeting"))
        status = greeting.split(" ", 2)[1:2] if greeting.startswith("* ") else []
        if status not in (["OK"], ["PREAUTH"]):
            reason = Reason.BAD_STATUS if status in (["BYE"], ["NO"], ["BAD"]) else Reason.PROTOCOL
            raise CheckFailed(reason, f"greeting: {_short(greeting)}")
        if spec.login:
            _no_line_breaks(spec.login, spec.passwd)
            login = f"a1 LOGIN {_imap_quote(spec.login)} {_imap_quote(spec.passwd)}\r\n"
            await conn.send(login.encode())
            reply = await _imap_tagged(conn, "a1", "the reply to LOGIN")
            if not reply.upper().startswith("OK"):
                await conn.send(b"a2 LOGOUT\r\n")
                raise CheckFailed(Reason.AUTH, f"login as {spec.login!r}: {_short(reply)}")
        await conn.send(b"a2 LOGOUT\r\n")
        text = _short(_RESP_CODE.sub("", greeting))  # drop "[CAPABILITY ...]"
        return Outcome.ok(text + (f"; logged in as {spec.login}" if spec.login else ""))


def _no_line_breaks(*values: str) -> None:
    if any("\r" in v or "\n" in v for v in values):
        raise CheckFailed(Reason.CONFIG, "login/passwd must not contain line breaks")
