"""Golden tests: a config + scripted check outcomes → the exact ops, log lines and final table.

Each ``tests/data/golden/*.golden`` file has sections (``[name]`` on a line of its own):

- ``[config]``: ldirectord.cf text (``[config.2]``, ``[config.3]``... for reloads);
- ``[kernel]`` (optional): the table at start-up, in ipvsadm-save form
  (``-A -t VIP:PORT -s wrr``, ``-a -t VIP:PORT -r RIP:PORT -g -w 1``);
- ``[steps]``: one per line, run after start-up:
  ``check HOST[:PORT] up|down [N]`` (the next N results of those checks),
  ``reload [N]`` (swap to ``[config.N]``, default 2), ``stop``;
- ``[expect]``: the transcript: every backend op as ``ipvsadm …`` and every log line, in order;
- ``[table]``: the final table in ipvsadm-save form.

Checks never answer on their own: each result comes from a step (timeouts are lifted), so the
sequence is exact. To add a case, write the first three sections and run
``GOLDEN_UPDATE=1 pytest tests/unit/test_golden.py``; then read the generated expectations
carefully before committing. No eval: the loader is a plain line parser.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections import defaultdict
from pathlib import Path

import pytest

from ldirectord.checks.base import CheckTarget, Outcome, Reason
from ldirectord.config import parse_text
from ldirectord.config.model import Config, Family, Method, Protocol
from ldirectord.engine.director import Director
from ldirectord.engine.events import LoggingEventSink
from ldirectord.forwarding.base import (
    AddDest,
    AddService,
    Dest,
    DestKey,
    KernelTable,
    ServiceKey,
    ServiceSpec,
    VirtualEntry,
)
from ldirectord.forwarding.dryrun import DryRunBackend, command_for

GOLDEN = Path(__file__).resolve().parent.parent / "data" / "golden"
STEP_TIMEOUT = 5.0
_METHODS = {"-g": Method.GATE, "-m": Method.MASQ, "-i": Method.IPIP}


# --- the file format ----------------------------------------------------------------------


def read_sections(text: str) -> dict[str, list[str]]:
    """Sections by name; the lines before the first one (the case's description) under ""."""
    sections: dict[str, list[str]] = {"": []}
    current: list[str] = sections[""]
    for line in text.splitlines():
        if line.startswith("[") and line.rstrip().endswith("]") and " " not in line.strip():
            current = sections.setdefault(line.strip()[1:-1], [])
        else:
            current.append(line)
    for lines in sections.values():
        while lines and not lines[-1].strip():
            lines.pop()
    return sections


def write_sections(sections: dict[str, list[str]]) -> str:
    blocks = [
        "\n".join(lines if name == "" else [f"[{name}]", *lines])
        for name, lines in sections.items()
    ]
    return "\n\n".join(b for b in blocks if b) + "\n"


def _split_host(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def _service_key(flag: str, value: str, six: bool) -> ServiceKey:
    if flag == "-f":
        return ServiceKey(Protocol.FWM, Family.INET6 if six else Family.INET, None, 0, int(value))
    host, port = _split_host(value)
    family = Family.INET6 if ":" in host else Family.INET
    return ServiceKey(Protocol.UDP if flag == "-u" else Protocol.TCP, family, host, port)


_FLAGS = frozenset({"-6", "-o", "-g", "-m", "-i"})


def _options(words: list[str]) -> dict[str, str]:
    opts: dict[str, str] = {}
    i = 0
    while i < len(words):
        if words[i] in _FLAGS:
            opts[words[i]] = ""
            i += 1
        else:
            opts[words[i]] = words[i + 1] if i + 1 < len(words) else ""
            i += 2
    return opts


def parse_table(lines: list[str]) -> KernelTable:
    """ipvsadm-save lines → KernelTable (only the options our ops use)."""
    services: dict[ServiceKey, tuple[ServiceSpec, dict[DestKey, Dest]]] = {}
    for raw in lines:
        words = raw.split()
        if not words or words[0].startswith("#"):
            continue
        opts = _options(words[1:])
        six = "-6" in words
        flag = next(f for f in ("-t", "-u", "-f") if f in words)
        key = _service_key(flag, words[words.index(flag) + 1], six)
        if words[0] == "-A":
            persistent = int(opts["-p"]) if "-p" in opts else None
            spec = ServiceSpec(
                key,
                scheduler=opts.get("-s", "wrr"),
                persistent=persistent,
                netmask=opts.get("-M", "128" if key.family is Family.INET6 else "255.255.255.255"),
                sched_flags=frozenset(opts["-b"].split(",")) if "-b" in opts else frozenset(),
                ops="-o" in words,
            )
            services[key] = (spec, {})
        elif words[0] == "-a":
            method = next(m for f, m in _METHODS.items() if f in words)
            host, port = _split_host(opts["-r"])
            d = Dest(
                DestKey(host, port),
                method,
                int(opts.get("-w", "1")),
                int(opts.get("-x", "0")),
                int(opts.get("-y", "0")),
            )
            services[key][1][d.key] = d
        else:
            raise ValueError(f"unknown table line: {raw!r}")
    return KernelTable({k: VirtualEntry(s, d) for k, (s, d) in services.items()})


def render_table(table: KernelTable) -> list[str]:
    lines = []
    for key in sorted(table.services, key=str):
        entry = table.services[key]
        lines.append(command_for(AddService(entry.spec)).removeprefix("ipvsadm "))
        for dkey in sorted(entry.dests):
            lines.append(command_for(AddDest(key, entry.dests[dkey])).removeprefix("ipvsadm "))
    return lines


# --- running a case -------------------------------------------------------------------------


class ScriptedChecks:
    """Each check (host:port) waits for its next scripted result."""

    def __init__(self) -> None:
        self.queues: dict[str, asyncio.Queue[bool]] = defaultdict(asyncio.Queue)
        self.taken: dict[str, int] = defaultdict(int)

    def names(self, pattern: str) -> list[str]:
        """The checks a step means: ``HOST:PORT`` exactly, or every check of ``HOST``."""
        if pattern in self.queues:
            return [pattern]
        found = [n for n in self.queues if n.rpartition(":")[0].strip("[]") == pattern]
        if not found:
            raise ValueError(f"no check of {pattern} is waiting (known: {sorted(self.queues)})")
        return found

    async def __call__(self, target: CheckTarget) -> Outcome:
        name = f"{target.host}:{target.port}"
        up = await self.queues[name].get()
        self.taken[name] += 1
        return Outcome.ok() if up else Outcome.down(Reason.REFUSED, "scripted")


def _golden_config(text: str) -> Config:
    config = parse_text(text, "golden.cf")
    virtuals = tuple(
        dataclasses.replace(
            v,
            check=dataclasses.replace(
                v.check, checktimeout=3600, negotiatetimeout=3600, checkinterval=0.001
            ),
        )
        for v in config.virtuals
    )
    return dataclasses.replace(config, virtuals=virtuals)


async def _settle(director: Director) -> None:
    async with asyncio.timeout(STEP_TIMEOUT):
        for _ in range(3):  # let the checks' tasks and the applier run
            await asyncio.sleep(0.01)
        while not director.settled:
            await asyncio.sleep(0.005)


async def run_case(sections: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    transcript: list[str] = []
    sink = LoggingEventSink(keep_checks=False)
    sink.lines = transcript
    backend = DryRunBackend(
        parse_table(sections.get("kernel", [])),
        log=lambda line: transcript.append(line.removeprefix("[dry-run] ")),
    )
    script = ScriptedChecks()
    config = _golden_config("\n".join(sections["config"]) + "\n")
    director = Director(config, backend, sink, check=script, raise_fd_limit=False)
    await director.start()
    stopped = False
    result: tuple[list[str], list[str]] = ([], [])
    try:
        await _settle(director)
        for raw in sections.get("steps", []):
            words = raw.split("#", 1)[0].split()
            if not words:
                continue
            if words[0] == "check":
                names, verdict = script.names(words[1]), words[2] == "up"
                for _ in range(int(words[3]) if len(words) > 3 else 1):
                    before = {name: script.taken[name] for name in names}
                    for name in names:
                        script.queues[name].put_nowait(verdict)
                    async with asyncio.timeout(STEP_TIMEOUT):
                        while any(script.taken[n] <= before[n] for n in names):
                            await asyncio.sleep(0.002)
                    await _settle(director)
            elif words[0] == "reload":
                which = words[1] if len(words) > 1 else "2"
                text = "\n".join(sections[f"config.{which}"]) + "\n"
                await director.reload(_golden_config(text))
                await _settle(director)
            elif words[0] == "stop":
                await director.stop()
                stopped = True
            else:
                raise ValueError(f"unknown step: {raw!r}")
        result = (list(transcript), render_table(backend.table))
    finally:
        if not stopped:
            await director.stop()
    return result


CASES = sorted(GOLDEN.glob("*.golden"))


@pytest.mark.asyncio
@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
async def test_golden(path: Path) -> None:
    sections = read_sections(path.read_text())
    transcript, final = await run_case(sections)
    if os.environ.get("GOLDEN_UPDATE"):
        sections["expect"], sections["table"] = transcript, final
        path.write_text(write_sections(sections))
        return
    assert transcript == sections.get("expect", [])
    assert final == sections.get("table", [])


def test_table_format_round_trips() -> None:
    lines = [
        "-A -f 5 -6 -s wrr",
        "-a -f 5 -6 -x 0 -y 0 -r [2001:db8::2]:0 -g -w 1",
        "-A -t 192.168.6.240:80 -s wlc -p 300 -M 255.255.255.0",
        "-a -t 192.168.6.240:80 -x 10 -y 2 -r 10.0.0.1:80 -m -w 3",
        "-A -u 192.168.6.240:53 -o -s rr -b sh-port",
    ]
    table = parse_table(lines)
    assert sorted(render_table(table)) == sorted(lines)
