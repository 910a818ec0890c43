"""Fixtures for the plugin tests (the helpers they use live in tests/plugin/helpers.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture
def pulse(tmp_path: Path) -> Path:
    """An empty pulse file (the mtime-only pulse), fresh."""
    path = tmp_path / "ldirectord.ldirectord.pulse"
    path.write_bytes(b"")
    return path


@pytest.fixture
def world_dir() -> Iterator[Callable[[], Path]]:
    """A world-traversable temp dir (pytest's tmp_path is mode 700, closed to other users)."""
    made: list[str] = []

    def make() -> Path:
        d = tempfile.mkdtemp(prefix="pulse-plugin-", dir="/tmp")
        os.chmod(d, 0o755)
        made.append(d)
        return Path(d)

    yield make
    for d in made:
        shutil.rmtree(d, ignore_errors=True)
