"""What the engine tells the rest of the daemon: the EventSink protocol and a simple sink.

Owns the boundary between the engine and the runtime: log lines in ldirectord's wording, one
call per completed check (the daemon beats the pulse there), one call per real server that
changed state (monitorfile, e-mail alerts). Sinks must be quick and must not raise; the engine
catches and counts anything they raise anyway, so a broken sink cannot stop checking.

fallbackcommand is not an event: the engine runs it itself (engine/director.py), through
ldirectord.procs with a deadline, once per edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ldirectord.checks.base import CheckTarget, Outcome
from ldirectord.config.model import RealServer, VirtualService


class EventSink(Protocol):
    def log(self, message: str) -> None:
        """One line in ldirectord's wording ("Added real server: …")."""
        ...

    def check_done(self, target: CheckTarget, outcome: Outcome) -> None:
        """Every completed check (also ``on`` checks and maintenance verdicts)."""
        ...

    def real_changed(
        self,
        virtual: VirtualService,
        real: RealServer,
        up: bool,
        message: str,
        outcome: Outcome | None,
    ) -> None:
        """A real server of ``virtual`` went up or down (``message``: the ldirectord line)."""
        ...


@dataclass
class LoggingEventSink:
    """Keeps everything in lists (tests) and optionally echoes log lines to a callable."""

    echo: bool = False
    lines: list[str] = field(default_factory=list)
    checks: list[tuple[CheckTarget, Outcome]] = field(default_factory=list)
    changes: list[tuple[str, str, bool, str]] = field(default_factory=list)
    keep_checks: bool = True

    def log(self, message: str) -> None:
        self.lines.append(message)
        if self.echo:
            print(message, flush=True)

    def check_done(self, target: CheckTarget, outcome: Outcome) -> None:
        if self.keep_checks:
            self.checks.append((target, outcome))

    def real_changed(
        self,
        virtual: VirtualService,
        real: RealServer,
        up: bool,
        message: str,
        outcome: Outcome | None,
    ) -> None:
        self.changes.append((virtual.name, f"{real.address}:{real.port}", up, message))
