"""The daemon's log, in Perl ldirectord's formats (reference §4.6).

Owns where a log line goes and how it looks:
- ``-d``: the message on stderr (with ldirectord's ``DEBUG2:`` copy first), debug lines too;
- ``supervised=yes``: ``[<localtime>] <message>`` on stdout;
- ``logfile="/path"``: ``[<localtime>|<CFGNAME>|<pid>] <message>``, the file opened and closed
  for every message (logrotate needs no signal); on failure the message goes to stderr;
- otherwise syslog: ident ``ldirectord``, option pid, the logfile value as facility, priority
  info — sent by our own non-blocking datagram client to ``/dev/log`` (a wedged syslogd drops
  lines instead of freezing the daemon).

Thread-safe (the stall detector logs from its thread). Knows nothing about configs beyond the
three values it is given.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from enum import StrEnum
from typing import TextIO

SYSLOG_SOCKET = "/dev/log"
FACILITIES = {
    "kern": 0,
    "user": 1,
    "mail": 2,
    "daemon": 3,
    "auth": 4,
    "syslog": 5,
    "lpr": 6,
    "news": 7,
    "uucp": 8,
    "cron": 9,
    "authpriv": 10,
    "ftp": 11,
    **{f"local{i}": 16 + i for i in range(8)},
}
PRIORITY_INFO = 6
PRIORITY_ERR = 3


class LogMode(StrEnum):
    DEBUG = "debug"
    SUPERVISED = "supervised"
    FILE = "file"
    SYSLOG = "syslog"


def choose_mode(*, debug: bool, supervised: bool, logfile: str) -> LogMode:
    if debug:
        return LogMode.DEBUG
    if supervised:
        return LogMode.SUPERVISED
    if logfile.startswith("/"):
        return LogMode.FILE
    return LogMode.SYSLOG


def ctime_now(now: float | None = None) -> str:
    """Perl's ``scalar localtime``: ``Wed Nov 25 23:35:05 2026``."""
    return time.asctime(time.localtime(now))


class Logger:
    def __init__(
        self,
        mode: LogMode,
        *,
        cfgname: str = "ldirectord",
        logfile: str = "/var/log/ldirectord.log",
        debug_level: int = 0,
        syslog_socket: str = SYSLOG_SOCKET,
    ) -> None:
        self.mode = mode
        self.cfgname = cfgname
        self.logfile = logfile
        self.debug_level = debug_level if mode is LogMode.DEBUG else 0
        self.syslog_socket = syslog_socket
        self.facility = FACILITIES.get(logfile.strip().lower(), FACILITIES["daemon"])
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self.dropped = 0

    def reconfigure(self, *, logfile: str, supervised: bool) -> None:
        """A reload may change logfile= (never leaves -d mode)."""
        with self._lock:
            if self.mode is not LogMode.DEBUG:
                self.mode = choose_mode(debug=False, supervised=supervised, logfile=logfile)
            self.logfile = logfile
            self.facility = FACILITIES.get(logfile.strip().lower(), FACILITIES["daemon"])

    def test_open(self) -> str | None:
        """ldirectord's ld_openlog: for a log file, open and close it once; return the error."""
        if self.mode is not LogMode.FILE:
            return None
        try:
            with open(self.logfile, "a", encoding="utf-8"):
                pass
        except OSError as exc:
            return f"can not open log file {self.logfile}: {exc.strerror or exc}"
        return None

    def log(self, message: str, *, error: bool = False) -> None:
        message = message.rstrip("\n")
        with self._lock:
            if self.mode is LogMode.DEBUG:
                _write(sys.stderr, f"DEBUG2: {message}\n")
                _write(sys.stderr, f"{message}\n")
            elif self.mode is LogMode.SUPERVISED:
                _write(sys.stdout, f"[{ctime_now()}] {message}\n")
            elif self.mode is LogMode.FILE:
                self._to_file(message)
            else:
                self._to_syslog(message, PRIORITY_ERR if error else PRIORITY_INFO)

    def debug(self, level: int, message: str) -> None:
        if self.debug_level >= level:
            with self._lock:
                _write(sys.stderr, f"DEBUG{level}: {message.rstrip()}\n")

    def _to_file(self, message: str) -> None:
        line = f"[{ctime_now()}|{self.cfgname}|{os.getpid()}] {message}\n"
        try:
            with open(self.logfile, "a", encoding="utf-8", errors="replace") as handle:
                handle.write(line)
        except OSError:
            _write(sys.stderr, f"{message}\n")

    def _to_syslog(self, message: str, priority: int) -> None:
        stamp = time.strftime("%b %d %H:%M:%S", time.localtime())
        if stamp[4] == "0":  # RFC 3164 pads the day with a space
            stamp = f"{stamp[:4]} {stamp[5:]}"
        packet = f"<{self.facility * 8 + priority}>{stamp} ldirectord[{os.getpid()}]: {message}"
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
                self._sock.connect(self.syslog_socket)
            self._sock.send(packet.encode("utf-8", "replace")[:8192])
        except OSError:
            self.dropped += 1
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def _write(stream: TextIO | None, text: str) -> None:
    if stream is None:
        return
    try:
        stream.write(text)
        stream.flush()
    except (OSError, ValueError):
        pass
