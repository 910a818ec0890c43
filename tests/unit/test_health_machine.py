"""The health state machine: every (state, event) path, one line each."""

from __future__ import annotations

import pytest

from ldirectord.health.machine import (
    TABLE,
    Event,
    Health,
    Policy,
    RecheckSoon,
    ResetSoftFailures,
    Rising,
    SoftFailure,
    State,
    WentDown,
    WentUp,
    step,
)

U, D, FU, FD = Event.UP, Event.DOWN, Event.FORCE_UP, Event.FORCE_DOWN
P1 = Policy()
P3 = Policy(failurecount=3)
R2 = Policy(rise=2)
FAST = Policy(fast_recheck=True)
UNKNOWN, UP, DOWN = Health(State.UNKNOWN), Health(State.UP), Health(State.DOWN)
FAIL1, FAIL2 = Health(State.FAILING, fails=1), Health(State.FAILING, fails=2)
RISE1 = Health(State.RISING, rises=1)

CASES = [
    # (before, event, policy, after, effects)
    (UNKNOWN, U, P1, UP, (WentUp(),)),
    (UNKNOWN, D, P1, DOWN, (WentDown(),)),
    (UNKNOWN, D, P3, DOWN, (WentDown(),)),  # first verdict ignores failurecount
    (UNKNOWN, U, R2, UP, (WentUp(),)),  # ... and rise: start-up is never delayed
    (UNKNOWN, FU, P1, UP, (WentUp(),)),
    (UNKNOWN, FD, P1, DOWN, (WentDown(forced=True),)),
    (UP, U, P1, UP, ()),
    (UP, D, P1, DOWN, (WentDown(),)),
    (UP, D, P3, FAIL1, (SoftFailure(1, 3),)),
    (UP, FU, P1, UP, ()),
    (UP, FD, P3, DOWN, (WentDown(forced=True),)),  # maintenance bypasses the counter
    (FAIL1, D, P3, FAIL2, (SoftFailure(2, 3),)),
    (FAIL2, D, P3, DOWN, (WentDown(),)),
    (FAIL1, U, P3, UP, (ResetSoftFailures(),)),
    (FAIL1, FU, P3, UP, (ResetSoftFailures(),)),
    (FAIL1, FD, P3, DOWN, (WentDown(forced=True),)),
    (DOWN, U, P1, UP, (WentUp(),)),
    (DOWN, U, R2, RISE1, (Rising(1, 2),)),
    (DOWN, D, P1, DOWN, ()),
    (DOWN, FU, R2, UP, (WentUp(),)),
    (DOWN, FD, P1, DOWN, ()),
    (RISE1, U, R2, UP, (WentUp(),)),
    (RISE1, D, R2, DOWN, ()),
    (RISE1, FU, R2, UP, (WentUp(),)),
    (RISE1, FD, R2, DOWN, ()),
    # the fast re-check extension: every failed check asks for one
    (UP, D, FAST, DOWN, (WentDown(), RecheckSoon())),
    (DOWN, D, FAST, DOWN, (RecheckSoon(),)),
    (UP, D, Policy(failurecount=2, fast_recheck=True), FAIL1, (SoftFailure(1, 2), RecheckSoon())),
    (UP, U, FAST, UP, ()),
]


@pytest.mark.parametrize(("before", "event", "policy", "after", "effects"), CASES)
def test_step(
    before: Health, event: Event, policy: Policy, after: Health, effects: tuple[object, ...]
) -> None:
    assert step(before, event, policy) == (after, effects)


def test_table_is_total() -> None:
    assert set(TABLE) == {(s, e) for s in State for e in Event}


def test_every_rule_is_exercised() -> None:
    covered = {(b.state, e) for b, e, *_ in CASES}
    assert covered == set(TABLE)


def test_failurecount_zero_acts_as_one() -> None:
    assert step(UP, D, Policy(failurecount=0))[0] == DOWN


def test_up_property() -> None:
    assert UP.up and FAIL1.up
    assert not DOWN.up and not RISE1.up and not UNKNOWN.up


def test_soft_failures_then_recovery_sequence() -> None:
    h = UP
    seen = []
    for event in (D, D, U, D, D, D):
        h, effects = step(h, event, P3)
        seen.append((h.state, effects))
    assert [s for s, _ in seen] == [
        State.FAILING,
        State.FAILING,
        State.UP,
        State.FAILING,
        State.FAILING,
        State.DOWN,
    ]
