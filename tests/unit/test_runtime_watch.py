"""autoreload's watch takes only a settled config file: the same (mtime, size, inode) on two
polls in a row and an mtime at least ``settle`` old. Clocks are injected (no sleeping); the
file's mtime is set with os.utime where a test needs it old."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ldirectord.runtime.watch import ConfigWatcher

GOOD = "checkinterval=1\nvirtual=10.0.0.1:80\n\treal=10.0.0.2:80 gate\n"


class Clock:
    def __init__(self) -> None:
        self.wall = 1_000_000.0
        self.mono = 100.0

    def tick(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


def _lines() -> list[str]:
    return []


def _write(path: Path, text: str, mtime: float) -> None:
    with open(path, "w") as out:  # O_TRUNC, same inode, as editors and `cat >` do
        out.write(text)
    os.utime(path, (mtime, mtime))


def _watcher(path: Path, clock: Clock, logged: list[str]) -> ConfigWatcher:
    watcher = ConfigWatcher(
        str(path), logged.append, settle=1.0, wall=lambda: clock.wall, mono=lambda: clock.mono
    )
    watcher.remember()
    return watcher


@pytest.mark.asyncio
async def test_a_change_is_taken_on_the_second_poll_once_old_enough(tmp_path: Path) -> None:
    cfg, clock, logged = tmp_path / "x.cf", Clock(), _lines()
    _write(cfg, GOOD, clock.wall - 100)
    watcher = _watcher(cfg, clock, logged)
    assert not await watcher.changed()  # nothing changed
    _write(cfg, GOOD.replace("gate", "masq"), clock.wall - 0.1)  # just written
    assert not await watcher.changed()  # first sight
    clock.tick(0.5)
    assert not await watcher.changed()  # same key, but the mtime is only 0.6 s old
    clock.tick(0.5)
    assert await watcher.changed()  # same key, 1.1 s old: taken
    clock.tick(1.0)
    assert not await watcher.changed()  # once per change
    assert not logged


@pytest.mark.asyncio
async def test_a_file_caught_mid_write_is_never_taken(tmp_path: Path) -> None:
    cfg, clock, logged = tmp_path / "x.cf", Clock(), _lines()
    _write(cfg, GOOD, clock.wall - 100)
    watcher = _watcher(cfg, clock, logged)
    for cut in ("", GOOD[: GOOD.index("virtual=")], GOOD[:-10]):
        _write(cfg, cut, clock.wall)  # a poll falls on the truncated or half-written file
        clock.tick(1.0)
        assert not await watcher.changed()
        clock.tick(0.2)
        _write(cfg, GOOD, clock.wall)  # the editor finishes: the same text, byte for byte
        clock.tick(1.0)
        assert not await watcher.changed()  # a new key: first sight again
    clock.tick(1.0)
    assert not await watcher.changed()  # settled, but the content is the running one
    assert not logged


@pytest.mark.asyncio
async def test_an_old_mtime_alone_is_not_enough(tmp_path: Path) -> None:
    """`cp -p` or a restore keeps an old mtime: the file must still look the same twice."""
    cfg, clock, logged = tmp_path / "x.cf", Clock(), _lines()
    _write(cfg, GOOD, clock.wall - 100)
    watcher = _watcher(cfg, clock, logged)
    _write(cfg, GOOD.replace("gate", "ipip"), clock.wall - 50)
    assert not await watcher.changed()
    clock.tick(1.0)
    assert await watcher.changed()


@pytest.mark.asyncio
async def test_a_future_mtime_is_judged_by_how_long_we_watched(tmp_path: Path) -> None:
    cfg, clock, logged = tmp_path / "x.cf", Clock(), _lines()
    _write(cfg, GOOD, clock.wall - 100)
    watcher = _watcher(cfg, clock, logged)
    _write(cfg, GOOD.replace("gate", "masq"), clock.wall + 3600)  # a clock step, copied times
    assert not await watcher.changed()
    clock.tick(0.5)
    assert not await watcher.changed()
    clock.tick(0.6)
    assert await watcher.changed()  # unchanged for 1.1 s of our watching: taken, not stuck


@pytest.mark.asyncio
async def test_vanished_and_directory_are_logged_once_and_recovered(tmp_path: Path) -> None:
    cfg, clock, logged = tmp_path / "x.cf", Clock(), _lines()
    _write(cfg, GOOD, clock.wall - 100)
    watcher = _watcher(cfg, clock, logged)
    cfg.unlink()
    for _ in range(3):
        clock.tick(1.0)
        assert not await watcher.changed()
    assert len(logged) == 1 and "can not open file" in logged[0]
    cfg.mkdir()
    os.utime(cfg, (clock.wall - 10, clock.wall - 10))
    for _ in range(3):
        clock.tick(1.0)
        assert not await watcher.changed()
    assert len(logged) == 1  # still the same episode
    cfg.rmdir()
    _write(cfg, GOOD.replace("gate", "masq"), clock.wall - 10)
    assert not await watcher.changed()
    clock.tick(1.0)
    assert await watcher.changed()
