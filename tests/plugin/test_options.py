"""The plugin's option parser and main() in-process: parsing rules and the fail-safe paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from ldirectord.nagios import check_pulse
from ldirectord.nagios.options import Options, UsageError, parse_args
from ldirectord.nagios.ranges import parse_range


def test_defaults() -> None:
    opts = parse_args([])
    assert opts.path == "/var/run/ldirectord.ldirectord.pulse"
    assert (opts.warning, opts.critical) == (parse_range("120"), parse_range("300"))
    assert (opts.timeout, opts.min_up, opts.verbose, opts.ignore_missing) == (10.0, None, 0, False)


@pytest.mark.parametrize(
    "args",
    [
        ["-f", "/p", "-w", "~:10", "-c", "@1:2", "-t", "2.5", "--min-up", "3", "-i", "-vv"],
        ["-f/p", "-w~:10", "-c@1:2", "-t2.5", "--min-up=3", "-iv", "-v"],
        [
            "--file=/p",
            "--warning",
            "~:10",
            "--critical=@1:2",
            "--timeout",
            "2.5",
            "--min-up",
            "3",
            "--ignore-missing",
            "--verbose",
            "--verbose",
        ],
    ],
)
def test_spellings_agree(args: list[str]) -> None:
    opts = parse_args(args)
    assert opts.path == "/p"
    assert (opts.warning.text, opts.critical.text) == ("~:10", "@1:2")
    assert (opts.timeout, opts.min_up, opts.ignore_missing, opts.verbose) == (2.5, 3, True, 2)


def test_last_value_wins() -> None:
    assert parse_args(["-w", "1", "-w", "2"]).warning.text == "2"


def test_value_may_look_like_an_option() -> None:
    assert parse_args(["-f", "-v"]).path == "-v"
    assert parse_args(["-w", "-5:5"]).warning.text == "-5:5"


def test_name_and_rundir() -> None:
    assert parse_args(["-n", "web", "--rundir", "/run"]).path == "/run/ldirectord.web.pulse"
    assert parse_args(["--rundir", "/run"]).path == "/run/ldirectord.ldirectord.pulse"


@pytest.mark.parametrize("args", [["-"], ["--"], ["-w"], ["--min-up", "1.5"], ["-t", "1e999"]])
def test_usage_errors(args: list[str]) -> None:
    with pytest.raises(UsageError):
        parse_args(args)


def test_internal_error_becomes_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    def broken(path: str, stage: list[str]) -> check_pulse.Observation:
        stage[0] = "reading"
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(check_pulse, "acquire", broken)
    assert check_pulse.main(["-f", str(tmp_path / "p")]) == 3
    out = capfd.readouterr().out
    assert out == (
        "UNKNOWN: internal error while reading the pulse file: RuntimeError: disk on fire\n"
    )


def test_error_outside_the_worker_becomes_unknown(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    def broken(argv: list[str]) -> Options:
        raise MemoryError

    monkeypatch.setattr(check_pulse, "parse_args", broken)
    assert check_pulse.main([]) == 3
    assert capfd.readouterr().out == "UNKNOWN: internal error: MemoryError\n"


def test_main_returns_the_state(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    pulse = tmp_path / "p"
    pulse.write_bytes(b"")
    assert check_pulse.main(["-f", str(pulse)]) == 0
    assert capfd.readouterr().out.startswith("OK: ldirectord pulse is regular (0 seconds")
