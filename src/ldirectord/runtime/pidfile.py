"""The pid file: ``<rundir>/ldirectord.<name>.pid``, as Perl ldirectord names and validates it.

Owns reading, validating (through ``/proc/<pid>/cmdline``), writing (atomically) and removing
the pid file. Knows nothing about configs or commands. A pid counts as running only when its
``/proc/<pid>/cmdline`` contains ``ldirectord`` (reference §4.3), exactly as ldirectord checks.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

PROC = "/proc"


@dataclass(frozen=True, slots=True)
class PidState:
    path: str
    exists: bool  # the file exists (whatever it holds)
    pid: int | None  # the number in it, if it holds one
    running: bool  # that pid is alive and its cmdline mentions ldirectord

    @property
    def stale(self) -> bool:
        return self.exists and not self.running


def read_pid(path: str) -> tuple[bool, int | None]:
    """(exists, pid): the pid is None when the file is missing, empty or not a number."""
    try:
        with open(path, "rb") as handle:
            text = handle.read(64)
    except FileNotFoundError:
        return False, None
    except OSError:
        return True, None
    first = text.split(b"\n", 1)[0].strip()
    if not first.isdigit():
        return True, None
    return True, int(first)


def cmdline(pid: int, proc: str = PROC) -> bytes | None:
    """The raw ``/proc/<pid>/cmdline`` (NUL separated), or None when the process is gone."""
    try:
        with open(f"{proc}/{pid}/cmdline", "rb") as handle:
            return handle.read()
    except OSError:
        return None


def is_ldirectord(pid: int, proc: str = PROC) -> bool:
    raw = cmdline(pid, proc)
    if not raw:  # gone, or a zombie (empty cmdline)
        return False
    return b"ldirectord" in raw


def probe(path: str, proc: str = PROC) -> PidState:
    exists, pid = read_pid(path)
    running = pid is not None and pid > 0 and is_ldirectord(pid, proc)
    return PidState(path, exists, pid, running)


def write_pid(path: str, pid: int | None = None) -> None:
    """Write ``<pid>\n`` atomically (temp file in the same directory, fsync, rename)."""
    from ldirectord.runtime.pulse import write_atomic

    write_atomic(path, f"{os.getpid() if pid is None else pid}\n".encode())


def remove_if_ours(path: str, pid: int | None = None) -> bool:
    """Remove the pid file only when it still names ``pid`` (never another daemon's file)."""
    pid = os.getpid() if pid is None else pid
    _, current = read_pid(path)
    if current != pid:
        return False
    try:
        os.unlink(path)
    except OSError:
        return False
    return True


def process_gone(pid: int, proc: str = PROC) -> bool:
    """True once ``pid`` no longer exists as a live process (a zombie counts as gone)."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return True
    # state is the field after the parenthesised comm, which may itself hold spaces
    tail = stat.rsplit(b")", 1)[-1].split()
    return bool(tail) and tail[0] in (b"Z", b"X")


def instance_lock(path: str) -> socket.socket | None:
    """Hold the right to be the daemon of pid file ``path`` for this process's lifetime.

    An abstract unix socket named after the pid file's absolute path: binding it is
    exclusive and the kernel releases it when the process dies, so two racing ``start``s
    cannot both become the daemon, and no lock file is left behind. Returns the socket
    (keep it open), or None when another live process holds it.
    """
    name = b"\0ldirectord-pid:" + os.path.abspath(path).encode()[-90:]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        sock.bind(name)
    except OSError:
        sock.close()
        return None
    return sock
