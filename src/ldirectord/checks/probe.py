"""``ldirectord [configfile] probe``: run every configured check once and print the results.

Owns: turning a Config into the list of checks ldirectord would run (one per real server of
each virtual; ``checktype=N`` probes with the negotiate check, ``off`` is reported without
probing), running them all concurrently with identical targets checked once, and rendering a
table or JSON. ``probe_config`` is the pure-over-Config core (tests build Configs directly);
``probe`` is the CLI wrapper (load, run, print, exit code).

Exit codes: 0 when every probed real is up, 1 when any is down, 2 when the config is invalid
(every problem printed, as configtest does). ``off`` reals count as neither.
The maintenance directory is not consulted: probe asks the servers, not the operator.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from ldirectord.checks import run
from ldirectord.checks.base import CheckTarget, Outcome, Reason, target_for
from ldirectord.config.model import (
    CheckType,
    Config,
    Family,
    Protocol,
    RealServer,
    VirtualService,
)
from ldirectord.errors import ConfigError

if TYPE_CHECKING:
    from ldirectord.cli import CliOptions

EXIT_UP, EXIT_DOWN, EXIT_CONFIG = 0, 1, 2
#: At most this many checks in flight (file descriptors); probe is a one-shot command.
MAX_IN_FLIGHT = 1024


@dataclass(frozen=True, slots=True)
class ProbeRow:
    virtual: str
    real: str
    check: str
    result: str  # "up", "down" or "off"
    reason: str
    detail: str
    ms: float

    def as_dict(self) -> dict[str, object]:
        return {
            "virtual": self.virtual,
            "real": self.real,
            "check": self.check,
            "result": self.result,
            "reason": self.reason,
            "detail": self.detail,
            "ms": round(self.ms, 1),
        }


def describe(target: CheckTarget) -> str:
    """``negotiate:http``, ``connect``, ``external:/path``... as a table cell."""
    kind = target.kind
    if kind is CheckType.NEGOTIATE:
        return f"negotiate:{target.service}"
    if kind in (CheckType.EXTERNAL, CheckType.EXTERNAL_PERL):
        return f"{kind}:{target.spec.checkcommand}"
    if kind is CheckType.CONNECT and target.protocol is Protocol.UDP:
        return "connect(ping)"
    return kind.value


def real_name(virtual: VirtualService, real: RealServer) -> str:
    host = f"[{real.address}]" if virtual.family is Family.INET6 else real.address
    return f"{host}:{real.port}"


def identity(target: CheckTarget) -> CheckTarget:
    """Targets equal under this are checked once: only external checks see VIP and VPORT."""
    if target.kind in (CheckType.EXTERNAL, CheckType.EXTERNAL_PERL):
        return target
    return dataclasses.replace(target, external_args=("", "", "", ""))


def plan(config: Config) -> list[tuple[VirtualService, RealServer, CheckTarget | None]]:
    """Every (virtual, real, target) in config order; target None for checktype=off."""
    rows: list[tuple[VirtualService, RealServer, CheckTarget | None]] = []
    for virtual in config.virtuals:
        for real in virtual.reals:
            if virtual.check.checktype is CheckType.OFF:
                rows.append((virtual, real, None))
            else:  # COMBINED probes with its negotiate check (target_for maps it)
                rows.append((virtual, real, target_for(virtual, real)))
    return rows


async def probe_config(config: Config) -> list[ProbeRow]:
    """Run each distinct check of ``config`` once, concurrently; a row per configured real."""
    planned = plan(config)
    limit = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def bounded(target: CheckTarget) -> Outcome:
        async with limit:
            return await run(target)

    tasks: dict[CheckTarget, asyncio.Task[Outcome]] = {}
    for _, _, target in planned:
        if target is not None and identity(target) not in tasks:
            tasks[identity(target)] = asyncio.ensure_future(bounded(target))
    if tasks:
        await asyncio.wait(tasks.values())
    rows: list[ProbeRow] = []
    for virtual, real, target in planned:
        name, rname = virtual.name, real_name(virtual, real)
        if target is None:
            rows.append(ProbeRow(name, rname, "off", "off", Reason.OFF.value, "checktype=off", 0))
            continue
        outcome = tasks[identity(target)].result()
        rows.append(
            ProbeRow(
                name,
                rname,
                describe(target),
                "up" if outcome.up else "down",
                outcome.reason.value,
                outcome.detail,
                outcome.duration * 1000,
            )
        )
    return rows


def exit_code(rows: Sequence[ProbeRow]) -> int:
    return EXIT_DOWN if any(r.result == "down" for r in rows) else EXIT_UP


def render_table(rows: Sequence[ProbeRow]) -> str:
    header = ("virtual", "real", "check", "result", "reason", "ms", "detail")
    cells = [header] + [
        (r.virtual, r.real, r.check, r.result, r.reason, f"{r.ms:.1f}", r.detail) for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header) - 1)]
    lines = []
    for row in cells:
        fixed = [
            cell.rjust(widths[i]) if i == 5 else cell.ljust(widths[i])
            for i, cell in enumerate(row[:-1])
        ]
        lines.append("  ".join([*fixed, row[-1]]).rstrip())
    up = sum(r.result == "up" for r in rows)
    down = sum(r.result == "down" for r in rows)
    lines.append(f"{len(rows)} real server(s): {up} up, {down} down, {len(rows) - up - down} off")
    return "\n".join(lines) + "\n"


def render_json(rows: Sequence[ProbeRow]) -> str:
    return (
        json.dumps(
            {
                "results": [r.as_dict() for r in rows],
                "up": sum(r.result == "up" for r in rows),
                "down": sum(r.result == "down" for r in rows),
                "off": sum(r.result == "off" for r in rows),
            },
            indent=2,
        )
        + "\n"
    )


def probe_and_print(config: Config, *, as_json: bool, out: TextIO) -> int:
    rows = asyncio.run(probe_config(config))
    out.write(render_json(rows) if as_json else render_table(rows))
    return exit_code(rows)


def probe(opts: CliOptions) -> int:
    """The ``probe`` command: 0 all up, 1 any down, 2 config error (every problem printed)."""
    from ldirectord.config import load

    try:
        config = load(opts.config.path)
    except ConfigError as exc:
        for problem in exc.problems:
            sys.stderr.write(problem.render() + "\n")
        sys.stderr.write(f"{opts.config.path}: {len(exc.problems)} problem(s); nothing probed\n")
        return EXIT_CONFIG
    return probe_and_print(config, as_json=opts.json, out=sys.stdout)
