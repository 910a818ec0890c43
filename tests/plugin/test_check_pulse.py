"""check_ldirectord_pulse end to end: the plugin as a subprocess on real pulse files.

Every test asserts the exit code and the first line (the part Nagios and pagers see).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.plugin.helpers import (
    PLUGIN_MODULE,
    SCRIPT,
    as_nobody_prefix,
    dead_pid,
    drop_dac_prefix,
    make_doc,
    run_aged,
    run_plugin,
    set_age,
    write_pulse,
)

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3


# --- the mtime-only pulse: states and boundaries ------------------------------------------


def test_ok_line_word_for_word(pulse: Path) -> None:
    r = run_aged(pulse, 4)
    assert (r.code, r.stdout) == (
        OK,
        "OK: ldirectord pulse is regular (4 seconds since last beat) | age=4s;120;300;0;\n",
    )
    assert r.stderr == ""


def test_fresh_pulse_is_ok(pulse: Path) -> None:
    r = run_aged(pulse, 0)
    assert (r.code, r.first) == (
        OK,
        "OK: ldirectord pulse is regular (0 seconds since last beat) | age=0s;120;300;0;",
    )


def test_one_second_is_singular(pulse: Path) -> None:
    r = run_aged(pulse, 1)
    assert r.first.startswith("OK: ldirectord pulse is regular (1 second since last beat) |")


@pytest.mark.parametrize(
    ("age", "code", "first"),
    [
        (120, OK, "OK: ldirectord pulse is regular (120 seconds since last beat)"),
        (121, WARNING, "WARNING: ldirectord pulse is late (121 seconds since last beat)"),
        (150, WARNING, "WARNING: ldirectord pulse is late (150 seconds since last beat)"),
        (300, WARNING, "WARNING: ldirectord pulse is late (300 seconds since last beat)"),
        (301, CRITICAL, "CRITICAL: ldirectord pulse has stopped (301 seconds since last beat)"),
        (86400, CRITICAL, "CRITICAL: ldirectord pulse has stopped (86400 seconds since last beat)"),
    ],
)
def test_default_thresholds_and_their_boundaries(
    pulse: Path, age: int, code: int, first: str
) -> None:
    r = run_aged(pulse, age)
    assert (r.code, r.first) == (code, f"{first} | age={age}s;120;300;0;")


@pytest.mark.parametrize(
    ("args", "age", "code"),
    [
        (("-w", "10", "-c", "20"), 10, OK),
        (("-w", "10", "-c", "20"), 11, WARNING),
        (("-w", "10", "-c", "20"), 20, WARNING),
        (("-w", "10", "-c", "20"), 21, CRITICAL),
        (("-w10", "-c20"), 21, CRITICAL),
        (("--warning=10", "--critical", "20"), 15, WARNING),
        # ~: no lower bound
        (("-w", "~:10", "-c", "~:20"), 10, OK),
        (("-w", "~:10", "-c", "~:20"), 11, WARNING),
        (("-w", "~:10", "-c", "~:20"), 21, CRITICAL),
        # start: alerts below start (a pulse younger than 10 s)
        (("-w", "10:", "-c", "~:"), 9, WARNING),
        (("-w", "10:", "-c", "~:"), 10, OK),
        (("-w", "10:", "-c", "~:"), 5000, OK),
        # @: alerts inside
        (("-w", "1000", "-c", "@100:200"), 99, OK),
        (("-w", "1000", "-c", "@100:200"), 100, CRITICAL),
        (("-w", "1000", "-c", "@100:200"), 200, CRITICAL),
        (("-w", "1000", "-c", "@100:200"), 201, OK),
        # start:end
        (("-w", "5:60", "-c", "~:"), 4, WARNING),
        (("-w", "5:60", "-c", "~:"), 5, OK),
        (("-w", "5:60", "-c", "~:"), 61, WARNING),
        # fractional thresholds against whole-second ages
        (("-w", "10.5", "-c", "20"), 10, OK),
        (("-w", "10.5", "-c", "20"), 11, WARNING),
    ],
)
def test_ranges(pulse: Path, args: tuple[str, ...], age: int, code: int) -> None:
    r = run_aged(pulse, age, *args)
    assert r.code == code, r.stdout
    assert r.first.startswith(("OK: ", "WARNING: ", "CRITICAL: ")[code])


def test_critical_is_judged_before_warning(pulse: Path) -> None:
    # An age in both alert ranges is CRITICAL, whatever the order of the options.
    r = run_aged(pulse, 50, "-c", "10", "-w", "20")
    assert (r.code, r.first) == (
        CRITICAL,
        "CRITICAL: ldirectord pulse has stopped (50 seconds since last beat) | age=50s;20;10;0;",
    )


def test_range_alert_not_past_the_end_is_worded_as_a_range(pulse: Path) -> None:
    r = run_aged(pulse, 150, "-w", "1000", "-c", "@100:200")
    assert r.code == CRITICAL
    assert r.first.startswith(
        "CRITICAL: ldirectord pulse age alerts on critical range @100:200 "
        "(150 seconds since last beat) | age=150s;1000;@100:200;0;"
    )


def test_perfdata_echoes_ranges_verbatim(pulse: Path) -> None:
    r = run_aged(pulse, 3, "-w", "~:60", "-c", "@400:500")
    assert r.first.endswith("| age=3s;~:60;@400:500;0;")


def test_whitespace_only_file_is_an_empty_pulse(pulse: Path) -> None:
    pulse.write_bytes(b"\n")
    r = run_aged(pulse, 2)
    assert (r.code, r.first) == (
        OK,
        "OK: ldirectord pulse is regular (2 seconds since last beat) | age=2s;120;300;0;",
    )


def test_empty_pulse_verbose_says_mtime_only(pulse: Path) -> None:
    r = run_aged(pulse, 2, "-v")
    assert r.code == OK
    assert r.lines[1:] == [
        f"pulse file {pulse}",
        "the pulse file is empty: judged by its mtime only",
    ]


# --- clock steps --------------------------------------------------------------------------


def test_future_mtime_is_a_warning_that_says_so(pulse: Path) -> None:
    set_age(pulse, -3600)
    r = run_plugin("-f", str(pulse))
    assert r.code == WARNING
    assert r.first.startswith(
        "WARNING: ldirectord pulse mtime is 3600 seconds in the future (clock step?) | age=-3600s;"
    ) or r.first.startswith("WARNING: ldirectord pulse mtime is 3599 seconds in the future")


def test_future_mtime_is_not_critical_even_with_tight_ranges(pulse: Path) -> None:
    set_age(pulse, -600)
    r = run_plugin("-f", str(pulse), "-w", "10", "-c", "20")
    assert r.code == WARNING
    assert "in the future (clock step?)" in r.first


def test_mtime_within_a_second_ahead_counts_as_now(pulse: Path) -> None:
    set_age(pulse, -0.5)
    r = run_plugin("-f", str(pulse))
    assert (r.code, r.first) == (
        OK,
        "OK: ldirectord pulse is regular (0 seconds since last beat) | age=0s;120;300;0;",
    )


# --- which file ---------------------------------------------------------------------------


def test_missing_file_is_critical_and_says_not_running(tmp_path: Path) -> None:
    path = tmp_path / "ldirectord.ldirectord.pulse"
    r = run_plugin("-f", str(path))
    assert (r.code, r.first) == (
        CRITICAL,
        f"CRITICAL: pulse file {path} does not exist: ldirectord is probably not running",
    )


@pytest.mark.parametrize("flag", ["-i", "--ignore-missing"])
def test_ignore_missing_makes_it_ok(tmp_path: Path, flag: str) -> None:
    path = tmp_path / "nope.pulse"
    r = run_plugin("-f", str(path), flag)
    assert (r.code, r.first) == (
        OK,
        f"OK: pulse file {path} does not exist (ignored by --ignore-missing)",
    )


def test_ignore_missing_does_not_hide_a_stale_pulse(pulse: Path) -> None:
    assert run_aged(pulse, 400, "-i").code == CRITICAL


def test_name_and_rundir(tmp_path: Path) -> None:
    (tmp_path / "ldirectord.web.cf.pulse").write_bytes(b"")
    r = run_plugin("-n", "web.cf", "--rundir", str(tmp_path))
    assert r.code == OK, r.stdout
    r = run_plugin("--name=other", f"--rundir={tmp_path}")
    assert r.code == CRITICAL
    assert f"pulse file {tmp_path}/ldirectord.other.pulse does not exist" in r.first


def test_default_name_is_ldirectord(tmp_path: Path) -> None:
    (tmp_path / "ldirectord.ldirectord.pulse").write_bytes(b"")
    assert run_plugin("--rundir", str(tmp_path)).code == OK


def test_default_path_is_var_run() -> None:
    default = Path("/var/run/ldirectord.ldirectord.pulse")
    if default.exists():
        pytest.skip(f"{default} exists on this machine: the missing-file text cannot be checked")
    r = run_plugin("-i")
    assert (r.code, r.first) == (
        OK,
        f"OK: pulse file {default} does not exist (ignored by --ignore-missing)",
    )


def test_directory_instead_of_file(tmp_path: Path) -> None:
    r = run_plugin("-f", str(tmp_path))
    assert (r.code, r.first) == (
        UNKNOWN,
        f"UNKNOWN: cannot use pulse file {tmp_path}: it is a directory, not a file",
    )


def test_fifo_is_not_a_regular_file_once_opened(tmp_path: Path) -> None:
    fifo = tmp_path / "pulse.fifo"
    os.mkfifo(fifo)
    # Hold a writer open so that opening for read does not block.
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    try:
        r = run_plugin("-f", str(fifo))
    finally:
        os.close(fd)
    assert (r.code, r.first) == (
        UNKNOWN,
        f"UNKNOWN: cannot use pulse file {fifo}: it is not a regular file",
    )


def test_unreadable_file_is_unknown(world_dir: Callable[[], Path]) -> None:
    path = world_dir() / "ldirectord.ldirectord.pulse"
    path.write_bytes(b"")
    path.chmod(0o000)
    prefix = drop_dac_prefix()
    probe = subprocess.run([*prefix, "cat", str(path)], capture_output=True, check=False)
    if probe.returncode == 0:
        pytest.skip("dropping DAC capabilities did not make a mode-000 file unreadable here")
    r = run_plugin("-f", str(path), prefix=prefix)
    assert (r.code, r.first) == (
        UNKNOWN,
        f"UNKNOWN: cannot use pulse file {path}: cannot open it: Permission denied",
    )


def test_symlink_to_pulse_is_followed(pulse: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.pulse"
    link.symlink_to(pulse)
    assert run_aged(link, 5).code == OK


def test_dangling_symlink_is_missing(tmp_path: Path) -> None:
    link = tmp_path / "link.pulse"
    link.symlink_to(tmp_path / "gone")
    assert run_plugin("-f", str(link)).code == CRITICAL


# --- schema-1 content ---------------------------------------------------------------------


def test_schema1_all_well(pulse: Path) -> None:
    write_pulse(pulse, make_doc())
    r = run_aged(pulse, 4)
    assert (r.code, r.stdout) == (
        OK,
        "OK: ldirectord pulse is regular (4 seconds since last beat)"
        " | age=4s;120;300;0; '192.168.6.240:80'=2;;;0;3\n",
    )


def test_dead_pid_is_critical_while_fresh(pulse: Path) -> None:
    pid = dead_pid()
    write_pulse(pulse, make_doc(pid=pid))
    r = run_aged(pulse, 3)
    assert r.code == CRITICAL
    assert r.first.startswith(
        f"CRITICAL: ldirectord pid {pid} is gone; "
        "ldirectord pulse is regular (3 seconds since last beat) | age=3s;"
    )


def test_pid_of_another_user_counts_as_alive(world_dir: Callable[[], Path]) -> None:
    # As the nagios user, os.kill(root's pid, 0) fails with EPERM: the process exists.
    prefix = as_nobody_prefix()
    path = world_dir() / "ldirectord.ldirectord.pulse"
    write_pulse(path, make_doc(pid=os.getpid()))
    path.chmod(0o644)
    r = run_aged(path, 2, prefix=prefix)
    if r.code == UNKNOWN and "Permission denied" in r.first:
        pytest.skip("the nobody user cannot reach the temp dir here")
    assert (r.code, r.first.split(" | ")[0]) == (
        OK,
        "OK: ldirectord pulse is regular (2 seconds since last beat)",
    )


def test_zero_up_virtual_is_critical_and_named(pulse: Path) -> None:
    doc = make_doc(virtuals=[("192.168.6.240:80", 2, 3, False), ("[2001:db8::1]:443", 0, 3, False)])
    write_pulse(pulse, doc)
    r = run_aged(pulse, 4)
    assert (r.code, r.first) == (
        CRITICAL,
        "CRITICAL: virtual [2001:db8::1]:443 (0 of 3) has no real server up and no fallback; "
        "ldirectord pulse is regular (4 seconds since last beat) | age=4s;120;300;0; "
        "'192.168.6.240:80'=2;;;0;3 '[2001:db8::1]:443'=0;;;0;3",
    )


def test_many_zero_up_virtuals_are_counted(pulse: Path) -> None:
    doc = make_doc(virtuals=[(f"10.0.0.{i}:80", 0, 2, False) for i in range(1, 6)])
    write_pulse(pulse, doc)
    r = run_aged(pulse, 4)
    assert r.code == CRITICAL
    assert r.first.startswith(
        "CRITICAL: 5 virtuals have no real server up and no fallback: "
        "10.0.0.1:80 (0 of 2), 10.0.0.2:80 (0 of 2), 10.0.0.3:80 (0 of 2) and 2 more; "
    )


def test_virtual_with_no_reals_at_all_is_critical(pulse: Path) -> None:
    write_pulse(pulse, make_doc(virtuals=[("10.0.0.1:80", 0, 0, False)]))
    r = run_aged(pulse, 4)
    assert r.code == CRITICAL
    assert r.first.startswith("CRITICAL: virtual 10.0.0.1:80 (0 of 0) has no real server up")


def test_fallback_active_with_zero_up_is_ok(pulse: Path) -> None:
    write_pulse(pulse, make_doc(virtuals=[("10.0.0.1:80", 0, 3, True)]))
    r = run_aged(pulse, 4)
    assert (r.code, r.first) == (
        OK,
        "OK: ldirectord pulse is regular (4 seconds since last beat)"
        " | age=4s;120;300;0; '10.0.0.1:80'=0;;;0;3",
    )


def test_min_up_warns_below_n(pulse: Path) -> None:
    write_pulse(
        pulse, make_doc(virtuals=[("10.0.0.1:80", 1, 3, False), ("10.0.0.2:80", 2, 3, False)])
    )
    r = run_aged(pulse, 4, "--min-up", "2")
    assert (r.code, r.first) == (
        WARNING,
        "WARNING: virtual 10.0.0.1:80 (1 of 3) has fewer than 2 real servers up; "
        "ldirectord pulse is regular (4 seconds since last beat) | age=4s;120;300;0; "
        "'10.0.0.1:80'=1;2:;;0;3 '10.0.0.2:80'=2;2:;;0;3",
    )


def test_min_up_exactly_n_is_ok(pulse: Path) -> None:
    write_pulse(pulse, make_doc(virtuals=[("10.0.0.1:80", 2, 3, False)]))
    assert run_aged(pulse, 4, "--min-up=2").code == OK


def test_min_up_warns_about_a_virtual_on_its_fallback(pulse: Path) -> None:
    write_pulse(pulse, make_doc(virtuals=[("10.0.0.1:80", 0, 3, True)]))
    r = run_aged(pulse, 4, "--min-up", "1")
    assert r.code == WARNING
    assert r.first.startswith("WARNING: virtual 10.0.0.1:80 (0 of 3) has fewer than 1 real")


def test_zero_up_beats_min_up_and_late_pulse(pulse: Path) -> None:
    write_pulse(
        pulse, make_doc(virtuals=[("10.0.0.1:80", 0, 3, False), ("10.0.0.2:80", 1, 3, False)])
    )
    r = run_aged(pulse, 200, "--min-up", "2")
    assert r.code == CRITICAL
    assert r.first.startswith(
        "CRITICAL: virtual 10.0.0.1:80 (0 of 3) has no real server up and no fallback; "
        "ldirectord pulse is late (200 seconds since last beat); "
        "virtual 10.0.0.2:80 (1 of 3) has fewer than 2 real servers up | "
    )


def test_verbose_lists_every_virtual(pulse: Path) -> None:
    doc = make_doc(virtuals=[("192.168.6.240:80", 2, 3, False), ("7", 0, 2, True)])
    write_pulse(pulse, doc)
    r = run_aged(pulse, 4, "-v")
    assert r.code == OK
    assert r.lines[1] == f"pulse file {pulse}"
    assert r.lines[2].startswith(f"pid {os.getpid()} (alive), config /etc/ha.d/ldirectord.cf, ")
    assert r.lines[3:] == [
        "192.168.6.240:80 tcp: 2 of 3 real servers up",
        "7 tcp: 0 of 2 real servers up, fallback active",
    ]
    assert "|" not in "\n".join(r.lines[1:])


def test_truncated_json_is_unknown(pulse: Path) -> None:
    data = write_pulse(pulse, make_doc()).read_bytes()
    pulse.write_bytes(data[: len(data) // 2])
    r = run_aged(pulse, 4)
    assert r.code == UNKNOWN
    assert r.first.startswith(
        f"UNKNOWN: pulse file {pulse} has invalid content: truncated or invalid JSON ("
    )
    assert r.first.endswith(
        "; ldirectord pulse is regular (4 seconds since last beat) | age=4s;120;300;0;"
    )


def test_garbage_is_unknown(pulse: Path) -> None:
    pulse.write_bytes(b"\x00\xff\xfe garbage")
    r = run_aged(pulse, 4)
    assert r.code == UNKNOWN
    assert "has invalid content: not UTF-8 text" in r.first


def test_stale_and_truncated_is_still_critical(pulse: Path) -> None:
    pulse.write_bytes(b'{"schema": 1, "pid": 12')
    r = run_aged(pulse, 400)
    assert r.code == CRITICAL
    assert r.first.startswith(
        "CRITICAL: ldirectord pulse has stopped (400 seconds since last beat);"
    )


def test_unknown_schema_is_unknown_and_named(pulse: Path) -> None:
    pulse.write_bytes(b'{"schema": 2, "whatever": []}\n')
    r = run_aged(pulse, 4)
    assert (r.code, r.first) == (
        UNKNOWN,
        f"UNKNOWN: pulse file {pulse} has schema 2; this plugin reads schema 1; "
        "ldirectord pulse is regular (4 seconds since last beat) | age=4s;120;300;0;",
    )


def test_wrongly_typed_field_is_unknown(pulse: Path) -> None:
    pulse.write_bytes(
        b'{"schema": 1, "pid": "4242", "config": "x", "started": 1, "beat": 2,'
        b' "checks_completed": 0, "virtuals": []}\n'
    )
    r = run_aged(pulse, 4)
    assert r.code == UNKNOWN
    assert "has invalid content: 'pid' must be a positive whole number, got a string" in r.first


def test_unknown_keys_are_ignored(pulse: Path) -> None:
    pulse.write_bytes(
        b'{"schema": 1, "pid": %d, "config": "x", "started": 1, "beat": 2, "new": {"a": 1},'
        b' "checks_completed": 0, "virtuals": [{"name": "v", "protocol": "udp", "reals_up": 1,'
        b' "reals_total": 1, "fallback_active": false, "weight": 5}]}\n' % os.getpid()
    )
    r = run_aged(pulse, 4)
    assert (r.code, r.first) == (
        OK,
        "OK: ldirectord pulse is regular (4 seconds since last beat) | age=4s;120;300;0; 'v'=1;;;0;1",
    )


def test_hostile_virtual_names_cannot_break_the_output(pulse: Path) -> None:
    pulse.write_bytes(
        b'{"schema": 1, "pid": %d, "config": "x\\ny", "started": 1, "beat": 2,'
        b' "checks_completed": 0, "virtuals": [{"name": "a|b\\nc=\'d", "protocol": "tcp",'
        b' "reals_up": 0, "reals_total": 1, "fallback_active": false}]}\n' % os.getpid()
    )
    r = run_aged(pulse, 4, "-v")
    assert r.code == CRITICAL
    assert r.first.count("|") == 1
    assert r.first.endswith("'a_b\\nc_''d'=0;;;0;1")
    assert len(r.lines) == 4


# --- timeout ------------------------------------------------------------------------------


def test_timeout_is_unknown_and_names_the_stage(tmp_path: Path) -> None:
    # Opening a FIFO with no writer blocks, as a read on a dead NFS mount would.
    fifo = tmp_path / "pulse.fifo"
    os.mkfifo(fifo)
    started = time.monotonic()
    r = run_plugin("-f", str(fifo), "-t", "1")
    elapsed = time.monotonic() - started
    assert (r.code, r.first) == (
        UNKNOWN,
        f"UNKNOWN: timed out after 1 second while opening pulse file {fifo}",
    )
    assert elapsed < 1 + 20  # finished within its deadline plus a generous margin


def test_fractional_timeout(tmp_path: Path) -> None:
    fifo = tmp_path / "pulse.fifo"
    os.mkfifo(fifo)
    r = run_plugin("-f", str(fifo), "--timeout=0.5")
    assert (r.code, r.first) == (
        UNKNOWN,
        f"UNKNOWN: timed out after 0.5 seconds while opening pulse file {fifo}",
    )


# --- command line -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--bogus"], "unknown option --bogus"),
        (["-x"], "unknown option -x"),
        (["-w"], "option -w needs a value"),
        (["--critical"], "option --critical needs a value"),
        (["-w", "abc"], "-w: 'abc' in range 'abc' is not a number"),
        (["-c", "20:10"], "-c: range '20:10' starts after it ends"),
        (["-w", ""], "-w: empty range ''"),
        (["-w", "@"], "-w: empty range '@'"),
        (["-w", "1e3"], "-w: '1e3' in range '1e3' is not a number"),
        (["-t", "0"], "-t needs seconds between 0 and 86400, not '0'"),
        (["-t", "abc"], "-t needs seconds between 0 and 86400, not 'abc'"),
        (["--timeout=nan"], "--timeout needs seconds between 0 and 86400, not 'nan'"),
        (["--min-up", "-1"], "--min-up needs a whole number, not '-1'"),
        (["--min-up=two"], "--min-up needs a whole number, not 'two'"),
        (["pulsefile"], "unexpected argument 'pulsefile' (this plugin takes options only)"),
        (["--", "-f"], "unexpected argument '--' (this plugin takes options only)"),
        (["-f", "a", "-n", "b"], "give either -f/--file or -n/--name and --rundir, not both"),
        (
            ["-f", "a", "--rundir", "/tmp"],
            "give either -f/--file or -n/--name and --rundir, not both",
        ),
        (["--file="], "--file needs a non-empty value"),
        (["-n", "a/b"], "-n: an instance name cannot contain '/' (use -f for a path)"),
        (["--verbose=2"], "option --verbose takes no value"),
        (["--warn", "10"], "unknown option --warn"),  # no abbreviations
    ],
)
def test_bad_arguments_are_unknown(args: list[str], reason: str) -> None:
    r = run_plugin(*args)
    assert (r.code, r.first) == (UNKNOWN, f"UNKNOWN: {reason}")
    assert r.lines[1].startswith("Usage: check_ldirectord_pulse ")
    assert r.stderr == ""


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_exits_unknown(flag: str) -> None:
    r = run_plugin(flag)
    assert r.code == UNKNOWN
    assert r.first.startswith("check_ldirectord_pulse v")
    for option in (
        "--file",
        "--name",
        "--rundir",
        "--warning",
        "--critical",
        "--min-up",
        "--ignore-missing",
        "--timeout",
        "--verbose",
        "--version",
        "--help",
    ):
        assert option in r.stdout
    assert all(len(line) <= 80 for line in r.lines)


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version_exits_unknown(flag: str) -> None:
    from ldirectord import __version__

    r = run_plugin(flag)
    assert (r.code, r.stdout) == (
        UNKNOWN,
        f"check_ldirectord_pulse v{__version__} (ldirectord for Python {__version__})\n",
    )


def test_bundled_short_flags(tmp_path: Path) -> None:
    r = run_plugin("-ivf", str(tmp_path / "nope"))
    assert r.code == OK
    r = run_plugin(f"-f{tmp_path / 'nope'}", "-i")
    assert r.code == OK


def test_negative_looking_range_value(pulse: Path) -> None:
    r = run_aged(pulse, 4, "-w", "-10:10")
    assert (r.code, r.first) == (
        OK,
        "OK: ldirectord pulse is regular (4 seconds since last beat) | age=4s;-10:10;300;0;",
    )


def test_module_and_console_script_agree(pulse: Path) -> None:
    if not SCRIPT.exists():
        pytest.skip(f"{SCRIPT} is not installed (pip install -e .)")
    set_age(pulse, 500)
    via_script = run_plugin("-f", str(pulse))
    via_module = subprocess.run(
        [*PLUGIN_MODULE, "-f", str(pulse)], capture_output=True, text=True, check=False, timeout=60
    )
    assert via_script.code == via_module.returncode == CRITICAL
    assert via_module.stdout.startswith("CRITICAL: ldirectord pulse has stopped (50")


def test_closed_stdout_still_gives_the_exit_code(pulse: Path) -> None:
    set_age(pulse, 500)
    proc = subprocess.run(
        [*PLUGIN_MODULE, "-f", str(pulse)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
        timeout=60,
        pass_fds=(),
        preexec_fn=lambda: os.close(1),
    )
    assert proc.returncode == CRITICAL
    assert proc.stderr == b""


def test_imports_only_stdlib_and_pulse_format(pulse: Path) -> None:
    write_pulse(pulse, make_doc())
    code = (
        "import sys; before = set(sys.modules)\n"
        "import ldirectord.nagios.check_pulse as c\n"
        f"rc = c.main(['-f', {str(pulse)!r}])\n"
        "print(); print(' '.join(sorted(set(sys.modules) - before)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = proc.stdout.strip().splitlines()[-1].split()
    ours = {m for m in loaded if m.split(".")[0] == "ldirectord"}
    assert ours == {
        "ldirectord",
        "ldirectord.nagios",
        "ldirectord.nagios.check_pulse",
        "ldirectord.nagios.options",
        "ldirectord.nagios.ranges",
        "ldirectord.pulse_format",
    }
    foreign = [m for m in loaded if m.split(".")[0] not in sys.stdlib_module_names | {"ldirectord"}]
    assert foreign == []
    assert not {"asyncio", "typing", "argparse", "threading", "dataclasses", "json", "re"} & set(
        loaded
    )


def test_empty_pulse_does_not_import_the_format_module(pulse: Path) -> None:
    code = (
        "import sys\n"
        "import ldirectord.nagios.check_pulse as c\n"
        f"rc = c.main(['-f', {str(pulse)!r}])\n"
        "print(); print('json' in sys.modules, 'ldirectord.pulse_format' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert proc.stdout.strip().splitlines()[-1] == "False False"


def test_oversized_file_is_not_a_pulse(pulse: Path) -> None:
    with pulse.open("wb") as fh:
        fh.truncate(5 * 1024 * 1024)  # sparse: 5 MiB of zeros
    r = run_aged(pulse, 4)
    assert (r.code, r.first) == (
        UNKNOWN,
        f"UNKNOWN: cannot use pulse file {pulse}: it is larger than 4194304 bytes",
    )
