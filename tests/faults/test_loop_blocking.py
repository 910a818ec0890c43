"""Nothing a check does blocks the event loop: found by the 500-real run's CPU profile.

PyMySQL (1.2, pinned) defaults to "TLS preferred" and builds a fresh ``ssl`` default context,
loading the system CA store, in ``Connection.__init__``: about 20 ms of CPU per check, which
the mysql check spends on the event loop (it builds the connection there, ``defer_connect``,
so it can shut the socket down on abandon). Twenty MySQL reals at checkinterval 1 kept the loop
busy ~40 % of the time and cost the daemon 0.4 of a core (measured: 18 ms CPU per check).
"""

from __future__ import annotations

import ssl
import threading

import pytest

from ldirectord.checks import run
from tests.helpers.servers import PASSWORD, USER, Running, target

pytestmark = pytest.mark.faults


@pytest.mark.asyncio
async def test_mysql_check_builds_no_tls_context_on_the_loop(
    mariadb: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop_thread = threading.get_ident()
    on_loop: list[str] = []
    real = ssl.create_default_context

    def spy(*args: object, **kwargs: object) -> ssl.SSLContext:
        if threading.get_ident() == loop_thread:
            on_loop.append("create_default_context")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl, "create_default_context", spy)
    check = target(
        "mysql",
        mariadb.port("mysql"),
        request="/SELECT v FROM t",
        timeout=5.0,
        login=USER,
        passwd=PASSWORD,
        database="ldtest",
    )
    for _ in range(3):
        outcome = await run(check)
        assert outcome.up, outcome
    assert not on_loop, f"{len(on_loop)} TLS context(s) built on the event loop in 3 checks"
