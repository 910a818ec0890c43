"""The pulse's content tells the truth soon after the table changes (no false CRITICAL).

The plugin reads "real servers up" per virtual from the pulse. The daemon beats at most once a
second, on check progress; a change that happens just after a beat is only published by the
next beat, so the pulse may lag the table by about a second. At start-up with a hung real and
a long checkinterval that lag was much longer: the forced beat at start-up says "0 up", the
healthy reals' first checks end a few milliseconds later (too soon to beat again), and the next
beat came only with their next check (up to checkinterval later) or the hung check's deadline,
so the plugin said CRITICAL "no real server up" while the table had them all.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.faults.harness import Daemon, fleet, run_plugin
from tests.faults.plan import Plan

pytestmark = [pytest.mark.faults, pytest.mark.slow]

LAG = 2.0  # the throttle (1 s) plus a plugin run and a loaded machine


def test_pulse_shows_the_healthy_reals_soon_after_start(daemon: Daemon, tmp_path: Path) -> None:
    plan = Plan(tmp_path)
    plan.add("hang", healthy=2, dead=1, dies=0)
    plan.prepare()
    with fleet(plan.listeners):
        daemon.write_config(plan.config_body(), checkinterval=6, negotiatetimeout=8)
        daemon.start()
        t0 = time.monotonic()
        table_up = None
        ok_at = None
        while time.monotonic() - t0 < 12:  # bounded: up to the hung check's deadline and more
            if table_up is None and daemon.log_text().count("Added real server") == 2:
                table_up = time.monotonic() - t0  # the log, not the state file: that lags too
            sample = run_plugin(daemon.pulse)
            if sample.code == 0:
                ok_at = sample.at - t0
                break
            time.sleep(0.2)
        assert table_up is not None, "the healthy reals never entered the table"
        assert ok_at is not None, "the plugin never said OK"
        print(f"start: table right after {table_up:.2f} s, the plugin OK after {ok_at:.2f} s")
        assert ok_at - table_up <= LAG, f"the pulse lagged the table by {ok_at - table_up:.1f} s"
    assert daemon.stop().returncode == 0
