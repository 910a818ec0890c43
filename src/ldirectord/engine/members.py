"""The engine's unit of health: one real server in one virtual service (a Member).

Owns what is known about each member (its health, last outcome, when it last changed) and how
members are derived from a config: their identity (ServiceKey, DestKey), their check
(ProbeKey, shared with identical reals elsewhere) and their policy (failurecount, rise,
fastinterval). Pure: no IO.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

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


def members_of(
    config: Config, previous: Mapping[MemberKey, Member] | None = None
) -> dict[MemberKey, Member]:
    """The members of config. With ``previous`` (a reload), a real whose own line and whose
    virtual's other settings are unchanged keeps its old ProbeKey object: building and
    hashing a check target is most of this function's cost at 10,000 reals."""
    members: dict[MemberKey, Member] = {}
    same: dict[tuple[int, int], bool] = {}  # (id old virtual, id new virtual) -> same checks
    for virtual in config.virtuals:
        policy = policy_for(virtual)
        bare: VirtualService | None = None
        for real in virtual.reals:
            key = member_key(virtual, real)
            old = previous.get(key) if previous is not None else None
            probe = None
            if old is not None and old.real == real:
                pair = (id(old.virtual), id(virtual))
                if pair not in same:
                    bare = bare or replace(virtual, reals=())
                    same[pair] = replace(old.virtual, reals=()) == bare
                if same[pair]:
                    probe = old.probe
            if probe is None:
                probe = probe_for(virtual, real)
            members[key] = Member(virtual, real, key, probe, policy)
    return members
