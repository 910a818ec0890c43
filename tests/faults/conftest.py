"""Fixtures of the fault suite: a daemon per test (killed at teardown if a test left it running),
a session-wide MariaDB (the healthy SQL real behind the fleet's proxies) and a TLS certificate.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.harness import Daemon, kill_daemon, make_cert
from tests.helpers.servers import Running, start_mariadb


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(tmp_path)
    try:
        yield d
    finally:
        kill_daemon(d)


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with start_mariadb(tmp_path_factory.mktemp("faults-mariadb")) as server:
        yield server


@pytest.fixture(scope="session")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_cert(tmp_path_factory.mktemp("faults-cert"))
