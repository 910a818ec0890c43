"""Run one backend-fault scenario against the real daemon and measure both halves of the promise.

``run_backend(plan, daemon, fleet)`` starts the daemon on the plan's config, waits until the
table is right (healthy reals in, hostile ones out), watches the pulse and polls the plugin
from then on, samples /proc (fds, threads, zombie children), turns the ``DIES`` reals hostile,
measures how long each takes to leave the table, keeps observing, stops the daemon and looks
for leftover processes. It returns a :class:`Report`; the tests assert on it.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from tests.faults.harness import (
    Daemon,
    Fleet,
    Sample,
    fd_count,
    fd_targets,
    marked_processes,
    thread_count,
    wait_for,
    watching,
)
from tests.faults.plan import DEAD, DIES, HEALTHY, Plan

CHECKINTERVAL = 1.0
DEADLINE = 2.0  # checktimeout = negotiatetimeout
MARGIN = 3.0  # generous: 2 busy cores shared by several sessions
DETECTION_BOUND = CHECKINTERVAL + DEADLINE + MARGIN
PULSE_MARGIN = 3.0  # the longest pause allowed between two beats (the plugin warns above 3 s)
ZOMBIE_GRACE = 2.0  # a zombie child seen longer than this is a reaping bug
#: No check holds a fd longer than its deadline (+ the TERM grace of a script): a fd opened
#: during the run and still the same object this much later is leaked (or stuck).
FD_LIFETIME = 2 * (CHECKINTERVAL + DEADLINE)


@dataclass
class Report:
    ready_after: float = 0.0  # start → table right
    detection: dict[str, float] = field(default_factory=dict)  # real → seconds to leave
    undetected: list[str] = field(default_factory=list)
    healthy_flaps: list[str] = field(default_factory=list)  # healthy reals seen out of the table
    flap_reasons: list[str] = field(default_factory=list)  # and their last check result
    dead_entered: list[str] = field(default_factory=list)  # hostile reals seen in the table
    plugin: list[Sample] = field(default_factory=list)
    plugin_bad: list[Sample] = field(default_factory=list)
    pulse_max_gap: float = 0.0
    beats: int = 0
    fds: list[int] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)
    fds_start: int = 0
    fds_end: int = 0
    threads_start: int = 0
    threads_end: int = 0
    fds_long_lived: list[str] = field(default_factory=list)  # opened in the run, never closed
    children_max: int = 0  # processes carrying the scenario's mark (check scripts), at most
    zombies_persistent: list[str] = field(default_factory=list)
    zombies_seen: int = 0
    leftovers: list[str] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)  # `status --json` at the end
    stop_took: float = 0.0
    stop_rc: int = -1
    checks_completed: int = 0

    def summary(self) -> str:
        det = sorted(self.detection.values())
        return json.dumps(
            {
                "ready_after": round(self.ready_after, 2),
                "detection_max": round(det[-1], 2) if det else None,
                "detection_median": round(det[len(det) // 2], 2) if det else None,
                "detected": len(det),
                "pulse_max_gap": round(self.pulse_max_gap, 2),
                "beats": self.beats,
                "plugin_polls": len(self.plugin),
                "plugin_not_ok": len(self.plugin_bad),
                "fds": [self.fds_start, self.fds_end, max(self.fds, default=0)],
                "threads": [self.threads_start, self.threads_end, max(self.threads, default=0)],
                "zombies_seen": self.zombies_seen,
                "children_max": self.children_max,
                "stop_took": round(self.stop_took, 2),
                "checks_completed": self.checks_completed,
            }
        )


class _Sampler:
    """Samples the daemon's table and /proc from the test thread."""

    def __init__(self, plan: Plan, daemon: Daemon, report: Report) -> None:
        self.plan = plan
        self.daemon = daemon
        self.report = report
        self.zombie_since: dict[int, float] = {}
        self.fd_window: list[int] = []
        self.thread_window: list[int] = []
        self.fd_snapshots: list[tuple[float, set[str]]] = []
        self.samples = 0

    def table(self) -> dict[str, dict[str, int | None]] | None:
        try:
            return self.daemon.table()
        except (OSError, ValueError):
            return None

    def table_right(self) -> bool:
        table = self.table()
        if table is None:
            return False
        for v, r in self.plan.reals():
            weight = table.get(v.name, {}).get(r.name, "missing")
            if (weight == 1) != (r.role != DEAD):
                return False
        return True

    def reason(self, virtual: str, real: str) -> str:
        """The last check result of a real, from the state file (diagnosis of a flap)."""
        try:
            for v in self.daemon.state()["virtuals"]:
                for r in v["reals"] if v["name"] == virtual else ():
                    if r["name"] == real:
                        return f"{r['last_result']}: {r['last_detail']}"
        except (OSError, ValueError, KeyError):
            pass
        return "?"

    def sample(self, broken: dict[str, float]) -> None:
        now = time.monotonic()
        table = self.table()
        if table is not None:
            for v, r in self.plan.reals():
                weight = table.get(v.name, {}).get(r.name)
                key = f"{v.name}/{r.name}"
                if r.role == HEALTHY and weight != 1 and key not in self.report.healthy_flaps:
                    self.report.healthy_flaps.append(key)
                    self.report.flap_reasons.append(f"{key}: {self.reason(v.name, r.name)}")
                if r.role == DEAD and weight is not None and key not in self.report.dead_entered:
                    self.report.dead_entered.append(key)
                if r.role == DIES and key in broken and weight is None:
                    self.report.detection.setdefault(key, now - broken[key])
        pid = self.daemon.pid
        try:
            fds, threads = fd_count(pid), thread_count(pid)
        except OSError:
            return
        with contextlib.suppress(OSError):
            self.fd_snapshots.append((now, fd_targets(pid)))
        self.report.fds.append(fds)
        self.report.threads.append(threads)
        self.fd_window.append(fds)
        self.thread_window.append(threads)
        self.samples += 1
        if self.samples % 5 == 0:  # check scripts and their children alive right now
            alive = len(marked_processes(self.daemon.mark, exclude=(pid,)))
            self.report.children_max = max(self.report.children_max, alive)
        zombies = {z[0] for z in self.daemon.zombies()}
        self.report.zombies_seen += len(zombies - set(self.zombie_since))
        for z in zombies:
            self.zombie_since.setdefault(z, now)
        for z, since in list(self.zombie_since.items()):
            if z not in zombies:
                del self.zombie_since[z]
            elif now - since > ZOMBIE_GRACE and str(z) not in self.report.zombies_persistent:
                self.report.zombies_persistent.append(str(z))

    def observe(self, seconds: float, broken: dict[str, float], every: float = 0.2) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.sample(broken)
            time.sleep(every)

    def long_lived_fds(self) -> list[str]:
        """Fds absent from the first snapshot, present in two snapshots FD_LIFETIME apart."""
        if not self.fd_snapshots:
            return []
        first = self.fd_snapshots[0][1]
        last_at, alive = self.fd_snapshots[-1]
        alive = alive - first
        for at, fds in reversed(self.fd_snapshots):  # present in every snapshot since `at`
            alive &= fds
            if at <= last_at - FD_LIFETIME:
                return sorted(alive)
        return []

    def window(self) -> tuple[int, int]:
        """The largest fd and thread counts since the last call (a window of samples)."""
        fds, threads = max(self.fd_window, default=0), max(self.thread_window, default=0)
        self.fd_window, self.thread_window = [], []
        return fds, threads


def run_backend(
    plan: Plan,
    daemon: Daemon,
    fleet: Fleet,
    *,
    warmup: float = 2.0,
    window: float = 2.0,
    observe: float = 4.0,
    ready_timeout: float = 20.0,
    plugin_every: float = 0.5,
) -> Report:
    report = Report()
    sampler = _Sampler(plan, daemon, report)
    t_start = time.monotonic()
    daemon.start()
    report.ready_after = wait_for("the table to be right", sampler.table_right, ready_timeout)
    with watching(daemon, plugin_every=plugin_every) as (plugin, pulse):
        t_watch = time.monotonic()
        sampler.observe(warmup, {})
        sampler.window()
        sampler.observe(window, {})
        report.fds_start, report.threads_start = sampler.window()
        broken: dict[str, float] = {}
        for v, r in plan.reals(DIES):
            plan.break_real(fleet, r)
            broken[f"{v.name}/{r.name}"] = time.monotonic()
        t_end = time.monotonic() + DETECTION_BOUND + 1.0
        while time.monotonic() < t_end and len(report.detection) < len(broken):
            sampler.observe(0.2, broken, every=0.1)
        sampler.observe(observe, broken)
        sampler.window()
        sampler.observe(window, broken)
        report.fds_end, report.threads_end = sampler.window()
        t_stop = time.monotonic()
    report.undetected = sorted(set(broken) - set(report.detection))
    report.fds_long_lived = sampler.long_lived_fds()
    report.plugin = plugin.since(t_watch)
    report.plugin_bad = plugin.not_ok(t_watch, t_stop)
    report.pulse_max_gap = pulse.max_gap(t_watch, t_stop)
    report.beats = len(pulse.beats)
    with contextlib.suppress(OSError, ValueError, KeyError):
        report.checks_completed = int(daemon.state()["checks_completed"])
    report.status = daemon.status_json()  # the operator's view, taken under the same load
    t0 = time.monotonic()
    report.stop_rc = daemon.stop().returncode
    report.stop_took = time.monotonic() - t0
    time.sleep(0.3)  # a group killed at the stop is reaped by init: let it go
    report.leftovers = [f"{pid} {cmd}" for pid, cmd in marked_processes(daemon.mark)]
    del t_start
    return report
