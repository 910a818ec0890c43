"""systemd's notify protocol, in-tree (no dependency): READY, STATUS, RELOADING, STOPPING, WATCHDOG.

Owns the datagram socket named by ``NOTIFY_SOCKET`` and the watchdog interval named by
``WATCHDOG_USEC``/``WATCHDOG_PID``. Sending never blocks and never raises: a notify message that
cannot be delivered is dropped (systemd then notices by itself). The daemon calls ``watchdog()``
from the same place that beats the pulse (the event loop), never from a side thread, so a frozen
loop stops both.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping


class Notifier:
    """A connection to the service manager, or a silent no-op when there is none."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.address: str | bytes | None = None
        addr = env.get("NOTIFY_SOCKET", "")
        if addr.startswith("@"):
            self.address = b"\0" + addr[1:].encode()
        elif addr.startswith("/"):
            self.address = addr
        self.watchdog_usec = 0
        usec = env.get("WATCHDOG_USEC", "")
        wpid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and (not wpid or wpid == str(os.getpid())):
            self.watchdog_usec = int(usec)
        self._sock: socket.socket | None = None
        self.sent = 0
        self.failed = 0
        self.last_error: str | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between pings systemd expects at the latest (None when no watchdog)."""
        return self.watchdog_usec / 1e6 if self.watchdog_usec else None

    def send(self, message: str) -> bool:
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(message.encode(), self.address)
        except OSError as exc:
            self.failed += 1
            self.last_error = str(exc)
            return False
        self.sent += 1
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send(_lines("READY=1", status))

    def reloading(self) -> bool:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send(f"RELOADING=1\nMONOTONIC_USEC={usec}")

    def stopping(self, status: str | None = None) -> bool:
        return self.send(_lines("STOPPING=1", status))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        """Ping the watchdog, when systemd asked for one (WatchdogSec=)."""
        return bool(self.watchdog_usec) and self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _lines(first: str, status: str | None) -> str:
    return first if status is None else f"{first}\nSTATUS={_one_line(status)}"


def scrub_environment(env: dict[str, str] | None = None) -> None:
    """Remove the notify variables so children (checks, callbacks) do not inherit them."""
    target = os.environ if env is None else env
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        target.pop(key, None)
