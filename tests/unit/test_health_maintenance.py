"""engine/maintenance.py: maintenance files force a real down; reverse DNS is bounded."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from ldirectord.config.model import Family
from ldirectord.engine.maintenance import MaintenanceDir

pytestmark = pytest.mark.asyncio


class Resolver:
    def __init__(self, name: str | None, delay: float = 0.0) -> None:
        self.name, self.delay, self.calls = name, delay, 0
        self.release = threading.Event()

    def __call__(self, address: str) -> str | None:
        self.calls += 1
        if self.delay:
            self.release.wait(self.delay)
        return self.name


async def test_missing_or_empty_dir_needs_no_dns(tmp_path: Path) -> None:
    r = Resolver("web1.example.com")
    assert (
        await MaintenanceDir(str(tmp_path / "nope"), resolver=r).match("10.0.0.1", 80, Family.INET)
        is None
    )
    assert (
        await MaintenanceDir(str(tmp_path), resolver=r).match("10.0.0.1", 80, Family.INET) is None
    )
    assert r.calls == 0


async def test_address_files(tmp_path: Path) -> None:
    r = Resolver(None)
    m = MaintenanceDir(str(tmp_path), resolver=r)
    (tmp_path / "10.0.0.1:80").touch()
    assert await m.match("10.0.0.1", 80, Family.INET) == "10.0.0.1:80"
    assert await m.match("10.0.0.1", 443, Family.INET) is None
    (tmp_path / "10.0.0.2").touch()
    assert await m.match("10.0.0.2", 443, Family.INET) == "10.0.0.2"
    (tmp_path / "[2001:db8::2]:80").touch()
    assert await m.match("2001:db8::2", 80, Family.INET6) == "[2001:db8::2]:80"
    assert r.calls == 0  # only address-named files: no reverse lookups at all


async def test_host_names_fqdn_and_short(tmp_path: Path) -> None:
    (tmp_path / "web1").touch()
    m = MaintenanceDir(str(tmp_path), resolver=Resolver("web1.example.com"))
    assert await m.match("10.0.0.1", 80, Family.INET) == "web1"
    (tmp_path / "web1.example.com:80").touch()
    assert await m.match("10.0.0.1", 80, Family.INET) == "web1.example.com:80"


async def test_short_name_only_for_lowercase_fqdn(tmp_path: Path) -> None:
    (tmp_path / "Web1").touch()
    m = MaintenanceDir(str(tmp_path), resolver=Resolver("Web1.example.com"))
    assert await m.match("10.0.0.1", 80, Family.INET) is None


async def test_slow_resolver_is_bounded_and_cached(tmp_path: Path) -> None:
    (tmp_path / "web1").touch()
    r = Resolver("web1.example.com", delay=5.0)
    m = MaintenanceDir(str(tmp_path), resolver=r, resolve_timeout=0.1)
    t0 = time.monotonic()
    assert await m.match("10.0.0.1", 80, Family.INET) is None
    assert time.monotonic() - t0 < 0.1 + 1.0
    assert await m.match("10.0.0.1", 80, Family.INET) is None  # joins the same lookup
    assert r.calls == 1
    r.release.set()
    async with asyncio.timeout(2):
        while await m.match("10.0.0.1", 80, Family.INET) is None:
            await asyncio.sleep(0.02)
    assert m.lookups_timed_out >= 2


async def test_busy_resolver_queues_nothing_more(tmp_path: Path) -> None:
    (tmp_path / "web1").touch()
    r = Resolver("web1.example.com", delay=5.0)
    m = MaintenanceDir(str(tmp_path), resolver=r, resolve_timeout=0.05, threads=2)
    for i in range(5):
        assert await m.match(f"10.0.0.{i}", 80, Family.INET) is None
    assert r.calls == 2
    r.release.set()
    m.close()
