"""The ``external`` and ``external-perl`` checks (reference §2.2).

``external``: run ``checkcommand VIP VPORT RIP RPORT`` (no shell; IPv6 addresses in brackets,
a fwmark virtual gives the mark and port 0); exit status 0 is up. ``external-perl``: the same
arguments to the script run by ``perl`` (ldirectord compiles it into its own process; a script
that ends without ``exit`` is up there and here alike).

Deliberate differences: the command runs in its own session and at the deadline its whole
process group is killed (SIGTERM, then SIGKILL) and reaped (ldirectord sent SIGTERM to the
child only and left it a zombie); a command that dies of a signal is down (ldirectord's
``$? >> 8`` took it as exit 0, up).
"""

from __future__ import annotations

import shutil

from ldirectord.checks.base import CheckTarget, Outcome, Reason, set_phase
from ldirectord.procs import TERM_GRACE, ProcessResult, run_process

PERL = "/usr/bin/perl"


def _budget(deadline: float) -> float:
    """The process's own timeout: leave room for SIGTERM's grace inside the hard deadline."""
    return max(deadline * 0.5, deadline - TERM_GRACE - 0.1)


def _outcome(command: str, result: ProcessResult) -> Outcome:
    first_line = result.output.decode("utf-8", "replace").strip().splitlines()[:1]
    said = f": {first_line[0][:120]}" if first_line else ""
    if result.error:
        return Outcome.down(Reason.CONFIG, f"cannot run {result.error}")
    if result.timed_out:
        return Outcome.down(
            Reason.TIMEOUT,
            f"{command} ran longer than {result.duration:.1f} s; process group killed{said}",
        )
    if result.returncode == 0:
        return Outcome.ok(f"{command} exited 0{said}")
    if result.returncode is not None and result.returncode < 0:
        return Outcome.down(
            Reason.SCRIPT_FAILED, f"{command} killed by signal {-result.returncode}{said}"
        )
    return Outcome.down(Reason.SCRIPT_FAILED, f"{command} exited {result.returncode}{said}")


async def check_external(target: CheckTarget) -> Outcome:
    command = target.spec.checkcommand
    set_phase(f"running {command}")
    result = await run_process([command, *target.external_args], _budget(target.deadline))
    return _outcome(command, result)


async def check_external_perl(target: CheckTarget) -> Outcome:
    command = target.spec.checkcommand
    perl = shutil.which("perl") or PERL
    set_phase(f"running perl {command}")
    result = await run_process([perl, command, *target.external_args], _budget(target.deadline))
    return _outcome(command, result)
