"""Backend faults: hostile real servers, each kind alone and all mixed among 500 reals.

The real daemon (dry-run backend, checkinterval 1, timeouts 2 s) checks loopback reals served by
the fleet process (tests/faults/fleet.py), a real MariaDB behind the fleet's proxies, and an
external check script. Some reals are hostile from the start, some turn hostile while the daemon
runs. Both halves of the promise are asserted on the measurements of tests/faults/scenario.py:
the table (healthy reals stay, hostile ones never enter or leave within checkinterval +
deadline + margin) and the pulse (no pause beyond the margin, the plugin OK at every poll),
plus no zombies, no leftover processes, no fd or thread growth.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.faults.harness import Daemon, fleet, kill_daemon
from tests.faults.plan import HEALTHY, KINDS, Plan
from tests.faults.scenario import DETECTION_BOUND, PULSE_MARGIN, Report, run_backend
from tests.helpers.servers import Running

pytestmark = [pytest.mark.faults, pytest.mark.slow]

FD_CEILING = 2 * 500 + 64  # at most a socket or two per real in flight, plus the daemon's own
THREAD_SLACK = 2
STOP_BOUND = 4.0


def assert_promise(report: Report, plan: Plan, *, max_threads: int) -> None:
    summary = report.summary()
    # half 1: the daemon keeps checking and the table stays right
    assert not report.healthy_flaps, f"healthy reals left the table: {report.flap_reasons}"
    assert not report.dead_entered, f"hostile reals entered the table: {report.dead_entered}"
    assert not report.undetected, f"still in the table: {report.undetected} ({summary})"
    slow = {k: round(v, 2) for k, v in report.detection.items() if v > DETECTION_BOUND}
    assert not slow, f"left the table later than {DETECTION_BOUND} s: {slow}"
    # `status --json` (what an operator sees) says the same as the table we sampled
    status = report.status
    assert status.get("exit_status") == 0 and status.get("running") is True, status
    assert status["pulse"]["age"] <= PULSE_MARGIN, status["pulse"]
    seen = {
        v["name"]: {r["name"]: r["weight"] for r in v["reals"]} for v in status["state"]["virtuals"]
    }
    for v, r in plan.reals():
        assert (seen[v.name][r.name] == 1) == (r.role == HEALTHY), (v.name, r.name, seen[v.name])
    # half 2: the pulse tells the truth (here: that all is well)
    assert report.pulse_max_gap <= PULSE_MARGIN, summary
    assert report.plugin, "the plugin was never polled"
    assert not report.plugin_bad, f"plugin not OK: {report.plugin_bad[:3]} ({summary})"
    # hygiene: reaped children, nothing left behind, no growth
    assert not report.zombies_persistent, f"zombie children: {report.zombies_persistent}"
    assert not report.leftovers, f"processes left behind: {report.leftovers}"
    # while running: per external real one script (sh + 2 × sleep for the hostile ones), two
    # generations at most (a killed group may still be dying as the next check starts), plus
    # slack; a group that survived its kill would pile up 3 processes per check
    externals = [r for _, r in plan.reals() if r.kind.proto == "none"]
    bound = sum(2 if r.role == HEALTHY else 6 for r in externals) + 5
    assert report.children_max <= bound, summary
    # fds: the count swings with the checks in flight, so a leak is judged by lifetime: no fd
    # opened during the run may still be the same object FD_LIFETIME later
    assert not report.fds_long_lived, f"fds that never close: {report.fds_long_lived[:10]}"
    assert report.fds_end <= max(report.fds) and report.fds_end <= FD_CEILING, summary
    assert report.threads_end <= max(report.threads_start + THREAD_SLACK, max_threads), summary
    assert max(report.threads) <= max_threads, summary
    assert report.stop_rc == 0, summary
    # every check task ends when cancelled: stop never waits out the scheduler's 5 s grace
    assert report.stop_took < STOP_BOUND, summary


#: threads: main, stall detector, pulse writer, resolver/maintenance helpers, plus the bounded
#: pool of blocking checks (16, SQL) — a ceiling, not a target.
BASE_THREADS = 6
SQL_POOL = 16


def _alone(kind: str, base: Path, mysql_port: int, cert: tuple[Path, Path]) -> Report:
    """One daemon, one virtual: 3 healthy reals, 2 hostile from the start, 2 that turn hostile."""
    base.mkdir()
    plan = Plan(base, mysql_port=mysql_port)
    plan.add(kind, healthy=3, dead=2, dies=2)
    plan.prepare()
    daemon = Daemon(base)
    try:
        with fleet(plan.listeners, *cert) as running:
            daemon.write_config(plan.config_body())
            report = run_backend(
                plan, daemon, running, warmup=0.5, window=1.0, observe=1.0, plugin_every=1.0
            )
        assert_promise(report, plan, max_threads=BASE_THREADS + SQL_POOL)
        return report
    finally:
        kill_daemon(daemon)


def test_each_fault_alone(tmp_path: Path, mariadb: Running, cert: tuple[Path, Path]) -> None:
    """Each fault kind against its own daemon (one kind per daemon), the eight side by side
    to keep the suite short; every daemon is judged on its own."""
    failures: dict[str, str] = {}
    with ThreadPoolExecutor(len(KINDS)) as pool:
        futures = {
            kind: pool.submit(_alone, kind, tmp_path / kind, mariadb.port("mysql"), cert)
            for kind in sorted(KINDS)
        }
        for kind, future in futures.items():
            try:
                print(kind, future.result(timeout=120).summary())
            except Exception as exc:
                failures[kind] = f"{type(exc).__name__}: {exc}"
    assert not failures, "\n".join(f"{k}: {v}" for k, v in failures.items())


def test_all_faults_mixed_among_500_reals(
    tmp_path: Path,
    daemon: Daemon,
    mariadb: Running,
    cert: tuple[Path, Path],
) -> None:
    """500 reals in 8 virtual services, every fault at once; 80 hostile from the start, 45 turn
    hostile while running, 370 healthy stay."""
    plan = Plan(tmp_path, mysql_port=mariadb.port("mysql"))
    plan.add("hang", healthy=305, dead=10, dies=10)  # the big web pool
    for kind in ("trickle", "reset", "garbage", "tls_hang", "dns_black_hole", "external_stubborn"):
        plan.add(kind, healthy=10, dead=10, dies=5)
    plan.add("mysql_stall", healthy=10, dead=10, dies=5)
    plan.prepare()
    assert len(plan.reals()) == 500
    with fleet(plan.listeners, *cert) as running:
        daemon.write_config(plan.config_body())
        report = run_backend(plan, daemon, running, warmup=3.0, window=2.0, observe=5.0)
    print("mixed", report.summary())
    assert_promise(report, plan, max_threads=BASE_THREADS + SQL_POOL)
