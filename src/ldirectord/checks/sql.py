"""Negotiate checks for databases: mysql, pgsql and oracle run ``request`` as a query.

Owns ldirectord's check_sql (reference §2.2): ``login`` and ``request`` (the query, without
its leading ``/``) are mandatory (down with CONFIG otherwise, as ldirectord logs and marks
down); connect to ``database`` on the real server as ``login``/``passwd``; run the query; up
when it returns at least one row. Deliberate fix: every step has the check's deadline
(negotiatetimeout) — ldirectord's SQL checks had none and could stall the daemon for good.

* pgsql: asyncpg, natively async (``fetchrow``: the server stops after one row).
* mysql: PyMySQL, which blocks, so the whole conversation — building the connection object
  included — runs in the bounded pool of ``_blocking`` with the time left; PyMySQL's
  connect/read/write timeouts are set to that time, and an abandoned call has its socket shut
  down so the worker returns at once (the worker hands the connection object to the loop side
  through a small holder for that). No TLS, as DBD::mysql's default (``ssl_disabled``):
  PyMySQL 1.2 would otherwise build an ``ssl`` default context, loading the CA store, for
  every connection. The result is buffered, as DBD::mysql does.
* oracle: python-oracledb's thin async mode, an optional extra; without it the check is down
  with CONFIG naming ``pip install 'ldirectord[oracle]'`` (``driver_problem`` says so for
  configtest). DSN ``host:port`` with SID = ``database``, as DBD::Oracle's ``sid=``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ldirectord.checks._blocking import run_blocking, shutdown_quietly
from ldirectord.checks.base import CheckFailed, CheckTarget, Outcome, Reason, set_phase
from ldirectord.config.model import Service

ORACLE_HINT = "pip install 'ldirectord[oracle]'"
#: MySQL server errors that mean "these credentials may not do this".
_MYSQL_AUTH_ERRORS = {1044, 1045, 1130, 1251, 1698}


def driver_problem(service: Service) -> str | None:
    """Why the check of ``service`` cannot run on this machine (for configtest), else None."""
    if service is Service.ORACLE:
        try:
            import oracledb  # noqa: F401
        except ImportError:
            return f"the oracle check needs the python-oracledb driver: {ORACLE_HINT}"
    return None


def _query(target: CheckTarget) -> str:
    query = target.request[1:] if target.request.startswith("/") else target.request
    if not (target.spec.login and query):
        raise CheckFailed(
            Reason.CONFIG, f"the {target.service} check needs login and request (the query)"
        )
    return query


def _no_rows(query: str) -> CheckFailed:
    return CheckFailed(Reason.NO_MATCH, f"{query[:80]!r} returned no rows")


# --------------------------------------------------------------------------- pgsql


async def check_pgsql(target: CheckTarget) -> Outcome:
    import asyncpg

    query = _query(target)
    end = time.monotonic() + target.deadline
    spec = target.spec
    set_phase("connect and log in")
    try:
        conn = await asyncpg.connect(
            host=target.host,
            port=target.port,
            user=spec.login,
            password=spec.passwd or None,
            database=spec.database or None,
            timeout=max(end - time.monotonic(), 0.01),
            statement_cache_size=0,
        )
    except asyncpg.PostgresError as exc:
        raise _pg_failure(exc) from None
    except asyncpg.InterfaceError as exc:
        raise _pg_interface_failure(exc) from None
    except ConnectionError as exc:
        if type(exc) is not ConnectionError:  # refused, reset: the OSError subclasses
            raise
        raise CheckFailed(Reason.PROTOCOL, str(exc)[:200]) from None  # e.g. junk for SSLRequest
    try:
        set_phase("running the query")
        row = await conn.fetchrow(query, timeout=max(end - time.monotonic(), 0.01))
    except asyncpg.PostgresError as exc:
        raise _pg_failure(exc) from None
    except asyncpg.InterfaceError as exc:
        raise _pg_interface_failure(exc) from None
    finally:
        conn.terminate()  # no goodbye round trip: close the socket now
    if row is None:
        raise _no_rows(query)
    return Outcome.ok(f"{query[:60]!r} returned a row")


def _pg_failure(exc: Exception) -> CheckFailed:
    sqlstate = str(getattr(exc, "sqlstate", "") or "")
    reason = Reason.AUTH if sqlstate.startswith("28") else Reason.BAD_STATUS
    return CheckFailed(reason, f"{sqlstate} {exc}".strip()[:200])


def _pg_interface_failure(exc: Exception) -> CheckFailed:
    text = str(exc)
    if "password" in text.lower():
        return CheckFailed(Reason.AUTH, text[:200])
    if "closed" in text.lower() or "does not exist" in text.lower():
        return CheckFailed(Reason.CLOSED, text[:200])
    return CheckFailed(Reason.PROTOCOL, f"{type(exc).__name__}: {text}"[:200])


# --------------------------------------------------------------------------- mysql


async def check_mysql(target: CheckTarget) -> Outcome:
    query = _query(target)
    end = time.monotonic() + target.deadline
    spec = target.spec
    budget = target.deadline + 1.0  # a backstop: at the deadline the pool abandons the call
    options: dict[str, object] = {
        "host": target.host,
        "port": target.port,
        "user": spec.login,
        "password": spec.passwd,
        "database": spec.database or None,
        "connect_timeout": budget,
        "read_timeout": budget,
        "write_timeout": budget,
        "charset": "utf8mb4",
        "ssl_disabled": True,  # no TLS, as DBD::mysql's default (mysql_ssl=0)
        "defer_connect": True,
    }
    holder = _Holder()
    rows = await run_blocking(
        end - time.monotonic(),
        _mysql_converse,
        holder,
        options,
        query,
        on_abandon=holder.abandon,
    )
    if rows == 0:
        raise _no_rows(query)
    return Outcome.ok(f"{query[:60]!r} returned a row")


class _Holder:
    """The worker's PyMySQL connection, as the loop side's abandon path needs to reach it.

    The worker builds the connection (nothing of PyMySQL runs on the event loop) and stores it
    here; ``abandon`` (on the loop, at the deadline) marks the call abandoned and shuts the
    socket the worker may be blocked on. A worker that finds the call already abandoned does
    not connect at all.
    """

    __slots__ = ("_lock", "abandoned", "conn")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.conn: object | None = None
        self.abandoned = False

    def keep(self, conn: object) -> bool:
        """Store ``conn``; False when the call was abandoned meanwhile (then do not connect)."""
        with self._lock:
            if self.abandoned:
                return False
            self.conn = conn
            return True

    def abandon(self) -> None:
        with self._lock:
            self.abandoned = True
            conn = self.conn
        if conn is not None:
            shutdown_quietly(getattr(conn, "_sock", None))


def _mysql_converse(holder: _Holder, options: dict[str, Any], query: str) -> int:
    """In a worker thread: build the connection, connect, log in, run the query, read one
    row. 1 or 0 rows."""
    import pymysql

    conn = pymysql.connections.Connection(**options)
    try:
        if not holder.keep(conn):
            raise CheckFailed(Reason.TIMEOUT, "abandoned before connecting")
        conn.connect()
        cursor = conn.cursor()
        rows = cursor.execute(query)  # buffered, as DBD::mysql's store_result
        if cursor.description is None:  # not a SELECT: no rows, as DBI's rows says
            return 0
        return 1 if rows else 0
    except pymysql.err.MySQLError as exc:
        raise _mysql_failure(exc) from None
    except (OSError, ValueError, IndexError, KeyError) as exc:  # garbage on the wire
        raise CheckFailed(Reason.PROTOCOL, f"{type(exc).__name__}: {exc}"[:200]) from None
    finally:
        _mysql_close(conn)


def _mysql_close(conn: object) -> None:
    close = getattr(conn, "_force_close", None)  # drop the socket; no QUIT round trip
    if close is not None:
        try:
            close()
        except Exception as exc:  # pragma: no cover - already closed
            del exc


def _mysql_failure(exc: Exception) -> CheckFailed:
    args: tuple[object, ...] = tuple(getattr(exc, "args", ()))
    code = args[0] if args and isinstance(args[0], int) else 0
    text = str(args[1]) if len(args) > 1 else str(exc)
    lowered = text.lower()
    detail = f"({code}) {text}"[:200] if code else text[:200]
    if code in _MYSQL_AUTH_ERRORS:
        return CheckFailed(Reason.AUTH, detail)
    if code in (2003, 2006, 2013) or not code:
        if "timed out" in lowered or "timeout" in lowered:
            return CheckFailed(Reason.TIMEOUT, detail)
        if "refused" in lowered:
            return CheckFailed(Reason.REFUSED, detail)
        if "reset" in lowered:
            return CheckFailed(Reason.RESET, detail)
        if code in (2006, 2013):
            return CheckFailed(Reason.CLOSED, detail)
        if code == 2003:
            return CheckFailed(Reason.UNREACHABLE, detail)
        return CheckFailed(Reason.PROTOCOL, detail)
    return CheckFailed(Reason.BAD_STATUS, detail)


# --------------------------------------------------------------------------- oracle


async def check_oracle(target: CheckTarget) -> Outcome:
    query = _query(target)
    problem = driver_problem(Service.ORACLE)
    if problem is not None:
        raise CheckFailed(Reason.CONFIG, problem)
    import oracledb

    spec = target.spec
    end = time.monotonic() + target.deadline
    dsn = oracledb.makedsn(target.host, target.port, sid=spec.database or None)
    set_phase("connect and log in")
    try:
        conn = await oracledb.connect_async(
            user=spec.login,
            password=spec.passwd,
            dsn=dsn,
            tcp_connect_timeout=max(end - time.monotonic(), 0.01),
        )
    except oracledb.DatabaseError as exc:
        raise _oracle_failure(exc) from None
    try:
        set_phase("running the query")
        cursor = conn.cursor()
        await cursor.execute(query)
        row = await cursor.fetchone()
    except oracledb.DatabaseError as exc:
        raise _oracle_failure(exc) from None
    finally:
        await conn.close()
    if row is None:
        raise _no_rows(query)
    return Outcome.ok(f"{query[:60]!r} returned a row")


def _oracle_failure(exc: Exception) -> CheckFailed:
    text = str(exc)
    auth = any(code in text for code in ("ORA-01017", "ORA-28000", "ORA-01045"))
    return CheckFailed(Reason.AUTH if auth else Reason.BAD_STATUS, text[:200])
