"""The real Environment: host names with a deadline, /etc/services, file checks.

Owns every piece of IO that reading a config needs. IP literals are converted with
AI_NUMERICHOST and never touch the resolver. Other names are looked up together, each in a
daemon thread, under one overall deadline; a lookup still running at the deadline is
abandoned (never awaited) and the name reported as timed out. Nothing is created or
written: an unwritable logfile/monitorfile is detected with access(2) checks only.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache

from ldirectord.config.model import Family
from ldirectord.config.values import digits_value

DEFAULT_DEADLINE = 5.0
MAX_PARALLEL = 16
_FAMILIES = {Family.INET: socket.AF_INET, Family.INET6: socket.AF_INET6}
_DIGITS = re.compile(r"[0-9]+", re.ASCII)


def _first_address(name: str, family: Family, flags: int) -> str | None:
    try:
        infos = socket.getaddrinfo(name, None, _FAMILIES[family], 0, 0, flags)
    except (OSError, UnicodeError, ValueError):
        return None
    for info in infos:
        return str(info[4][0])
    return None


@lru_cache(maxsize=65536)
def numeric_host(name: str, family: Family) -> str | None:
    """The address of an IP literal (glibc's inet_aton forms included), without a lookup."""
    if not name:
        return None
    af = _FAMILIES[family]
    try:  # the strict forms, without a getaddrinfo round trip
        return socket.inet_ntop(af, socket.inet_pton(af, name))
    except (OSError, UnicodeError, ValueError):
        pass
    return _first_address(name, family, socket.AI_NUMERICHOST)


@lru_cache(maxsize=4096)
def service_port(name: str, protocol: str) -> int | None:
    """ld_getservbyname: digits → the number (if < 65536), else getservbyname."""
    if _DIGITS.fullmatch(name):
        value = digits_value(name)
        return value if value < 65536 else None
    try:
        if protocol:
            return socket.getservbyname(name, protocol)
        return socket.getservbyname(name)
    except (OSError, UnicodeError, ValueError):
        return None


@dataclass(slots=True)
class _Lookup:
    name: str
    family: Family
    done: threading.Event = field(default_factory=threading.Event)
    result: str | None = None

    def run(self) -> None:
        try:
            self.result = _first_address(self.name, self.family, 0)
        finally:
            self.done.set()


def resolve_names(
    names: set[tuple[str, Family]], deadline: float
) -> tuple[dict[tuple[str, Family], str | None], set[tuple[str, Family]]]:
    """Resolve every name at most MAX_PARALLEL at a time; returns (results, timed out)."""
    end = time.monotonic() + deadline
    pending = [_Lookup(name, family) for name, family in sorted(names)]
    running: list[_Lookup] = []
    results: dict[tuple[str, Family], str | None] = {}
    timed_out: set[tuple[str, Family]] = set()
    while (pending or running) and time.monotonic() < end:
        while pending and len(running) < MAX_PARALLEL:
            lookup = pending.pop()
            threading.Thread(target=lookup.run, name=f"resolve {lookup.name}", daemon=True).start()
            running.append(lookup)
        running[0].done.wait(max(0.0, min(0.05, end - time.monotonic())))
        for lookup in [x for x in running if x.done.is_set()]:
            running.remove(lookup)
            results[(lookup.name, lookup.family)] = lookup.result
    for lookup in running + pending:
        results[(lookup.name, lookup.family)] = None
        timed_out.add((lookup.name, lookup.family))
    return results, timed_out


def _default_hostname() -> str:
    return os.environ.get("HOSTNAME") or os.uname().nodename


@dataclass(slots=True)
class SystemEnvironment:
    """Environment over the real machine. Names it has not looked up yet are ``pending``."""

    deadline: float = DEFAULT_DEADLINE
    check_files: bool = True
    hostname: str = field(default_factory=_default_hostname)
    resolved: dict[tuple[str, Family], str | None] = field(default_factory=dict)
    timed_out: set[tuple[str, Family]] = field(default_factory=set)
    pending: set[tuple[str, Family]] = field(default_factory=set)

    def host(self, name: str, family: Family) -> str | None:
        numeric = numeric_host(name, family)
        if numeric is not None:
            return numeric
        key = (name, family)
        if key in self.resolved:
            return self.resolved[key]
        if name and len(name) <= 253:
            self.pending.add(key)
        return None

    def host_failure(self, name: str, family: Family) -> str:
        if (name, family) in self.timed_out:
            return f"lookup timed out after {self.deadline:g} s"
        kind = "IPv6" if family is Family.INET6 else "IPv4"
        return f"no {kind} address found"

    def resolve_pending(self) -> bool:
        """Look up every pending name; True when there was something to look up."""
        if not self.pending:
            return False
        results, timed_out = resolve_names(self.pending, self.deadline)
        self.resolved.update(results)
        self.timed_out |= timed_out
        self.pending = set()
        return True

    def port(self, name: str, protocol: str) -> int | None:
        return service_port(name, protocol if protocol in ("tcp", "udp", "") else "fwm")

    def unwritable(self, path: str) -> str | None:
        if not self.check_files:
            return None
        return unwritable(path)

    def is_dir(self, path: str) -> bool:
        return not self.check_files or os.path.isdir(path)


def unwritable(path: str) -> str | None:
    """Why appending to ``path`` would fail, or None; creates nothing."""
    try:
        if not path or "\0" in path:
            return "empty or invalid path"
        if os.path.isdir(path):
            return "Is a directory"
        if os.path.exists(path):
            return None if os.access(path, os.W_OK) else "Permission denied"
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            return "No such file or directory"
        return None if os.access(parent, os.W_OK | os.X_OK) else "Permission denied"
    except (OSError, ValueError) as exc:
        return str(exc)
