"""The engine's unit of health: one real server in one virtual service (a Member).

Owns what is known about each member (its health, last outcome, when it last changed) and how
members are derived from a config: their identity (ServiceKey, DestKey), their check
(ProbeKey, shared with identical reals elsewhere) and their policy (failurecount, rise,
fastinterval). Pure: no IO.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ldirectord.checks.base import Outcome, target_for
from ldirectord.config.model import Config, RealServer, VirtualService
from ldirectord.engine.desired import MemberKey, member_key
from ldirectord.engine.scheduler import ProbeKey
from ldirectord.health.machine import Health, Policy


@dataclass(slots=True)
class Member:
    virtual: VirtualService
    real: RealServer
    key: MemberKey
    probe: ProbeKey
    policy: Policy
    health: Health = field(default_factory=Health)
    last_outcome: Outcome | None = None
    last_change: float | None = None
    fresh_down: bool = False  # first verdict was down: quiesce-add it once (ldirectord start-up)


def policy_for(virtual: VirtualService) -> Policy:
    spec = virtual.check
    return Policy(
        failurecount=spec.failurecount, rise=spec.rise, fast_recheck=bool(spec.fastinterval)
    )


def probe_for(virtual: VirtualService, real: RealServer) -> ProbeKey:
    return ProbeKey.of(target_for(virtual, real), real.port)


def members_of(config: Config) -> dict[MemberKey, Member]:
    members: dict[MemberKey, Member] = {}
    for virtual in config.virtuals:
        policy = policy_for(virtual)
        for real in virtual.reals:
            key = member_key(virtual, real)
            members[key] = Member(virtual, real, key, probe_for(virtual, real), policy)
    return members
