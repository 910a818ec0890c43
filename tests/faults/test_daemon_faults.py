"""Daemon faults: the daemon itself is frozen, blocked, killed, loses its pulse directory, or
sees its pulse's mtime jump. The plugin (``-w 3 -c 6``) is polled throughout and every answer is
compared with the truth: from the moment the pulse stops, the age of the last beat decides what
the plugin must say (OK up to 3 s, WARNING up to 6 s, CRITICAL beyond), so both a false OK and
a false alarm fail the test. When the fault ends, the plugin must say OK again within a beat or
two, and the table must be what it was.

(tests/component/test_daemon_faults.py already proves the stall detector's log lines and the
autoreload cases; tests/plugin/test_with_daemon.py the plugin's verdicts on a frozen and a
crashed daemon. These add the plugin's timing against the truth, and the faults they lack.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.harness import (
    CRIT,
    Daemon,
    Fleet,
    PluginPoller,
    Sample,
    alive,
    fleet,
    run_plugin,
    wait_for,
    watching,
)
from tests.faults.plan import Plan

pytestmark = [pytest.mark.faults, pytest.mark.slow]

RECOVERY = 3.0  # after the fault ends: the next beat (≤ 1 s + a check) plus a plugin poll
POLL = 0.3


@contextlib.contextmanager
def small_director(daemon: Daemon, tmp_path: Path) -> Iterator[tuple[Plan, Fleet]]:
    """3 healthy HTTP reals in one virtual, the daemon started and its table right."""
    plan = Plan(tmp_path)
    plan.add("hang", healthy=3, dead=0, dies=0)
    plan.prepare()
    with fleet(plan.listeners) as running:
        daemon.write_config(plan.config_body())
        daemon.start()
        wait_for("the reals in the table", lambda: _all_up(daemon, plan), 15)
        yield plan, running


def _all_up(daemon: Daemon, plan: Plan) -> bool:
    try:
        table = daemon.table()
    except (OSError, ValueError):
        return False
    return all(table.get(v.name, {}).get(r.name) == 1 for v, r in plan.reals())


def mismatches(samples: list[Sample], mtime: float) -> list[str]:
    """Plugin answers that disagree with a pulse frozen at ``mtime``."""
    return [
        f"{s.wall0 - mtime:.1f} s after the last beat: {s.code} {s.line[:90]}"
        for s in samples
        if s.code not in s.expected(mtime)
    ]


def frozen_mtime(daemon: Daemon) -> tuple[float, float]:
    """The pulse's mtime once it stopped moving (a write in flight, fsync and all, may land
    just after the fault), and the monotonic time from which that is known."""
    last = daemon.pulse.stat().st_mtime
    for _ in range(50):  # bounded: 5 s
        time.sleep(0.5)
        now = daemon.pulse.stat().st_mtime
        if now == last:
            break
        last = now
    return last, time.monotonic()


def freeze_and_thaw(
    daemon: Daemon, plugin: PluginPoller, freeze: float, *, unfreeze: object
) -> tuple[float, float, list[Sample], list[Sample]]:
    """Hold the fault ``freeze`` seconds (caller already injected it), then ``unfreeze()``;
    return (frozen mtime, seconds to OK again, samples while frozen, samples after OK)."""
    t0 = time.monotonic()
    mtime, t_known = frozen_mtime(daemon)
    time.sleep(max(0.0, freeze - (time.monotonic() - t0)))
    t_thaw = time.monotonic()
    assert callable(unfreeze)
    unfreeze()
    while time.monotonic() - t_thaw < 15:
        ok = plugin.first(0, t_thaw)
        if ok is not None:
            break
        time.sleep(0.1)
    ok = plugin.first(0, t_thaw)
    back = (ok.at - t_thaw) if ok is not None else float("inf")
    time.sleep(2.0)  # and it stays OK
    during = [s for s in plugin.samples if t_known <= s.at < t_thaw]  # judged from here on
    after = [s for s in plugin.samples if ok is not None and s.at >= ok.at]
    return mtime, back, during, after


def assert_alarm(
    mtime: float, back: float, during: list[Sample], after: list[Sample], what: str
) -> None:
    wrong = mismatches(during, mtime)
    assert not wrong, f"{what}: the plugin disagreed with the pulse's age: {wrong}"
    codes = [s.code for s in during]
    assert 1 in codes and 2 in codes, f"{what}: never WARNING then CRITICAL: {codes}"
    assert codes.index(1) < codes.index(2), codes
    assert back <= RECOVERY, f"{what}: OK again only after {back:.1f} s"
    assert all(s.code == 0 for s in after), [s.line for s in after if s.code]


def test_sigstop_warns_then_goes_critical_and_sigcont_recovers(
    daemon: Daemon, tmp_path: Path
) -> None:
    with (
        small_director(daemon, tmp_path) as (plan, _),
        watching(daemon, plugin_every=POLL) as (plugin, _pulse),
    ):
        time.sleep(1.5)
        assert not plugin.not_ok(), plugin.not_ok()
        os.kill(daemon.pid, signal.SIGSTOP)
        try:
            mtime, back, during, after = freeze_and_thaw(
                daemon, plugin, CRIT + 3.0, unfreeze=lambda: os.kill(daemon.pid, signal.SIGCONT)
            )
        finally:
            os.kill(daemon.pid, signal.SIGCONT)
        assert_alarm(mtime, back, during, after, "SIGSTOP")
        assert all(f"pid {daemon.pid} is gone" not in s.line for s in during)  # stopped ≠ dead
        assert _all_up(daemon, plan)
    print(f"sigstop: OK again {back:.2f} s after SIGCONT, {len(during)} polls while stopped")
    assert daemon.stop().returncode == 0


def test_blocked_event_loop_stops_the_pulse_and_the_plugin_alarms(
    daemon: Daemon, tmp_path: Path
) -> None:
    block = CRIT + 3.0
    daemon.env["LDIRECTORD_TEST_STALL"] = str(block)
    with (
        small_director(daemon, tmp_path) as (plan, _),
        watching(daemon, plugin_every=POLL) as (
            plugin,
            _pulse,
        ),
    ):
        time.sleep(1.5)
        t_block = time.monotonic()
        os.kill(daemon.pid, signal.SIGUSR2)
        wait_for("the hook", lambda: "TEST HOOK: blocking" in daemon.log_text(), 5)
        mtime, back, during, after = freeze_and_thaw(
            daemon, plugin, block - (time.monotonic() - t_block) - 0.5, unfreeze=lambda: None
        )
        assert_alarm(mtime, back, during, after, "blocked loop")
        log = daemon.log_text()
        assert "Event loop stalled: it has not run for" in log
        stack = log.split("main thread stack:", 1)[1]
        assert "sleep" in stack, stack[:2000]  # the hook's time.sleep is what blocks
        assert "Event loop running again after a stall" in log
        assert _all_up(daemon, plan)
    assert daemon.stop().returncode == 0


def test_sigkill_is_critical_as_soon_as_the_pid_is_gone(daemon: Daemon, tmp_path: Path) -> None:
    with small_director(daemon, tmp_path):
        pid = daemon.pid
        time.sleep(1.0)
        assert run_plugin(daemon.pulse).code == 0
        os.kill(pid, signal.SIGKILL)
        took = wait_for("the pid to go", lambda: not alive(pid), 5)
        t_gone = time.monotonic()
        sample = run_plugin(daemon.pulse)  # the pulse is still fresh: only the pid tells
        assert sample.code == 2, sample.line
        assert sample.line.startswith(f"CRITICAL: ldirectord pid {pid} is gone; "), sample.line
        assert "pulse is regular" in sample.line
        print(
            f"sigkill: pid gone {took:.2f} s after SIGKILL, CRITICAL "
            f"{sample.at - t_gone + (sample.wall1 - sample.wall0):.2f} s later"
        )
        assert daemon.pulse.exists()  # a crash leaves the pulse behind, with its dead pid


def test_pulse_mtime_in_the_future_or_past_heals_with_the_next_beat(
    daemon: Daemon, tmp_path: Path
) -> None:
    """A clock step, simulated: the real clock cannot be stepped safely on a shared machine, so
    the pulse's mtime is set an hour ahead (clock stepped back) and an hour behind (clock stepped
    forward) while the daemon runs. Documented: ahead → WARNING "in the future (clock step?)";
    behind → the age is what it is (CRITICAL). Either way the next beat heals it."""
    with small_director(daemon, tmp_path):
        time.sleep(1.0)
        for offset, code, text in (
            (3600, 1, "seconds in the future (clock step?)"),
            (-3600, 2, "pulse has stopped"),
        ):
            seen = None
            for _ in range(10):  # a beat may land between utime and the plugin: retry
                before = daemon.pulse.stat().st_mtime
                os.utime(daemon.pulse, (time.time() + offset, time.time() + offset))
                sample = run_plugin(daemon.pulse)
                if daemon.pulse.stat().st_mtime != before + offset and sample.code == 0:
                    continue
                seen = sample
                break
            assert seen is not None and seen.code == code, seen
            assert text in seen.line, seen.line
            healed = wait_for(
                "the next beat to heal the pulse", lambda: run_plugin(daemon.pulse).code == 0, 10
            )
            print(
                f"mtime {offset:+d} s: plugin {seen.code}, healed by the next beat in {healed:.2f} s"
            )
            assert healed <= RECOVERY
    assert daemon.stop().returncode == 0


def _in_namespace(pid: int, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nsenter", "-t", str(pid), "-m", *argv],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_full_pulse_directory_is_loud_and_alarms(daemon: Daemon, tmp_path: Path) -> None:
    """The pulse lives on a 256 KiB tmpfs mounted in a private mount namespace (unshare -m) that
    only the daemon sees; the test reaches it through /proc/<pid>/root. Filling the tmpfs
    (ENOSPC) stops the beat: a loud log line, the plugin alarms on time; freeing it heals."""
    pulsedir = tmp_path / "pulsedir"
    pulsedir.mkdir()
    plan = Plan(tmp_path)
    plan.add("hang", healthy=3, dead=0, dies=0)
    plan.prepare()
    with fleet(plan.listeners):
        daemon.write_config(plan.config_body())
        inner_pulse = pulsedir / "ldirectord.pulse"
        argv = [
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            f'mount -t tmpfs -o size=256k tmpfs "{pulsedir}" && exec "$@"',
            "sh",
            *daemon.argv("start", options=["--pulse", str(inner_pulse)]),
        ]
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=60, env=daemon.env, check=False
        )
        assert done.returncode == 0, done.stderr
        daemon.pid = int(daemon.pidfile.read_text().split()[0])
        seen = Path(f"/proc/{daemon.pid}/root") / str(inner_pulse).lstrip("/")
        daemon.pulse = seen
        wait_for("the reals in the table", lambda: _all_up(daemon, plan), 15)
        assert not inner_pulse.exists()  # the host's directory is not the daemon's
        with watching(daemon, plugin_every=POLL) as (plugin, _):
            time.sleep(1.5)
            filler = seen.parent / "filler"

            def fill() -> None:
                with contextlib.suppress(OSError), open(filler, "wb", buffering=0) as out:
                    for _ in range(1024):  # bounded: 256 KiB in 4 KiB blocks and then some
                        out.write(b"\0" * 4096)

            fill()
            mtime, back, during, after = freeze_and_thaw(
                daemon, plugin, CRIT + 3.0, unfreeze=filler.unlink
            )
        assert_alarm(mtime, back, during, after, "pulse directory full")
        log = daemon.log_text()
        assert (
            f"ERROR: cannot write {inner_pulse}: No space left on device (the pulse has stopped)"
            in log
        )
        assert _all_up(daemon, plan)  # checking went on meanwhile
        assert daemon.stop().returncode == 0
