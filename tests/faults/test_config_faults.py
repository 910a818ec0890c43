"""Config faults while running: a reload (SIGHUP) of a broken config in every shape, a config
that removes every virtual, and an autoreload that catches a file half-written.

Invariants while a bad config is around: the old table is served untouched (not one ipvsadm
operation), the pulse keeps beating and the plugin stays OK at every poll. A *valid* config that
drops every virtual is applied, as ldirectord purges virtuals dropped from the config on a
reload: the table empties, the daemon keeps beating with nothing to check, the plugin stays OK.

(tests/component/test_daemon_faults.py covers autoreload with a half-written file cut
mid-line, a vanished file and a directory, by the daemon's own counters; here the same faults
are judged by the table, the operations and the plugin, and the cuts that happen to parse.)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.faults.harness import Daemon, fleet, thread_count, wait_for, watching
from tests.faults.plan import Plan
from tests.faults.scenario import CHECKINTERVAL, PULSE_MARGIN

pytestmark = [pytest.mark.faults, pytest.mark.slow]

OP = "[dry-run] ipvsadm"


def _ops(daemon: Daemon) -> list[str]:
    return [line for line in daemon.log_text().splitlines() if OP in line]


def _counter(daemon: Daemon, key: str) -> int:
    try:
        return int(daemon.state()[key])
    except (OSError, ValueError, KeyError):
        return -1


def _table(daemon: Daemon) -> dict[str, dict[str, int | None]]:
    for _ in range(20):  # the state file is replaced atomically; retry a racing read
        try:
            return daemon.table()
        except (OSError, ValueError):
            time.sleep(0.05)
    return daemon.table()


def _plan(tmp_path: Path) -> Plan:
    """Two virtual services of three healthy HTTP reals each (config body once the fleet runs)."""
    plan = Plan(tmp_path)
    plan.add("hang", healthy=3, dead=0, dies=0)
    plan.add("reset", healthy=3, dead=0, dies=0)
    plan.prepare()
    return plan


def _ready(daemon: Daemon, plan: Plan) -> bool:
    try:
        table = daemon.table()
    except (OSError, ValueError):
        return False
    return all(table.get(v.name, {}).get(r.name) == 1 for v, r in plan.reals())


BROKEN = {
    "syntax error": "checkinterval=1\nvirtual=192.0.2.1:80\n\treal=not-an-address:80 masq\n",
    "cut mid-line": None,  # filled in from the good config
    "binary garbage": "\x00\x01\xff\xfe garbage \x1b[0m\n" * 10,
    "directory": None,  # the file is replaced by a directory
}


def test_reload_with_a_broken_config_keeps_the_old_table(daemon: Daemon, tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    with fleet(plan.listeners):
        daemon.write_config(plan.config_body())
        good = daemon.config.read_text()
        daemon.start()
        wait_for("the reals in the table", lambda: _ready(daemon, plan), 15)
        with watching(daemon) as (plugin, pulse):
            t0 = time.monotonic()
            time.sleep(1.0)
            table, ops = _table(daemon), _ops(daemon)
            for n, (shape, text) in enumerate(BROKEN.items(), 1):
                if shape == "directory":
                    daemon.config.unlink()
                    daemon.config.mkdir()
                else:
                    cut = good[: good.index("\treal=") + 9]
                    daemon.config.write_text(text if text is not None else cut, errors="ignore")
                os.kill(daemon.pid, signal.SIGHUP)
                wait_for(
                    f"the failed reload ({shape})",
                    lambda n=n: _counter(daemon, "failed_reloads") == n,
                    10,
                )
                time.sleep(1.5)  # a beat or two with the bad file in place
                assert _table(daemon) == table, f"{shape}: the table changed"
                assert _ops(daemon) == ops, f"{shape}: operations: {_ops(daemon)[len(ops) :]}"
                if shape == "directory":
                    daemon.config.rmdir()
            daemon.config.write_text(good)  # the good config again: it reloads, nothing to do
            os.kill(daemon.pid, signal.SIGHUP)
            wait_for("the good reload", lambda: _counter(daemon, "reloads") == 1, 10)
            time.sleep(1.0)
            t1 = time.monotonic()
        assert _table(daemon) == table and _ops(daemon) == ops
        assert not plugin.not_ok(t0, t1), plugin.not_ok(t0, t1)[:3]
        assert pulse.max_gap(t0, t1) <= PULSE_MARGIN
        log = daemon.log_text()
        assert log.count("Reload abandoned") == len(BROKEN)
        assert "is a directory, not a config file" in log
        assert daemon.stop().returncode == 0


def test_reload_that_removes_every_virtual_is_applied_and_the_pulse_beats_on(
    daemon: Daemon, tmp_path: Path
) -> None:
    plan = _plan(tmp_path)
    with fleet(plan.listeners):
        daemon.write_config(plan.config_body())
        good = daemon.config.read_text()
        daemon.start()
        wait_for("the reals in the table", lambda: _ready(daemon, plan), 15)
        with watching(daemon) as (plugin, pulse):
            time.sleep(1.0)
            daemon.write_config("")  # the globals only: a valid config with no virtual
            t0 = time.monotonic()
            os.kill(daemon.pid, signal.SIGHUP)
            wait_for("the reload", lambda: _counter(daemon, "reloads") == 1, 10)
            wait_for("the purge", lambda: _table(daemon) == {}, 5)
            time.sleep(4.0)  # nothing to check: the idle beat must carry the pulse
            t1 = time.monotonic()
            gap = pulse.max_gap(t0, t1)
            daemon.config.write_text(good)
            os.kill(daemon.pid, signal.SIGHUP)
            wait_for("the reload back", lambda: _counter(daemon, "reloads") == 2, 10)
            wait_for("the reals back", lambda: _ready(daemon, plan), 10)
            back = wait_for(
                "the plugin OK with the reals back",
                lambda: plugin.first(0, time.monotonic() - 0.1),
                10,
            )
        log = daemon.log_text()
        assert log.count("Purged virtual server (start)") == 2
        assert log.count("Purged real server (start)") == 6
        assert gap <= CHECKINTERVAL + 1.5, f"idle pulse paused {gap:.1f} s"
        assert not plugin.not_ok(t0, t1), plugin.not_ok(t0, t1)[:3]
        # the virtuals come back empty and their reals enter after their first check: the
        # plugin may say "no real server up" for that moment (true of the table), then OK
        assert back < 5.0
        print(f"no virtuals: longest idle pause {gap:.2f} s")
        assert daemon.stop().returncode == 0


def _prefixes(good: str) -> dict[str, str]:
    """Cuts of the good config that parse: what a poll sees while an editor rewrites it."""
    second = good.index("virtual=", good.index("virtual=") + 1)
    first_real_of_second = good.index("\n", good.index("\treal=", second)) + 1
    return {
        "empty (truncated, not yet written)": "",
        "the globals only": good[: good.index("virtual=")],
        "the first virtual only": good[:second],
        "the second virtual with one real": good[:first_real_of_second],
    }


def test_autoreload_never_applies_a_half_written_file(daemon: Daemon, tmp_path: Path) -> None:
    """An editor truncates the file and writes it again; a poll may fall in between. Every cut
    below is held 0.9 s (just under one checkinterval, so a poll falls inside it most times;
    two rounds each) and then the good text is back, byte for byte: there is nothing to
    reload, and nothing may be flushed."""
    plan = _plan(tmp_path)
    with fleet(plan.listeners):
        daemon.write_config(plan.config_body(), autoreload="yes")
        good = daemon.config.read_text()
        daemon.start()
        wait_for("the reals in the table", lambda: _ready(daemon, plan), 15)
        with watching(daemon) as (plugin, _pulse):
            time.sleep(1.0)
            t0 = time.monotonic()
            table, ops = _table(daemon), _ops(daemon)
            for _round in range(2):
                for cut in _prefixes(good).values():
                    with open(daemon.config, "w") as out:  # O_TRUNC, as editors and echo > do
                        out.write(cut)
                    time.sleep(0.9)
                    with open(daemon.config, "w") as out:
                        out.write(good)
                    time.sleep(0.2)
            time.sleep(2.0)
            t1 = time.monotonic()
        flushed = [op for op in _ops(daemon)[len(ops) :] if " -d " in op or " -D " in op]
        assert not flushed, f"{len(flushed)} deletions, e.g. {flushed[:3]}"
        assert _table(daemon) == table
        assert not plugin.not_ok(t0, t1)
        assert daemon.stop().returncode == 0


def test_reload_naming_a_host_behind_a_dns_black_hole(daemon: Daemon, tmp_path: Path) -> None:
    """DNS black hole for a name to resolve: the daemon runs in a private mount namespace
    whose /etc/resolv.conf (bind-mounted) names a UDP socket on port 53 that never answers.
    A reload whose config names a real by host name must give up at the resolver's deadline
    (5 s) and keep the old table; the loop, the pulse and the plugin never notice."""
    hole = f"127.{64 + os.getpid() % 128}.9.53"
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((hole, 53))  # never read: every query goes into the void
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver {hole}\noptions timeout:30 attempts:1\n")
    plan = _plan(tmp_path)
    try:
        with fleet(plan.listeners):
            daemon.write_config(plan.config_body())
            good = daemon.config.read_text()
            argv = [
                *("unshare", "-m", "--propagation", "private", "sh", "-c"),
                f'mount --bind "{resolv}" /etc/resolv.conf && exec "$@"',
                "sh",
                *daemon.argv("start"),
            ]
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=60, env=daemon.env, check=False
            )
            assert done.returncode == 0, done.stderr
            daemon.pid = int(daemon.pidfile.read_text().split()[0])
            wait_for("the reals in the table", lambda: _ready(daemon, plan), 15)
            with watching(daemon) as (plugin, pulse):
                time.sleep(1.0)
                t0 = time.monotonic()
                table, ops = _table(daemon), _ops(daemon)
                threads0 = thread_count(daemon.pid)
                named = good.replace(
                    "\treal=", "\treal=www.faults-blackhole.test:80 masq 1\n\treal=", 1
                )
                daemon.config.write_text(named)
                os.kill(daemon.pid, signal.SIGHUP)
                took = wait_for(
                    "the abandoned reload", lambda: _counter(daemon, "failed_reloads") == 1, 20
                )
                threads_peak = thread_count(daemon.pid)
                time.sleep(1.0)
                t1 = time.monotonic()
            assert _table(daemon) == table and _ops(daemon) == ops
            assert not plugin.not_ok(t0, t1), plugin.not_ok(t0, t1)[:3]
            assert pulse.max_gap(t0, t1) <= PULSE_MARGIN, pulse.max_gap(t0, t1)
            log = daemon.log_text()
            assert "lookup timed out after 5 s" in log, log[-2000:]
            assert 4.0 <= took <= 5.0 + 5.0, took  # the resolver's deadline, not glibc's 30 s
            print(
                f"dns black hole: reload abandoned after {took:.1f} s, threads "
                f"{threads0} -> {threads_peak} (an abandoned lookup thread), "
                f"pulse max gap {pulse.max_gap(t0, t1):.2f} s"
            )
            assert threads_peak <= threads0 + 2
            assert daemon.stop().returncode == 0
    finally:
        sock.close()
