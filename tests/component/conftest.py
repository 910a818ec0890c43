"""Fixtures for the component tests of the checks: a real nginx on loopback (session-wide)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.nginx import Nginx, start_nginx


@pytest.fixture(scope="session")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    with start_nginx(tmp_path_factory.mktemp("nginx")) as running:
        yield running


@pytest.fixture
def rundir(tmp_path: Path) -> Iterator[Path]:
    """A run directory for the daemon's pid, pulse and state files; a daemon left running in
    it is killed at teardown."""
    from tests.component.test_daemon_support import kill_pidfile

    run = tmp_path / "run"
    run.mkdir()
    yield run
    for pid_file in run.glob("*.pid"):
        kill_pidfile(pid_file)
