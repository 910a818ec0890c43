"""Negotiate check for ftp: log in, fetch ``request`` in passive mode, match ``receive``.

Owns ldirectord's check_ftp (reference §2.2): connect (220 greeting), USER/PASS with
``login``/``passwd`` (Net::FTP's defaults when empty: ``anonymous`` / ``-anonymous@``),
``CWD /``, ``TYPE I``, passive mode, ``RETR request`` (with its leading ``/``), QUIT; up when
the downloaded data matches the ``receive`` regex (an empty receive matches anything).

Differences, on purpose: each step's failure ends the check at once with its reason (Perl
ignores errors and judges only the downloaded data, so with an empty receive it says up even
when nothing answers); the download is capped at ``MAX_DOWNLOAD`` bytes; the data connection
goes to the real server's own address with the port from PASV/EPSV (the address inside a PASV
reply is ignored, as Python's ftplib does, so a check never connects elsewhere). Everything
runs under negotiatetimeout, enforced by ``guarded``.
"""

from __future__ import annotations

import re

from ldirectord.checks._net import Conn, open_tcp
from ldirectord.checks._receive import matches, receive_regex
from ldirectord.checks.base import CheckFailed, CheckTarget, Outcome, Reason, set_phase
from ldirectord.config.model import Family

#: Download at most this much of the file (the check only needs its head).
MAX_DOWNLOAD = 1 << 20
MAX_REPLY_LINES = 100
_PASV = re.compile(r"(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)")
_EPSV = re.compile(r"\(([!-~])\1\1(\d+)\1\)")


async def _reply(conn: Conn, what: str) -> tuple[int, str]:
    """One FTP reply (RFC 959 multi-line aware): its code and its last line."""
    set_phase(f"waiting for {what}")
    first = b""
    for _ in range(MAX_REPLY_LINES):
        raw = await conn.read_line()
        if not raw:
            raise CheckFailed(Reason.CLOSED, f"connection closed before {what}")
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not first:
            if len(line) < 3 or not line[:3].isdigit():
                raise CheckFailed(Reason.PROTOCOL, f"not an FTP reply to {what}: {line[:80]!r}")
            first = raw
            if line[3:4] != "-":
                return int(line[:3]), line
        elif line[:3] == first[:3].decode() and line[3:4] == " ":
            return int(line[:3]), line
    raise CheckFailed(Reason.PROTOCOL, f"{what}: more than {MAX_REPLY_LINES} reply lines")


async def _command(conn: Conn, command: str, what: str | None = None) -> tuple[int, str]:
    if "\r" in command or "\n" in command:
        raise CheckFailed(Reason.CONFIG, "FTP arguments must not contain line breaks")
    await conn.send(command.encode("utf-8") + b"\r\n")
    return await _reply(conn, what or f"the reply to {command.split(' ', 1)[0]}")


async def _login(conn: Conn, login: str, passwd: str) -> None:
    user = login or "anonymous"
    if not passwd and user.lower() == "anonymous":
        passwd = "-anonymous@"
    code, line = await _command(conn, f"USER {user}")
    if code == 331:
        code, line = await _command(conn, f"PASS {passwd}")
    if code // 100 != 2:
        raise CheckFailed(Reason.AUTH, f"login as {user!r}: {line[:120]}")


async def _passive(conn: Conn, target: CheckTarget) -> int:
    """Enter passive mode; the data port (PASV for IPv4, EPSV for IPv6)."""
    if target.family is Family.INET6:
        code, line = await _command(conn, "EPSV")
        match = _EPSV.search(line)
        if code != 229 or not match:
            raise CheckFailed(Reason.BAD_STATUS, f"EPSV: {line[:120]}")
        return int(match.group(2))
    code, line = await _command(conn, "PASV")
    match = _PASV.search(line)
    if code != 227 or not match:
        raise CheckFailed(Reason.BAD_STATUS, f"PASV: {line[:120]}")
    port = int(match.group(5)) * 256 + int(match.group(6))
    if not 0 < port < 65536:
        raise CheckFailed(Reason.PROTOCOL, f"PASV: bad port in {line[:120]}")
    return port


async def check_ftp(target: CheckTarget) -> Outcome:
    spec = target.spec
    if target.receive:
        receive_regex(target.receive)  # a bad pattern is a config problem, found before IO
    async with await open_tcp(target.host, target.port) as conn:
        code, greeting = await _reply(conn, "the greeting")
        if code != 220:
            raise CheckFailed(Reason.BAD_STATUS, f"greeting: {greeting[:120]}")
        await _login(conn, spec.login, spec.passwd)
        await _command(conn, "CWD /")  # ldirectord ignores the outcome of these two
        await _command(conn, "TYPE I")
        data_port = await _passive(conn, target)
        set_phase("opening the data connection")
        async with await open_tcp(target.host, data_port) as data_conn:
            code, line = await _command(conn, f"RETR {target.request}")
            if code // 100 not in (1, 2):
                raise CheckFailed(Reason.BAD_STATUS, f"RETR {target.request}: {line[:120]}")
            set_phase("downloading")
            data = await data_conn.read_to_eof(MAX_DOWNLOAD)
        if code // 100 == 1:
            code, line = await _reply(conn, "the end of the transfer")
            if code // 100 != 2 and len(data) < MAX_DOWNLOAD:
                raise CheckFailed(Reason.BAD_STATUS, f"RETR {target.request}: {line[:120]}")
        await conn.send(b"QUIT\r\n")
    text = data.decode("latin-1")
    if not matches(target.receive, text):
        raise CheckFailed(
            Reason.NO_MATCH, f"{target.request} ({len(data)} bytes) does not match receive"
        )
    return Outcome.ok(f"{target.request}: {len(data)} bytes")
