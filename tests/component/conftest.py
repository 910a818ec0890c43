"""Fixtures for the component tests of the checks: a real nginx on loopback (session-wide)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.nginx import Nginx, start_nginx


@pytest.fixture(scope="session")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    with start_nginx(tmp_path_factory.mktemp("nginx")) as running:
        yield running
