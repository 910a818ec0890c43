"""What the engine shows the outside (pulse, state file, ``status``): plain frozen records.

Owns the shape of Director.snapshot(); no logic. Times are the Director's clock (monotonic by
default): the runtime converts them to wall time.
"""

from __future__ import annotations

from dataclasses import dataclass

from ldirectord.checks.base import Outcome
from ldirectord.config.model import DaemonStatus


@dataclass(frozen=True, slots=True)
class RealSnapshot:
    address: str
    port: int  # as configured
    weight: int | None  # weight in the kernel, None when absent
    up: bool
    state: str  # health.machine.State value
    last_outcome: Outcome | None
    last_change: float | None  # clock() time of the last up/down change


@dataclass(frozen=True, slots=True)
class VirtualSnapshot:
    name: str  # VirtualService.name: ip:port, [ip6]:port or the fwmark
    protocol: str
    reals_up: int
    reals_total: int
    fallback_active: bool
    reals: tuple[RealSnapshot, ...]


@dataclass(frozen=True, slots=True)
class DirectorSnapshot:
    status: DaemonStatus
    checks_completed: int
    virtuals: tuple[VirtualSnapshot, ...]
