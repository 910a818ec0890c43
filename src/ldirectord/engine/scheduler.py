"""The check scheduler: one asyncio task per unique check, so no check can delay another.

Owns when checks run. Every unique ProbeKey (a normalised CheckTarget plus the real's port for
maintenance file names) gets its own task; reals with identical targets in several virtuals
share that task and its result, as ldirectord shares results between identical real ids.
- Start-up: every first check starts at once (no stagger), so healthy reals are in the table
  within one check duration whatever the others do.
- Then each task repeats every ``checkinterval`` (the effective one of its virtual; fork=yes
  needs nothing more, every virtual is already isolated), minus a small random jitter (at most
  10 % of the interval, at most 0.5 s); the second check comes a random 0–50 % of the interval
  early, which spreads the checks that all started together over the interval. Checks are
  never later than configured, and 10,000 of them do not stay bunched in one millisecond. After a failed check the interval is
  ``fastinterval`` when that extension is on. A check that overran its interval is followed by
  the next one at once.
- There is no shared concurrency pool: performance.md §4a measured a pool of 500 letting 1,000
  hung servers starve the healthy checks. File descriptors are guarded instead
  (ensure_fd_limit, at start-up).
- ``checktype=N``: N connect checks between negotiate checks, with ldirectord's counter
  (combined_kind / combined_after). ``on``: up without probing. ``off``: no task.
- A maintenance file (engine/maintenance.py) forces the real down before any check.
- Every check runs under ``guarded`` (its deadline; ldirectord.checks.run already does that
  itself, so it is not wrapped twice); anything that still raises is caught and counted, and
  the task goes on.

Knows nothing about health states or the kernel: results go to the ``deliver`` callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import resource
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from ldirectord.checks.base import Check, CheckTarget, Outcome, Reason, guarded
from ldirectord.config.model import CheckType
from ldirectord.engine.maintenance import MaintenanceDir

#: ldirectord's "force a negotiate next" counter value (ld_setup).
COMBINED_RESET = 999999
#: Seconds a check may run past its own deadline before the scheduler gives up on it.
DEADLINE_GRACE = 1.0
#: The second check of every probe comes up to this share of the interval early (a random
#: phase, so the checks that all started at once do not stay bunched).
PHASE_SHARE = 0.5
#: Jitter: at most this share of the interval, and at most MAX_JITTER seconds.
JITTER_SHARE = 0.1
MAX_JITTER = 0.5
#: File descriptors beyond one per check target (listening sockets, logs, pipes, netlink).
FD_MARGIN = 256
_EXTERNAL = (CheckType.EXTERNAL, CheckType.EXTERNAL_PERL)


@dataclass(frozen=True, slots=True)
class ProbeKey:
    """The identity of one scheduled check (shared by identical reals across virtuals)."""

    target: CheckTarget  # normalised; for checktype=N the negotiate target
    real_port: int  # the real's configured port (maintenance file names)
    #: computed once: a target hashes ~30 fields, and results are looked up by key
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.target, self.real_port)))

    def __hash__(self) -> int:
        return self._hash

    @staticmethod
    def of(target: CheckTarget, real_port: int) -> ProbeKey:
        if target.kind not in _EXTERNAL:
            # only external checks see VIP/VPORT: others are shared across virtuals
            target = dataclasses.replace(target, external_args=("", "", "", ""))
        return ProbeKey(target, real_port)

    @property
    def interval(self) -> float:
        return max(0.01, self.target.spec.checkinterval)


def combined_kind(counter: int, n: int) -> CheckType:
    """checktype=N: negotiate when the connect counter reached N, else connect."""
    return CheckType.NEGOTIATE if counter >= n else CheckType.CONNECT


def combined_after(counter: int, kind: CheckType, up: bool) -> int:
    """The counter after a check: negotiate success → 0; connect success → +1; connect
    failure → COMBINED_RESET (negotiate next); a failed negotiate leaves it (negotiate again)."""
    if kind is CheckType.NEGOTIATE:
        return 0 if up else counter
    return counter + 1 if up else COMBINED_RESET


def fds_needed(n_targets: int) -> int:
    return n_targets + FD_MARGIN


def fd_weight(key: ProbeKey) -> int:
    """File descriptors one check holds while in flight: a socket, or for external checks
    the pipes and pidfd of a child process."""
    return 4 if key.target.kind in _EXTERNAL else 1


def ensure_fd_limit(n_targets: int) -> str | None:
    """Raise RLIMIT_NOFILE's soft limit to what ``n_targets`` checks in flight need
    (``n_targets``: the sum of fd_weight over the probes).

    Returns a warning when the hard limit is too low (checks may then fail with EMFILE, which
    they report as down; nothing hangs), else None.
    """
    need = fds_needed(n_targets)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft >= need:
        return None
    new = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if soft == resource.RLIM_INFINITY or new > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    if hard != resource.RLIM_INFINITY and hard < need:
        return (
            f"the checks need about {need} file descriptors but the hard limit is "
            f"{hard}: raise it (ulimit -Hn, systemd LimitNOFILE=) or checks may fail "
            "with 'Too many open files'"
        )
    return None


@dataclass
class SchedulerStats:
    completed: int = 0
    errors: int = 0  # checks (or result handlers) that raised despite guarded()
    #: seconds each of the latest checks started after its planned time (benchmarks, status)
    lateness: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))


#: deliver(key, outcome, forced) -> whether a fast re-check is wanted
Deliver = Callable[[ProbeKey, Outcome, bool], bool]


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Scheduler:
    def __init__(
        self,
        check: Check,
        deliver: Deliver,
        *,
        maintenance: MaintenanceDir | None = None,
        on_error: Callable[[str], None] | None = None,
        jitter: bool = True,
        guard: bool = True,
    ) -> None:
        self._check = check
        self._deliver = deliver
        self.maintenance = maintenance
        self._on_error = on_error
        self._jitter = jitter
        #: False only for a check that already runs under ``guarded`` (ldirectord.checks.run)
        self._guard = guard
        self._tasks: dict[ProbeKey, asyncio.Task[None]] = {}
        self.stats = SchedulerStats()

    @property
    def keys(self) -> frozenset[ProbeKey]:
        return frozenset(self._tasks)

    def sync(self, wanted: Iterable[ProbeKey]) -> None:
        """Run exactly these probes: start the new ones, cancel the gone ones, keep the rest."""
        want = {k for k in wanted if k.target.kind is not CheckType.OFF}
        for key in list(self._tasks):
            if key not in want:
                self._tasks.pop(key).cancel()
        for key in want:
            if key not in self._tasks:
                self._tasks[key] = asyncio.create_task(
                    self._run(key), name=f"check {key.target.host}"
                )

    async def close(self, grace: float = 5.0) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=grace)

    # --- one probe ---------------------------------------------------------------------------

    async def _run(self, key: ProbeKey) -> None:
        loop = asyncio.get_running_loop()
        counter = COMBINED_RESET
        planned = loop.time()
        first = True
        while True:
            start = loop.time()
            self.stats.lateness.append(max(0.0, start - planned))
            fast = False
            try:
                outcome, forced, counter = await self._once(key, counter)
                self.stats.completed += 1
                fast = self._deliver(key, outcome, forced)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let one check kill its task
                self.stats.errors += 1
                if self._on_error is not None:
                    self._on_error(f"check of {key.target.host}:{key.target.port} failed: {exc!r}")
            interval = key.interval
            fast_interval = key.target.spec.fastinterval
            if fast and fast_interval:
                interval = min(interval, max(0.01, fast_interval))
            if self._jitter:
                if first:  # spread the herd that started together: a random phase
                    interval -= random.random() * PHASE_SHARE * interval
                else:
                    interval -= random.random() * min(JITTER_SHARE * interval, MAX_JITTER)
            first = False
            now = loop.time()
            planned = max(start + interval, now)
            if planned <= now:
                await asyncio.sleep(0)
                continue
            # asyncio.sleep() without its coroutine and running-loop lookup (once per check)
            wakeup = loop.create_future()
            timer = loop.call_at(planned, _wake, wakeup)
            try:
                await wakeup
            finally:
                timer.cancel()

    async def _once(self, key: ProbeKey, counter: int) -> tuple[Outcome, bool, int]:
        target = key.target
        if self.maintenance is not None:
            hit = await self.maintenance.match(target.host, key.real_port, target.family)
            if hit is not None:
                return Outcome.down(Reason.MAINTENANCE, "Server in maintenance"), True, counter
        if target.kind is CheckType.ON:
            return Outcome.ok("checktype on"), False, counter
        combined_n = target.spec.combined_n if target.spec.checktype is CheckType.COMBINED else None
        if combined_n is None:
            return await self._probe(target), False, counter
        kind = combined_kind(counter, combined_n)
        run = target if kind is CheckType.NEGOTIATE else dataclasses.replace(target, kind=kind)
        outcome = await self._probe(run)
        return outcome, False, combined_after(counter, kind, outcome.up)

    def _probe(self, target: CheckTarget) -> Awaitable[Outcome]:
        """The check's awaitable itself (no coroutine of our own around it: once per check)."""
        if not self._guard:
            return self._check(target)
        return guarded(self._check, target, target.deadline + DEADLINE_GRACE)
