"""The config file watch behind ``autoreload`` and ``callback`` (ldirectord's check_cfgfile).

Owns noticing that the config file changed: a cheap stat (mtime, size, inode) on every poll,
the content hash only when that moved, and a report only when the content differs from the
last one seen. A file that vanished, became a directory or cannot be read is logged once (until
it is readable again) and never raises. Also runs ``callback`` under a deadline. Knows nothing
about reloading itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable

from ldirectord.procs import run_process

STAT_DEADLINE = 10.0
CALLBACK_TIMEOUT = 30.0


def file_digest(path: str) -> tuple[tuple[int, int, int], str | None]:
    """((mtime_ns, size, inode), sha256) of the config; the hash is None when unreadable."""
    st = os.stat(path)
    key = (st.st_mtime_ns, st.st_size, st.st_ino)
    try:
        with open(path, "rb") as handle:
            return key, hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return key, None


class ConfigWatcher:
    def __init__(self, path: str, log: Callable[[str], None]) -> None:
        self.path = path
        self._log = log
        self._key: tuple[int, int, int] | None = None
        self._hash: str | None = None
        self._warned = False

    def remember(self) -> None:
        """Take the file as it is now as the running config's (after a start or reload)."""
        try:
            self._key, self._hash = file_digest(self.path)
        except OSError:
            self._key, self._hash = None, None

    async def changed(self) -> bool:
        """True once per change of the file's content (stat first, hash only when it moved)."""
        try:
            key, digest = await asyncio.wait_for(
                asyncio.to_thread(file_digest, self.path), STAT_DEADLINE
            )
        except (OSError, TimeoutError) as exc:
            self._warn(f"can not open file {self.path} for checking: {exc}")
            return False
        if key == self._key:
            return False
        self._key = key
        if digest is None:
            self._warn(f"can not open file {self.path} for checking")
            return False
        self._warned = False
        old, self._hash = self._hash, digest
        return old is not None and old != digest

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
