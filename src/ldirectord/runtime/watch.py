"""The config file watch behind ``autoreload`` and ``callback`` (ldirectord's check_cfgfile).

Owns noticing that the config file changed: a cheap stat (mtime, size, inode) on every poll,
the content hash only once the file has settled, and a report only when the content differs
from the last one seen. A file that vanished, became a directory or cannot be read is logged
once (until it is readable again) and never raises. Also runs ``callback`` under a deadline.
Knows nothing about reloading itself.

Settled means: the same (mtime_ns, size, inode) on two polls in a row, and an mtime at least
``settle`` seconds old. An editor that truncates and rewrites the file (or ``cat > file``)
shows an empty file or a prefix for a moment, and such a prefix may well be a valid config
with fewer virtuals: reloading it would purge them. A file caught mid-write is seen changing
again on the next poll (or is too young), so it is never taken. An mtime in the future (a
clock step, copied timestamps) says nothing about age: then the file must have stayed the same
for ``settle`` seconds of our own watching. The price is one more poll (checkinterval) of
autoreload latency; an explicit reload (HUP) is not affected.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Callable

from ldirectord.procs import run_process

STAT_DEADLINE = 10.0
CALLBACK_TIMEOUT = 30.0
SETTLE = 1.0  # seconds a changed file must have kept its mtime before it is taken

Key = tuple[int, int, int]  # (mtime_ns, size, inode)


def file_key(path: str) -> Key:
    st = os.stat(path)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def file_digest(path: str) -> tuple[Key, str | None]:
    """((mtime_ns, size, inode), sha256) of the config; the hash is None when unreadable."""
    key = file_key(path)
    try:
        with open(path, "rb") as handle:
            return key, hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return key, None


def digest_if_unchanged(path: str, key: Key) -> tuple[Key | None, str | None]:
    """The file's sha256 if it is still ``key`` before and after the read: (None, digest);
    (its new key, None) when it moved meanwhile; (None, None) when it cannot be read."""
    now, digest = file_digest(path)
    if now != key:
        return now, None
    if digest is not None and (after := file_key(path)) != key:  # written while we read
        return after, None
    return None, digest


class ConfigWatcher:
    def __init__(
        self,
        path: str,
        log: Callable[[str], None],
        *,
        settle: float = SETTLE,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.settle = settle
        self._log = log
        self._wall = wall
        self._mono = mono
        self._key: Key | None = None  # the file as last taken (running config, or reported)
        self._hash: str | None = None
        #: a changed key seen on the previous poll, and when we first saw it (monotonic)
        self._candidate: Key | None = None
        self._candidate_since = 0.0
        self._warned = False

    def remember(self) -> None:
        """Take the file as it is now as the running config's (after a start or reload)."""
        self._candidate = None
        try:
            self._key, self._hash = file_digest(self.path)
        except OSError:
            self._key, self._hash = None, None

    async def changed(self) -> bool:
        """True once per change of the file's content, once the file has settled (see the
        module's docstring): stat on every poll, hash only a settled file."""
        try:
            key = await asyncio.wait_for(asyncio.to_thread(file_key, self.path), STAT_DEADLINE)
        except (OSError, TimeoutError) as exc:
            self._candidate = None
            self._warn(f"can not open file {self.path} for checking: {exc}")
            return False
        if key == self._key:
            self._candidate = None
            return False
        if not self._settled(key):
            return False
        try:
            moved, digest = await asyncio.wait_for(
                asyncio.to_thread(digest_if_unchanged, self.path, key), STAT_DEADLINE
            )
        except (OSError, TimeoutError) as exc:
            self._candidate = None
            self._warn(f"can not open file {self.path} for checking: {exc}")
            return False
        if moved is not None:  # written again since the stat: it has to settle anew
            self._candidate, self._candidate_since = moved, self._mono()
            return False
        self._candidate = None
        self._key = key  # taken: an unreadable file is logged once, not re-read every poll
        if digest is None:
            self._warn(f"can not open file {self.path} for checking")
            return False
        self._warned = False
        old, self._hash = self._hash, digest
        return old is not None and old != digest

    def _settled(self, key: Key) -> bool:
        """Same key as on the previous poll, and old enough; else remember it as candidate."""
        now = self._mono()
        if key != self._candidate:
            self._candidate, self._candidate_since = key, now
            return False
        age = self._wall() - key[0] / 1e9
        if age < 0:  # mtime in the future: judge by how long we have seen it unchanged
            age = now - self._candidate_since
        return age >= self.settle

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            self._log(message)


async def run_callback(callback: str | None, config_path: str, log: Callable[[str], None]) -> None:
    """``<callback> <configfile>`` through /bin/sh, as ldirectord, but with a deadline."""
    if not callback or not os.access(callback, os.X_OK):
        return
    # As Perl system(): what the callback starts in the background may outlive it.
    result = await run_process(
        f"{callback} {config_path}", CALLBACK_TIMEOUT, shell=True, kill_group_on_exit=False
    )
    if not result.ok:
        why = "timed out and was killed" if result.timed_out else f"exited {result.returncode}"
        log(f"system({callback} {config_path}) failed: {why}")
