"""The health state machine of one real server in one virtual service: a table and a pure step.

Owns ldirectord's failure counting (reference §2.3): ``failurecount`` soft failures before a real
goes down, any success resetting the count, forced results (maintenance files, start-up seeding)
bypassing the counters; plus our two extensions, off by default: ``rise`` (successes in a row
before a down real comes back) and a fast re-check after a failed check (the effect
``RecheckSoon``, honoured by the scheduler when ``fastinterval`` is set).

It knows nothing about the kernel table, quiescent/delete, fallback servers or time: those are
decided by engine/desired.py from the states this module produces. Pure: no IO, no asyncio.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class State(StrEnum):
    UNKNOWN = "unknown"  # no verdict yet (start-up, a new real): the kernel entry is left alone
    UP = "up"
    FAILING = "failing"  # still up, with 0 < fails < failurecount soft failures
    DOWN = "down"
    RISING = "rising"  # still down, with 0 < rises < rise successes (extension)


class Event(StrEnum):
    UP = "up"  # a check succeeded
    DOWN = "down"  # a check failed
    FORCE_UP = "force_up"  # bypasses the counters (start-up: a real found serving in the kernel)
    FORCE_DOWN = "force_down"  # bypasses the counters (maintenance file)


#: States in which the real serves traffic (its kernel weight is the configured one).
SERVING: frozenset[State] = frozenset({State.UP, State.FAILING})


@dataclass(frozen=True, slots=True)
class Health:
    state: State = State.UNKNOWN
    fails: int = 0  # consecutive failed checks while up (ldirectord's failcount)
    rises: int = 0  # consecutive successes while down (extension)

    @property
    def up(self) -> bool:
        return self.state in SERVING


@dataclass(frozen=True, slots=True)
class Policy:
    failurecount: int = 1
    rise: int = 1  # 1 = ldirectord: the first success puts a down real back
    fast_recheck: bool = False  # emit RecheckSoon after a failed check


# --- effects: data for the caller to act on, in the order given ------------------------------


@dataclass(frozen=True, slots=True)
class WentUp:
    pass


@dataclass(frozen=True, slots=True)
class WentDown:
    forced: bool = False


@dataclass(frozen=True, slots=True)
class SoftFailure:
    count: int
    limit: int


@dataclass(frozen=True, slots=True)
class ResetSoftFailures:
    pass


@dataclass(frozen=True, slots=True)
class Rising:
    count: int
    limit: int


@dataclass(frozen=True, slots=True)
class RecheckSoon:
    pass


Effect = WentUp | WentDown | SoftFailure | ResetSoftFailures | Rising | RecheckSoon


class Rule(StrEnum):
    """What a (state, event) pair does; the counters' guards live in step()."""

    STAY = "stay"  # nothing changes
    GO_UP = "go_up"  # → UP now
    GO_DOWN = "go_down"  # → DOWN now
    FORCED_DOWN = "forced_down"  # → DOWN now, bypassing the counter
    COUNT_FAIL = "count_fail"  # fails += 1: → DOWN at failurecount, else FAILING
    COUNT_RISE = "count_rise"  # rises += 1: → UP at rise, else RISING
    RECOVER = "recover"  # FAILING → UP, resetting the soft failure count
    DROP_RISE = "drop_rise"  # RISING → DOWN, the success streak broken


TABLE: dict[tuple[State, Event], Rule] = {
    # First verdict: immediate either way (ldirectord queues unknown reals as down at start-up,
    # and the first success puts one in; rise does not delay start-up).
    (State.UNKNOWN, Event.UP): Rule.GO_UP,
    (State.UNKNOWN, Event.DOWN): Rule.GO_DOWN,
    (State.UNKNOWN, Event.FORCE_UP): Rule.GO_UP,
    (State.UNKNOWN, Event.FORCE_DOWN): Rule.FORCED_DOWN,
    (State.UP, Event.UP): Rule.STAY,
    (State.UP, Event.DOWN): Rule.COUNT_FAIL,
    (State.UP, Event.FORCE_UP): Rule.STAY,
    (State.UP, Event.FORCE_DOWN): Rule.FORCED_DOWN,
    (State.FAILING, Event.UP): Rule.RECOVER,
    (State.FAILING, Event.DOWN): Rule.COUNT_FAIL,
    (State.FAILING, Event.FORCE_UP): Rule.RECOVER,
    (State.FAILING, Event.FORCE_DOWN): Rule.FORCED_DOWN,
    (State.DOWN, Event.UP): Rule.COUNT_RISE,
    (State.DOWN, Event.DOWN): Rule.STAY,
    (State.DOWN, Event.FORCE_UP): Rule.GO_UP,
    (State.DOWN, Event.FORCE_DOWN): Rule.STAY,
    (State.RISING, Event.UP): Rule.COUNT_RISE,
    (State.RISING, Event.DOWN): Rule.DROP_RISE,
    (State.RISING, Event.FORCE_UP): Rule.GO_UP,
    (State.RISING, Event.FORCE_DOWN): Rule.DROP_RISE,
}


def step(health: Health, event: Event, policy: Policy) -> tuple[Health, tuple[Effect, ...]]:
    """Apply one check result (or forced result) to a real's health; return it and the effects."""
    rule = TABLE[(health.state, event)]
    failed = event in (Event.DOWN, Event.FORCE_DOWN)
    recheck: tuple[Effect, ...] = (RecheckSoon(),) if failed and policy.fast_recheck else ()
    if rule is Rule.STAY:
        return health, recheck
    if rule is Rule.GO_UP:
        return Health(State.UP), (WentUp(),)
    if rule is Rule.GO_DOWN:
        return Health(State.DOWN), (WentDown(), *recheck)
    if rule is Rule.FORCED_DOWN:
        return Health(State.DOWN), (WentDown(forced=True), *recheck)
    if rule is Rule.RECOVER:
        return Health(State.UP), (ResetSoftFailures(),)
    if rule is Rule.DROP_RISE:
        return Health(State.DOWN), recheck
    if rule is Rule.COUNT_FAIL:
        fails = health.fails + 1
        limit = max(1, policy.failurecount)
        if fails >= limit:
            return Health(State.DOWN), (WentDown(), *recheck)
        return Health(State.FAILING, fails=fails), (SoftFailure(fails, limit), *recheck)
    # Rule.COUNT_RISE
    rises = health.rises + 1
    limit = max(1, policy.rise)
    if rises >= limit:
        return Health(State.UP), (WentUp(),)
    return Health(State.RISING, rises=rises), (Rising(rises, limit),)
