"""Our extensions ``rise=`` and ``fastinterval=``: parsed globally and per virtual, shown by
configtest, and honoured by the engine (a down real needs ``rise`` successes to come back)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from ldirectord.checks.base import CheckTarget, Outcome, Reason
from ldirectord.cli import main
from ldirectord.config.model import CheckSpec, Config, GlobalConfig
from ldirectord.config.values import EXTENSIONS, KNOWN
from ldirectord.engine.director import Director
from ldirectord.engine.events import LoggingEventSink
from ldirectord.forwarding.base import DestKey
from ldirectord.forwarding.dryrun import DryRunBackend
from tests.unit.test_config_support import cfg, lines, problems

V = "virtual=10.0.0.1:80"
R = "    real=10.0.0.2:80 gate"
V2 = "virtual=10.0.0.1:81"


# --- parsing ------------------------------------------------------------------------------


def test_defaults_are_ldirectords_behaviour() -> None:
    config = cfg(V, R)
    assert (config.globals.rise, config.globals.fastinterval) == (1, None)
    assert (GlobalConfig().rise, GlobalConfig().fastinterval) == (1, None)
    check = config.virtuals[0].check
    assert (check.rise, check.fastinterval) == (CheckSpec().rise, CheckSpec().fastinterval)
    assert (check.rise, check.fastinterval) == (1, None)
    assert config.extensions == ()


def test_global_values_reach_every_virtual() -> None:
    config = cfg("rise=3", "fastinterval=2", V, R, "", V2, R)
    assert (config.globals.rise, config.globals.fastinterval) == (3, 2.0)
    assert [(v.check.rise, v.check.fastinterval) for v in config.virtuals] == [(3, 2.0)] * 2
    assert config.extensions == ("fastinterval", "rise")


def test_a_virtual_overrides_the_global_value() -> None:
    config = cfg("rise=3", "fastinterval=2", V, R, "    rise=5", "    fastinterval=1", "", V2, R)
    assert [(v.check.rise, v.check.fastinterval) for v in config.virtuals] == [
        (5, 1.0),
        (3, 2.0),
    ]
    assert (config.globals.rise, config.globals.fastinterval) == (3, 2.0)


def test_only_in_a_virtual() -> None:
    config = cfg(V, R, "    rise=2", "", V2, R)
    assert [v.check.rise for v in config.virtuals] == [2, 1]
    assert config.globals.rise == 1
    assert config.extensions == ("rise",)


def test_fastinterval_in_a_virtual_needs_no_fork() -> None:
    """Unlike a per-virtual checkinterval (honoured only with fork=yes), it always applies."""
    config = cfg(V, R, "    fastinterval=3", "    checkinterval=4")
    check = config.virtuals[0].check
    assert (check.fastinterval, check.checkinterval) == (3.0, 10.0)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("rise=2", 2),
        ("rise = 4", 4),
        ("rise=3x", 3),
        ("rise=x7y8", 7),
        ("rise=2 # a comment: global lines keep it, the first digits count", 2),
        ("rise=007", 7),
    ],
)
def test_numbers_are_the_first_run_of_digits(text: str, value: int) -> None:
    assert cfg(text).globals.rise == value
    assert cfg(V, R, f"    {text}").virtuals[0].check.rise == value


def test_the_last_one_wins() -> None:
    assert cfg("rise=2", "rise=3").globals.rise == 3
    assert cfg(V, R, "    fastinterval=2", "    fastinterval=1").virtuals[0].check.fastinterval == 1


@pytest.mark.parametrize("name", sorted(EXTENSIONS))
@pytest.mark.parametrize("value", ["0", "00", "abc", ""])
def test_zero_or_no_digits_is_an_error_with_its_position(name: str, value: str) -> None:
    found = problems(f"{name}={value}")
    assert [(p.location.line, p.location.col, p.message) for p in found] == [
        (1, len(name) + 2, f"invalid {name} value")
    ]
    assert found[0].hint is not None and found[0].hint.startswith(f"{name}=N: ")
    assert str(found[0].location) == f"t.cf:1:{len(name) + 2}"
    in_block = problems(V, R, f"    {name}={value}")
    assert [(p.location.line, p.location.col, p.message) for p in in_block] == [
        (3, len(name) + 6, f"invalid {name} value")
    ]


def test_too_large_is_an_error() -> None:
    assert [p.message for p in problems("rise=1000000000")] == [
        "rise value too large (at most 999999999)"
    ]
    huge = "9" * 5000  # beyond Python's int() digit limit: still a clean error
    assert [p.message for p in problems(V, R, f"    fastinterval={huge}")] == [
        "fastinterval value too large (at most 999999999)"
    ]
    assert cfg("rise=999999999").globals.rise == 999_999_999


def test_every_error_is_reported_at_once() -> None:
    found = problems("rise=0", "fastinterval=x", V, R, "    rise=", "    fastinterval=0")
    assert [(p.location.line, p.message) for p in found] == [
        (1, "invalid rise value"),
        (2, "invalid fastinterval value"),
        (5, "invalid rise value"),
        (6, "invalid fastinterval value"),
    ]


def test_crlf_hint_wins_over_the_directive_hint() -> None:
    found = problems("rise=x\r")
    assert found[0].hint == "the file has Windows (CRLF) line endings: convert it with dos2unix"


@pytest.mark.parametrize(
    ("line", "hint"),
    [
        ("Rise=2", "directive names are lowercase: rise"),
        ("raise=2", "did you mean rise?"),
        ("fastintervall=2", "did you mean fastinterval?"),
        ("  rise=2", "lines inside a virtual block must be indented by at least 4 spaces or a tab"),
    ],
)
def test_misspelt_or_misplaced_lines_get_a_hint(line: str, hint: str) -> None:
    found = problems(line)
    assert found[0].message == f'Unknown command "{line.strip()}"'
    assert found[0].hint == hint


def test_they_are_not_ldirectord_directives() -> None:
    """values.KNOWN is ldirectord's vocabulary (the golden every-directive.cf covers it)."""
    assert EXTENSIONS.isdisjoint(KNOWN)


def test_a_fastinterval_not_below_checkinterval_is_a_warning() -> None:
    config = cfg("checkinterval=5", "fastinterval=5", V, R, "    fastinterval=6", "", V2, R)
    assert config.warnings == (
        "t.cf:2:14: fastinterval 5 s is not shorter than the checkinterval of the global "
        "section (5 s): it changes nothing "
        "(hint: fastinterval only ever shortens the wait after a failed check)",
        "t.cf:5:18: fastinterval 6 s is not shorter than the checkinterval of virtual service "
        "tcp:10.0.0.1:80 (5 s): it changes nothing "
        "(hint: fastinterval only ever shortens the wait after a failed check)",
    )
    assert cfg("checkinterval=5", "fastinterval=4", V, R).warnings == ()


# --- configtest ---------------------------------------------------------------------------


def _write(tmp_path: Path, *text: str) -> str:
    path = tmp_path / "ld.cf"
    path.write_text(lines(*text))
    return str(path)


def test_json_shows_global_and_per_virtual_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "rise=2", "fastinterval=3", V, R, "    rise=4", "", V2, R)
    assert main([path, "configtest", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["globals"]["rise"], data["globals"]["fastinterval"]) == (2, 3)
    assert [(v["rise"], v["fastinterval"]) for v in data["virtuals"]] == [(4, 3), (2, 3)]
    assert data["extensions"] == ["fastinterval", "rise"]


def test_json_without_extensions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([_write(tmp_path, V, R), "configtest", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["globals"]["rise"], data["globals"]["fastinterval"]) == (1, None)
    assert (data["virtuals"][0]["rise"], data["virtuals"][0]["fastinterval"]) == (1, None)
    assert data["extensions"] == []


def test_summary_says_when_extensions_are_used(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([_write(tmp_path, V, R, "    rise=2"), "configtest"]) == 0
    out = capsys.readouterr().out
    assert out.endswith(
        "0 warnings. Uses our extension rise: Perl ldirectord would reject this file.\n"
    )
    assert out.count("\n") == 1
    assert main([_write(tmp_path, "fastinterval=1", V, R, "    rise=2"), "configtest"]) == 0
    assert "Uses our extensions fastinterval, rise: Perl ldirectord" in capsys.readouterr().out
    assert main([_write(tmp_path, V, R), "configtest"]) == 0
    assert "extension" not in capsys.readouterr().out


def test_errors_in_configtest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, V, R, "    rise=0")
    assert main([path, "configtest"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"{path}:3:10: invalid rise value (hint: rise=N: ")
    assert err[-1] == "1 error(s): configuration not valid"


# --- the engine ---------------------------------------------------------------------------


class Steps:
    """A check answered from a queue the test fills; with the queue empty a check waits."""

    def __init__(self) -> None:
        self.answers: asyncio.Queue[bool] = asyncio.Queue()
        self.calls = 0

    async def __call__(self, target: CheckTarget) -> Outcome:
        self.calls += 1
        up = await self.answers.get()
        return Outcome.ok() if up else Outcome.down(Reason.REFUSED, "scripted")


async def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def _fast(config: Config) -> Config:
    """The parsed config with a 50 ms checkinterval (the file's minimum is 1 s)."""
    virtuals = tuple(
        dataclasses.replace(v, check=dataclasses.replace(v.check, checkinterval=0.05))
        for v in config.virtuals
    )
    return dataclasses.replace(config, virtuals=virtuals)


@pytest.mark.asyncio
@pytest.mark.parametrize("rise", [1, 2])
async def test_a_down_real_needs_rise_successes_to_come_back(rise: int) -> None:
    text = ["checktimeout=30", f"rise={rise}", V, R, "    checktype=connect"]
    config = _fast(cfg(*text))
    assert config.virtuals[0].check.rise == rise
    backend, steps = DryRunBackend(), Steps()
    real = DestKey("10.0.0.2", 80)

    def in_table() -> bool:
        service = next(iter(backend.table.services.values()), None)
        return service is not None and real in service.dests

    director = Director(config, backend, LoggingEventSink(), check=steps, raise_fd_limit=False)
    await director.start()
    try:
        steps.answers.put_nowait(True)  # check 1: the first success always puts it in
        assert await director.wait_first_checks(10)
        await _until(in_table)
        steps.answers.put_nowait(False)  # check 2: down (failurecount=1), deleted
        await _until(lambda: not in_table())
        steps.answers.put_nowait(True)  # check 3: one success
        if rise == 1:
            await _until(in_table)
            return
        await _until(lambda: steps.calls >= 4)  # check 3 delivered, check 4 is waiting
        await asyncio.sleep(0.3)  # room for a (wrong) table change to happen
        assert not in_table()
        assert director.snapshot().virtuals[0].reals[0].state == "rising"
        steps.answers.put_nowait(True)  # check 4: the second success in a row
        await _until(in_table)
    finally:
        await director.stop()
