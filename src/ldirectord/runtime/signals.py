"""Signals become queued commands; the handlers do nothing else (style principle 8).

HUP means reload; TERM, INT and QUIT mean stop (ldirectord's terminating signals that can be
caught sanely); PIPE is ignored. A second stop signal while stopping is harmless (the command is
queued again and ignored), unlike ldirectord's "Exit Handler Repeatedly Called".
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class Command(StrEnum):
    RELOAD = "reload"
    STOP = "stop"
    CHECK_CONFIG = "check-config"  # autoreload poll found a change (internal)


@dataclass(frozen=True, slots=True)
class Request:
    command: Command
    reason: str  # e.g. "SIGHUP", "SIGTERM", "autoreload"


RELOAD_SIGNALS = (signal.SIGHUP,)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


def install(loop: asyncio.AbstractEventLoop, submit: Callable[[Request], None]) -> None:
    """Route the signals to ``submit`` (which must only queue the request)."""
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    for sig in RELOAD_SIGNALS:
        loop.add_signal_handler(sig, submit, Request(Command.RELOAD, sig.name))
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, submit, Request(Command.STOP, sig.name))


def uninstall(loop: asyncio.AbstractEventLoop) -> None:
    for sig in (*RELOAD_SIGNALS, *STOP_SIGNALS):
        loop.remove_signal_handler(sig)
