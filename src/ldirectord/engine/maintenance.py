"""The maintenance directory (reference §2.6): a file named after a real server forces it down.

Owns the lookup ldirectord does before every check: in ``maintenancedir``, the names
``IP:PORT``, ``IP``, ``FQDN:PORT``, ``FQDN``, ``SHORT:PORT``, ``SHORT`` (IPv6 addresses in
brackets; SHORT = the first label, only when the FQDN starts with a lowercase letter).

ldirectord does a reverse DNS lookup on every check of every real, with no timeout; a slow
resolver stops its whole loop. Here the lookup is bounded:
- the directory listing is cached and re-read only when the directory's mtime changes;
- no DNS at all while the directory is empty or holds only address-named files;
- otherwise one lookup per address at a time, in a daemon thread (at most ``threads`` at
  once, never joined, so a stuck resolver cannot hold up exit either), cached for
  ``ttl`` seconds (failures too); a check waits at most ``resolve_timeout`` for it, then goes
  on with the address-based names (and a stale name, if one is cached); the lookup finishes in
  the background and serves later checks. When the pool is busy, no new lookup is queued.

Knows nothing about health or the kernel.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import socket
import threading
import time
from collections.abc import Callable

from ldirectord.config.model import Family

_SHORT = re.compile(r"^([a-z][a-z0-9\-]+)\.")

Resolver = Callable[[str], str | None]


def reverse_lookup(address: str) -> str | None:
    """getnameinfo with NI_NAMEREQD, as ldirectord's ld_gethostbyaddr (blocking: run in a thread)."""
    try:
        host, _ = socket.getnameinfo((address, 0), socket.NI_NAMEREQD)
    except (OSError, UnicodeError):
        return None
    return host or None


def _is_address_name(name: str) -> bool:
    host = name
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class MaintenanceDir:
    def __init__(
        self,
        path: str,
        *,
        resolve_timeout: float = 0.5,
        ttl: float = 60.0,
        resolver: Resolver = reverse_lookup,
        threads: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.resolve_timeout = resolve_timeout
        self.ttl = ttl
        self._resolver = resolver
        self._threads = threads
        self._clock = clock
        self._mtime: int | None = None
        self._names: frozenset[str] = frozenset()
        self._only_addresses = True
        self._cache: dict[str, tuple[float, str | None]] = {}
        self._inflight: dict[str, asyncio.Future[str | None]] = {}
        self.lookups_timed_out = 0

    def listing(self) -> frozenset[str]:
        """The directory's file names (re-read only when its mtime moved)."""
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except OSError:
            self._mtime, self._names, self._only_addresses = None, frozenset(), True
            return self._names
        if mtime != self._mtime:
            try:
                names = frozenset(os.listdir(self.path))
            except OSError:
                names = frozenset()
            self._mtime, self._names = mtime, names
            self._only_addresses = all(_is_address_name(n) for n in names)
        return self._names

    async def match(self, address: str, port: int, family: Family) -> str | None:
        """The maintenance file that puts this real in maintenance, or None."""
        names = self.listing()
        if not names:
            return None
        host = f"[{address}]" if family is Family.INET6 else address
        for candidate in (f"{host}:{port}", host):
            if candidate in names:
                return candidate
        if self._only_addresses:
            return None
        fqdn = await self._name_of(address)
        if not fqdn:
            return None
        candidates = [f"{fqdn}:{port}", fqdn]
        short = _SHORT.match(fqdn)
        if short:
            candidates += [f"{short.group(1)}:{port}", short.group(1)]
        for candidate in candidates:
            if candidate in names:
                return candidate
        return None

    async def _name_of(self, address: str) -> str | None:
        now = self._clock()
        cached = self._cache.get(address)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        stale = cached[1] if cached is not None else None
        future = self._inflight.get(address)
        if future is None:
            if len(self._inflight) >= self._threads:
                return stale  # the pool is busy (a slow resolver): do not queue more
            future = self._start_lookup(address)
        try:
            async with asyncio.timeout(self.resolve_timeout):
                return await asyncio.shield(future)
        except TimeoutError:
            self.lookups_timed_out += 1
            return stale

    def _start_lookup(self, address: str) -> asyncio.Future[str | None]:
        """Resolve in a daemon thread (never joined: a stuck resolver cannot hold up exit)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str | None] = loop.create_future()
        self._inflight[address] = future

        def settle(name: str | None) -> None:
            self._inflight.pop(address, None)
            self._cache[address] = (self._clock(), name)
            if not future.done():
                future.set_result(name)

        def work() -> None:
            try:
                name = self._resolver(address)
            except Exception:
                name = None
            with contextlib.suppress(RuntimeError):  # the loop may be closed by now
                loop.call_soon_threadsafe(settle, name)

        threading.Thread(target=work, name="ld-maint-dns", daemon=True).start()
        return future

    def close(self) -> None:
        """Forget lookups in flight (their threads end on their own)."""
        self._inflight.clear()
