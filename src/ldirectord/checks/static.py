"""The checks that do not talk to the real server: ``on``, ``off`` and service ``none``.

ldirectord: ``on`` marks the real up every pass without probing; ``off`` does nothing at all
(the engine never adds such reals; reporting it as down with Reason.OFF is for probe/status);
a negotiate check of service ``none`` (every fwmark virtual, unknown ports) is always up.
"""

from __future__ import annotations

from ldirectord.checks.base import CheckTarget, Outcome, Reason


async def check_on(target: CheckTarget) -> Outcome:
    return Outcome.ok("checktype=on")


async def check_off(target: CheckTarget) -> Outcome:
    return Outcome.down(Reason.OFF, "checktype=off")


async def check_none(target: CheckTarget) -> Outcome:
    return Outcome.ok("service=none")
