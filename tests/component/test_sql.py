"""mysql and pgsql checks against real MariaDB 10.11 and PostgreSQL 15; oracle's missing driver.

MariaDB and PostgreSQL (Debian packages) get a fresh data dir each, a database ``ldtest`` with
a one-row table ``t`` and an empty table ``empty``, and the login ``ldcheck``/``secret``,
started by tests/helpers/servers.py. No Oracle server can run here, so the oracle check is
tested only for what it does without its optional driver (down, CONFIG, naming the extra).
Hostile peers: hang, trickle, reset, garbage, and servers that send a valid MySQL / PostgreSQL
handshake and then stall.
"""

from __future__ import annotations

import asyncio
import struct
import sys
import threading
import time

import pytest

from ldirectord.checks import _blocking, run
from ldirectord.checks.base import CheckTarget, Reason
from ldirectord.checks.sql import driver_problem
from ldirectord.config.model import Service
from tests.helpers import hostile
from tests.helpers.servers import (
    PASSWORD,
    USER,
    Running,
    beside,
    module_server,
    start_mariadb,
    start_postgresql,
    target,
)

pytestmark = [pytest.mark.component, pytest.mark.asyncio]

DEADLINE = 1.5
MARGIN = 1.0

mariadb = module_server(start_mariadb)
postgresql = module_server(start_postgresql)


def sql(service: str, port: int, query: str = "SELECT v FROM t", **spec: object) -> CheckTarget:
    settings: dict[str, object] = {"login": USER, "passwd": PASSWORD, "database": "ldtest"}
    settings |= spec
    return target(service, port, request=f"/{query}", timeout=DEADLINE, **settings)


def _port(service: str, mariadb: Running | None, postgresql: Running | None) -> int:
    server = mariadb if service == "mysql" else postgresql
    assert server is not None
    return server.port(service)


@pytest.fixture(params=["mysql", "pgsql"])
def db(request: pytest.FixtureRequest) -> tuple[str, Running]:
    service: str = request.param
    fixture = "mariadb" if service == "mysql" else "postgresql"
    return service, request.getfixturevalue(fixture)


async def test_query_with_rows_is_up(db: tuple[str, Running]) -> None:
    service, server = db
    outcome = await run(sql(service, server.port(service)))
    assert outcome.up, outcome


async def test_query_without_rows_is_no_match(db: tuple[str, Running]) -> None:
    service, server = db
    outcome = await run(sql(service, server.port(service), "SELECT id FROM empty"))
    assert (outcome.up, outcome.reason) == (False, Reason.NO_MATCH), outcome


async def test_wrong_password_is_auth(db: tuple[str, Running]) -> None:
    service, server = db
    outcome = await run(sql(service, server.port(service), passwd="wrong"))
    assert (outcome.up, outcome.reason) == (False, Reason.AUTH), outcome


async def test_bad_query_is_bad_status(db: tuple[str, Running]) -> None:
    service, server = db
    outcome = await run(sql(service, server.port(service), "SELECT * FROM no_such_table"))
    assert (outcome.up, outcome.reason) == (False, Reason.BAD_STATUS), outcome


@pytest.mark.parametrize(("login", "query"), [("", "SELECT 1"), (USER, "")])
@pytest.mark.parametrize("service", ["mysql", "pgsql", "oracle"])
async def test_login_and_request_are_mandatory(service: str, login: str, query: str) -> None:
    outcome = await run(sql(service, hostile.free_port(), query, login=login))
    assert (outcome.up, outcome.reason) == (False, Reason.CONFIG), outcome


@pytest.mark.parametrize("service", ["mysql", "pgsql"])
async def test_refused(service: str) -> None:
    outcome = await run(sql(service, hostile.free_port()))
    assert (outcome.up, outcome.reason) == (False, Reason.REFUSED), outcome


async def test_oracle_without_driver_is_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "oracledb", None)  # as if the extra were not installed
    outcome = await run(sql("oracle", hostile.free_port(), "SELECT 1 FROM dual"))
    assert (outcome.up, outcome.reason) == (False, Reason.CONFIG), outcome
    assert "pip install 'ldirectord[oracle]'" in outcome.detail
    assert driver_problem(Service.ORACLE) == outcome.detail
    assert driver_problem(Service.MYSQL) is None


# --------------------------------------------------------------------------- hostile peers


def _mysql_greeting() -> bytes:
    """A valid MySQL protocol-10 handshake packet (MariaDB-style, mysql_native_password)."""
    caps = 0x0001 | 0x0008 | 0x0200 | 0x8000 | 0x80000  # long pw, with db, 4.1, secure, plugin
    payload = b"\x0a" + b"5.5.5-10.11.6-MariaDB-stalling\x00" + struct.pack("<I", 7)
    payload += b"abcdefgh\x00" + struct.pack("<HBHH", caps & 0xFFFF, 0x21, 2, caps >> 16)
    payload += bytes([21]) + bytes(10) + b"ijklmnopqrst\x00" + b"mysql_native_password\x00"
    return struct.pack("<I", len(payload))[:3] + b"\x00" + payload


def mysql_stall() -> hostile.TcpPeer:
    """Send the greeting, read the client's login, then never answer."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(_mysql_greeting())
        await writer.drain()
        while await reader.read(65536):
            pass

    return hostile.TcpPeer(handler, name="mysql-stall")


def pgsql_stall() -> hostile.TcpPeer:
    """Refuse SSL, accept the startup with AuthenticationOk, then never send ReadyForQuery."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        length, code = struct.unpack("!II", await reader.readexactly(8))
        if code == 80877103:  # SSLRequest
            writer.write(b"N")
            await writer.drain()
            (length,) = struct.unpack("!I", await reader.readexactly(4))
            await reader.readexactly(length - 4)
        else:
            await reader.readexactly(length - 8)
        writer.write(b"R" + struct.pack("!II", 8, 0))  # AuthenticationOk
        await writer.drain()
        while await reader.read(65536):
            pass

    return hostile.TcpPeer(handler, name="pgsql-stall")


HOSTILE = {
    "hang": (hostile.hang, Reason.TIMEOUT),
    "trickle": (
        lambda: hostile.trickle(b"\x4a\x00\x00\x00\x0a5.5.5" + b"x" * 80, wait_request=False),
        Reason.TIMEOUT,
    ),
    "reset": (hostile.reset, Reason.RESET),
    "garbage": (lambda: hostile.garbage(after_request=False, then="close"), Reason.PROTOCOL),
}


async def _no_abandoned_threads_left(limit: float = 5.0) -> bool:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if _blocking.abandoned_running() == 0:
            return True
        await asyncio.sleep(0.05)
    return False


async def _hostile_case(service: str, peer_port: int, server: Running, reason: Reason) -> None:
    bad, good, not_delayed = await beside(
        sql(service, peer_port), sql(service, server.port(service))
    )
    assert (bad.up, bad.reason) == (False, reason), bad
    assert bad.duration < DEADLINE + MARGIN
    assert good.up and not_delayed, good


@pytest.mark.parametrize("behaviour", sorted(HOSTILE))
async def test_hostile(db: tuple[str, Running], behaviour: str) -> None:
    service, server = db
    make, reason = HOSTILE[behaviour]
    if service == "pgsql" and behaviour == "trickle":
        make = lambda: hostile.trickle(b"NR\x00\x00\x00\x08\x00\x00\x00\x00")  # noqa: E731
    with make() as peer:
        await _hostile_case(service, peer.port, server, reason)
        assert await _no_abandoned_threads_left()  # mysql's worker is released while it holds


async def test_mysql_stall_after_handshake(mariadb: Running) -> None:
    before = _blocking.abandoned_total()
    with mysql_stall() as peer:
        await _hostile_case("mysql", peer.port, mariadb, Reason.TIMEOUT)
        assert _blocking.abandoned_total() > before  # the stuck worker was abandoned...
        assert await _no_abandoned_threads_left()  # ...and released by shutting its socket


async def test_pgsql_stall_after_handshake(postgresql: Running) -> None:
    with pgsql_stall() as peer:
        await _hostile_case("pgsql", peer.port, postgresql, Reason.TIMEOUT)


class _FakeOracle:
    """Stands in for python-oracledb (no Oracle server can run here): records what the check
    asks for and answers with ``rows``; a DatabaseError carries an ORA code like the real one."""

    class DatabaseError(Exception):
        pass

    def __init__(self, rows: list[tuple[int]], error: str | None = None) -> None:
        self.rows, self.error, self.calls = rows, error, []  # type: ignore[var-annotated]

    def makedsn(self, host: str, port: int, sid: str | None = None) -> str:
        return f"{host}:{port}/{sid}"

    async def connect_async(self, **kwargs: object) -> _FakeOracle:
        self.calls.append(("connect", kwargs))
        if self.error:
            raise self.DatabaseError(self.error)
        return self

    def cursor(self) -> _FakeOracle:
        return self

    async def execute(self, query: str) -> None:
        self.calls.append(("execute", query))

    async def fetchone(self) -> tuple[int] | None:
        return self.rows[0] if self.rows else None

    async def close(self) -> None:
        self.calls.append(("close", None))


@pytest.mark.parametrize(
    ("rows", "error", "up", "reason"),
    [
        ([(1,)], None, True, Reason.OK),
        ([], None, False, Reason.NO_MATCH),
        ([], "ORA-01017: invalid username/password; logon denied", False, Reason.AUTH),
        ([], "ORA-12514: listener does not know of service", False, Reason.BAD_STATUS),
    ],
)
async def test_oracle_with_a_stand_in_driver(
    monkeypatch: pytest.MonkeyPatch,
    rows: list[tuple[int]],
    error: str | None,
    up: bool,
    reason: Reason,
) -> None:
    fake = _FakeOracle(rows, error)
    monkeypatch.setitem(sys.modules, "oracledb", fake)
    t = sql("oracle", 1521, "SELECT 1 FROM dual", database="ORCL")
    outcome = await run(t)
    assert (outcome.up, outcome.reason) == (up, reason), outcome
    kind, kwargs = fake.calls[0]
    assert kind == "connect"
    assert kwargs["user"] == USER and kwargs["password"] == PASSWORD
    assert kwargs["dsn"] == "127.0.0.1:1521/ORCL"
    if error is None:
        assert ("execute", "SELECT 1 FROM dual") in fake.calls and fake.calls[-1][0] == "close"


async def test_mysql_builds_and_connects_its_connection_in_a_worker_thread(
    mariadb: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing of PyMySQL runs on the event loop: the connection object (whose __init__ used
    to build a TLS context, ~20 ms of CPU) and its connect both happen in the blocking pool.
    The spies record the thread and call the real methods; the check still talks to MariaDB."""
    import pymysql

    seen: list[tuple[str, str]] = []
    real_init = pymysql.connections.Connection.__init__
    real_connect = pymysql.connections.Connection.connect

    def init(self: object, *args: object, **kwargs: object) -> None:
        seen.append(("init", threading.current_thread().name))
        real_init(self, *args, **kwargs)
        assert not getattr(self, "ssl", False)  # no TLS, as DBD::mysql's default

    def connect(self: object, *args: object, **kwargs: object) -> None:
        seen.append(("connect", threading.current_thread().name))
        real_connect(self, *args, **kwargs)

    monkeypatch.setattr(pymysql.connections.Connection, "__init__", init)
    monkeypatch.setattr(pymysql.connections.Connection, "connect", connect)
    loop_thread = threading.current_thread().name
    for _ in range(3):
        outcome = await run(sql("mysql", mariadb.port("mysql")))
        assert outcome.up, outcome
    assert [what for what, _ in seen] == ["init", "connect"] * 3
    assert all(name != loop_thread for _, name in seen), seen
    assert all(name.startswith("ldirectord-check") for _, name in seen), seen
