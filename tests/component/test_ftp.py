"""ftp checks against a real vsftpd (anonymous and a local user) on loopback.

vsftpd is the Debian package, started by tests/helpers/servers.py with an anonymous root and
the local user ``ldftp`` (the one fixture that touches /etc: PAM needs a passwd entry; it is
removed at teardown). Hostile peers come from tests/helpers/hostile.py; a scripted peer gives
the greetings a real server will not send on demand.
"""

from __future__ import annotations

import asyncio

import pytest

from ldirectord.checks import run
from ldirectord.checks.base import CheckTarget, Reason
from tests.helpers import hostile
from tests.helpers.servers import (
    FTP_USER,
    PASSWORD,
    Running,
    beside,
    ipv6_loopback,
    module_server,
    scripted,
    start_vsftpd,
    target,
)

pytestmark = [pytest.mark.component, pytest.mark.asyncio]

DEADLINE = 1.5
MARGIN = 1.0

vsftpd = module_server(start_vsftpd)


def ftp(
    port: int, request: str = "/check.txt", receive: str = "alive", **spec: object
) -> CheckTarget:
    return target("ftp", port, request=request, receive=receive, timeout=DEADLINE, **spec)


async def test_anonymous_up(vsftpd: Running) -> None:
    outcome = await run(ftp(vsftpd.port("ftp")))
    assert outcome.up, outcome
    assert "/check.txt" in outcome.detail


async def test_user_up(vsftpd: Running) -> None:
    outcome = await run(
        ftp(vsftpd.port("ftp"), receive="user-alive$", login=FTP_USER, passwd=PASSWORD)
    )
    assert outcome.up, outcome


async def test_anonymous_with_explicit_login_up(vsftpd: Running) -> None:
    # service=ftp sets login "anonymous" and passwd "ldirectord@HOST" (reference §1.6)
    outcome = await run(ftp(vsftpd.port("ftp"), login="anonymous", passwd="ldirectord@test"))
    assert outcome.up, outcome


async def test_wrong_receive_is_no_match(vsftpd: Running) -> None:
    outcome = await run(ftp(vsftpd.port("ftp"), receive="^dead"))
    assert (outcome.up, outcome.reason) == (False, Reason.NO_MATCH), outcome


async def test_empty_receive_matches_any_download(vsftpd: Running) -> None:
    outcome = await run(ftp(vsftpd.port("ftp"), receive=""))
    assert outcome.up, outcome


async def test_missing_file_is_bad_status(vsftpd: Running) -> None:
    outcome = await run(ftp(vsftpd.port("ftp"), request="/missing.txt", receive=""))
    assert (outcome.up, outcome.reason) == (False, Reason.BAD_STATUS), outcome
    assert "550" in outcome.detail


async def test_wrong_password_is_auth(vsftpd: Running) -> None:
    # PAM delays a failed login by about 2 s: this one gets time to hear the 530
    t = target(
        "ftp", vsftpd.port("ftp"), request="/check.txt", timeout=8.0, login=FTP_USER,
        passwd="wrong",
    )  # fmt: skip
    outcome = await run(t)
    assert (outcome.up, outcome.reason) == (False, Reason.AUTH), outcome
    assert "530" in outcome.detail


async def test_refused() -> None:
    outcome = await run(ftp(hostile.free_port()))
    assert (outcome.up, outcome.reason) == (False, Reason.REFUSED)


async def test_bad_greeting() -> None:
    with scripted(b"421 Too many users\r\n", []) as peer:
        outcome = await run(ftp(peer.port))
    assert (outcome.up, outcome.reason) == (False, Reason.BAD_STATUS)


async def test_data_connection_refused_is_down() -> None:
    dead = hostile.free_port()
    replies = [
        b"331 pass\r\n",
        b"230 ok\r\n",
        b"250 ok\r\n",
        b"200 ok\r\n",
        f"227 Entering Passive Mode (127,0,0,1,{dead // 256},{dead % 256})\r\n".encode(),
    ]
    with scripted(b"220 hi\r\n", replies) as peer:
        outcome = await run(ftp(peer.port))
    assert (outcome.up, outcome.reason) == (False, Reason.REFUSED), outcome


HOSTILE = {
    "hang": (hostile.hang, Reason.TIMEOUT),
    "trickle": (lambda: hostile.trickle(b"220 " + b"x" * 200, wait_request=False), Reason.TIMEOUT),
    "reset": (hostile.reset, Reason.RESET),
    "garbage": (lambda: hostile.garbage(after_request=False), Reason.PROTOCOL),
    "close": (hostile.close_at_once, Reason.CLOSED),
    "stall-after-login": (
        lambda: scripted(b"220 hi\r\n", [b"230 in\r\n"]),
        Reason.TIMEOUT,
    ),
}


@pytest.mark.parametrize("behaviour", sorted(HOSTILE))
async def test_hostile(vsftpd: Running, behaviour: str) -> None:
    make, reason = HOSTILE[behaviour]
    with make() as peer:
        bad, good, not_delayed = await beside(ftp(peer.port), ftp(vsftpd.port("ftp")))
    assert (bad.up, bad.reason) == (False, reason), bad
    assert bad.duration < DEADLINE + MARGIN
    assert good.up and not_delayed, good


async def test_ipv6_uses_epsv_and_the_real_servers_address() -> None:
    """A protocol-accurate FTP dialogue on ::1 (vsftpd listens on one family per instance)."""
    if not ipv6_loopback():
        pytest.skip("no ::1 on this host")

    async def serve_file(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"ldirectord ftp check: alive\n")
        await writer.drain()
        writer.close()

    with hostile.TcpPeer(serve_file, host="::1", name="ftp-data") as data:
        replies = [
            b"331 pass\r\n",
            b"230 ok\r\n",
            b"250 ok\r\n",
            b"200 ok\r\n",
            f"229 Entering Extended Passive Mode (|||{data.port}|)\r\n".encode(),
            b"150 here it comes\r\n226 done\r\n",
        ]
        with scripted(b"220 v6 ftp\r\n", replies, host="::1") as peer:
            outcome = await run(
                target(
                    "ftp", peer.port, host="::1", request="/f", receive="alive", timeout=DEADLINE
                )
            )
    assert outcome.up, outcome
