"""external / external-perl checks and procs.run_process: exit codes, deadlines, no leftovers."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import pytest

from ldirectord.checks import run
from ldirectord.checks.base import CheckTarget, Reason
from ldirectord.config.model import CheckType, Service
from ldirectord.procs import run_process
from tests.helpers import cancellation_sweep, check_target, open_fds

pytestmark = [pytest.mark.component, pytest.mark.asyncio]
DEADLINE = 1.5
MARGIN = 1.0
ARGS = ("192.168.6.240", "80", "[2001:db8::2]", "8080")


def script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(body)
    path.chmod(0o755)
    return str(path)


def external(command: str, kind: CheckType = CheckType.EXTERNAL) -> CheckTarget:
    return check_target(
        Service.NONE, 80, kind=kind, checkcommand=command, checktimeout=DEADLINE,
        external_args=ARGS,
    )  # fmt: skip


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for someone else's reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def test_exit_zero_is_up_and_gets_the_four_arguments(tmp_path: Path) -> None:
    out = tmp_path / "args"
    cmd = script(tmp_path, "ok.sh", f'#!/bin/sh\necho "$@" > {out}\nexit 0\n')
    outcome = await run(external(cmd))
    assert outcome.up, outcome
    assert out.read_text().split() == list(ARGS)


async def test_nonzero_exit_is_down(tmp_path: Path) -> None:
    cmd = script(tmp_path, "fail.sh", "#!/bin/sh\necho backend sick\nexit 3\n")
    outcome = await run(external(cmd))
    assert not outcome.up
    assert outcome.reason is Reason.SCRIPT_FAILED
    assert "exited 3" in outcome.detail
    assert "backend sick" in outcome.detail


async def test_no_shell_is_involved(tmp_path: Path) -> None:
    # ldirectord execs the command with its arguments: shell syntax is not interpreted.
    marker = tmp_path / "marker"
    outcome = await run(external(f"/bin/true; touch {marker}"))
    assert outcome.reason is Reason.CONFIG
    assert not marker.exists()


async def test_missing_command_is_down(tmp_path: Path) -> None:
    outcome = await run(external(str(tmp_path / "nope")))
    assert not outcome.up
    assert outcome.reason is Reason.CONFIG


async def test_killed_by_signal_is_down(tmp_path: Path) -> None:
    cmd = script(tmp_path, "selfkill.sh", "#!/bin/sh\nkill -KILL $$\n")
    outcome = await run(external(cmd))
    assert outcome.reason is Reason.SCRIPT_FAILED
    assert "signal 9" in outcome.detail


async def test_stubborn_forking_script_is_killed_with_its_group(tmp_path: Path) -> None:
    pids, main = tmp_path / "pids", tmp_path / "main"
    cmd = script(
        tmp_path,
        "stubborn.sh",
        "#!/bin/sh\n"
        "trap '' TERM\n"
        f"( trap '' TERM; sleep 300 ) & echo $! >> {pids}\n"
        f"( trap '' TERM; ( trap '' TERM; sleep 300 ) & echo $! >> {pids}; wait ) &\n"
        f"echo $! >> {pids}\n"
        f"echo $$ > {main}\n"
        "while :; do sleep 1; done\n",
    )
    start = time.monotonic()
    outcome = await run(external(cmd))
    elapsed = time.monotonic() - start
    assert not outcome.up
    assert outcome.reason is Reason.TIMEOUT
    assert "process group killed" in outcome.detail
    assert elapsed < DEADLINE + MARGIN
    main_pid = int(main.read_text())
    recorded = [int(p) for p in pids.read_text().split()] + [main_pid]
    assert len(recorded) == 4
    for _ in range(50):  # SIGKILLed grandchildren are reaped by init; give it a moment
        if not any(alive(pid) for pid in recorded):
            break
        await asyncio.sleep(0.05)
    # Grandchildren are dead (a zombie left is init's to reap, not ours).
    assert [pid for pid in recorded if alive(pid)] == []
    assert not Path(f"/proc/{main_pid}").exists()  # our child: reaped, not a zombie


async def test_grandchild_holding_stdout_does_not_hold_us(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    cmd = script(tmp_path, "bg.sh", f"#!/bin/sh\nsleep 300 &\necho $! > {pids}\nexit 0\n")
    start = time.monotonic()
    outcome = await run(external(cmd))
    assert outcome.up, outcome
    assert time.monotonic() - start < DEADLINE / 2
    pid = int(pids.read_text())
    for _ in range(50):
        if not alive(pid):
            break
        await asyncio.sleep(0.05)
    assert not alive(pid)


@pytest.mark.parametrize(
    ("body", "up"),
    [
        ("exit 0;\n", True),
        ("my $x = 1;\n", True),  # no exit at all: up, as in ldirectord
        ("exit 2;\n", False),
        ('die "broken\\n";\n', False),
    ],
)
async def test_external_perl(tmp_path: Path, body: str, up: bool) -> None:
    if shutil.which("perl") is None:
        pytest.fail("perl is missing: run scripts/install-deps", pytrace=False)
    cmd = script(tmp_path, "check.pl", 'die "bad args" unless @ARGV == 4;\n' + body)
    outcome = await run(external(cmd, CheckType.EXTERNAL_PERL))
    assert outcome.up is up, outcome


async def test_external_perl_timeout(tmp_path: Path) -> None:
    cmd = script(tmp_path, "slow.pl", "$SIG{TERM} = 'IGNORE'; sleep 300;\n")
    start = time.monotonic()
    outcome = await run(external(cmd, CheckType.EXTERNAL_PERL))
    assert outcome.reason is Reason.TIMEOUT
    assert time.monotonic() - start < DEADLINE + MARGIN


# --- run_process itself (used for fallbackcommand, callback, sendmail too) -----------------


async def test_run_process_output_is_bounded_and_drained() -> None:
    result = await run_process(["/bin/sh", "-c", "head -c 1000000 /dev/zero; exit 4"], 5)
    assert result.returncode == 4
    assert len(result.output) == 4096
    assert not result.timed_out


async def test_run_process_stdin_and_shell() -> None:
    result = await run_process("tr a-z A-Z", 5, shell=True, stdin=b"hello\n")
    assert result.ok
    assert result.output == b"HELLO\n"


async def test_run_process_env() -> None:
    result = await run_process(["/bin/sh", "-c", 'echo "$LD_TEST"'], 5, env={"LD_TEST": "x1"})
    assert result.output == b"x1\n"


async def test_run_process_cancellation_kills_and_reaps(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    task = asyncio.ensure_future(
        run_process(["/bin/sh", "-c", f"echo $$ > {pidfile}; exec sleep 300"], 60)
    )
    for _ in range(100):
        if pidfile.exists() and pidfile.read_text().strip():
            break
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pid = int(pidfile.read_text())
    for _ in range(100):
        if not Path(f"/proc/{pid}").exists():
            break
        await asyncio.sleep(0.02)
    assert not Path(f"/proc/{pid}").exists()


async def test_many_processes_leave_no_zombies() -> None:
    results = await asyncio.gather(*(run_process(["/bin/true"], 5) for _ in range(50)))
    assert all(r.ok for r in results)
    me = os.getpid()
    zombies = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] == "Z" and int(fields[1]) == me:
                zombies.append(entry.name)
    assert zombies == []


async def test_healthy_external_beside_stubborn_ones_is_not_delayed(tmp_path: Path) -> None:
    stubborn = script(tmp_path, "stubborn.sh", "#!/bin/sh\ntrap '' TERM\nsleep 300 & wait\n")
    healthy = script(tmp_path, "ok.sh", "#!/bin/sh\nexit 0\n")
    pending = [asyncio.ensure_future(run(external(stubborn))) for _ in range(10)]
    await asyncio.sleep(0.1)
    start = time.monotonic()
    outcome = await run(external(healthy))
    elapsed = time.monotonic() - start
    results = await asyncio.gather(*pending)
    assert outcome.up
    assert elapsed < DEADLINE / 2
    assert all(r.reason is Reason.TIMEOUT for r in results)


async def test_children_ignoring_term_die_even_when_the_leader_obeys(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    cmd = script(
        tmp_path,
        "leader.sh",
        f"#!/bin/sh\n( trap '' TERM; exec sleep 300 ) & echo $! > {pids}\nsleep 300\n",
    )
    outcome = await run(external(cmd))
    assert outcome.reason is Reason.TIMEOUT
    pid = int(pids.read_text())
    for _ in range(50):
        if not alive(pid):
            break
        await asyncio.sleep(0.05)
    assert not alive(pid)


async def test_cancellation_at_any_point_leaks_nothing(tmp_path: Path) -> None:
    cmd = script(tmp_path, "ok.sh", "#!/bin/sh\necho fine\nexit 0\n")
    target = external(cmd)
    before = open_fds()
    assert await cancellation_sweep(lambda: run(target), max_ms=60) > 0
    for _ in range(50):  # children killed by the sweep are reaped when they exit
        if open_fds() <= before:
            break
        await asyncio.sleep(0.05)
    assert open_fds() <= before
