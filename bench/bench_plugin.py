"""Wall time of ``check_ldirectord_pulse`` beside a bare interpreter and ``check_file_age``.

Owns one measurement: how long a monitoring system waits for each plugin run on the same
pulse file. Each command is started ``N`` times (5 with ``quick``, 50 otherwise), interleaved
round by round so machine noise hits every row alike, after one unmeasured warm-up run; the
table gives the median, the fastest and the 90th percentile, and the median as a multiple of
``python -I -S -c pass`` (the floor for any Python plugin). ``check_file_age`` is the Perl
plugin from Debian's monitoring-plugins-basic; its row says so when it is not installed.

``run(quick) -> list[dict]`` is what ``python -m bench`` imports; ``python -m bench.bench_plugin
[--quick]`` prints the table alone.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import markdown_table, median, percentile, ratio

TITLE = "The plugin: check_ldirectord_pulse wall time"
METHOD = (
    "Each command ran N times on the same pulse file (N = 50; 5 with --quick), interleaved "
    "round by round after one warm-up run, stdout captured, the plugin byte-compiled first "
    "(as a package install leaves it); wall time from just before the "
    "fork to the exit, in milliseconds; `cpu ms` is the median user + system time of the child "
    "(steadier than wall time on a busy machine). `empty` is the mtime-only pulse (no JSON decoded), "
    "`schema 1` a pulse with three virtual services (JSON decoded, pid probed). The baseline "
    "is `python -I -S -c pass` of the same interpreter; `check_file_age` is monitoring-plugins' "
    "Perl plugin from Debian (`-w 120 -c 300 -f FILE`). bench/bench_plugin.py."
)
COLUMNS = [
    "command",
    "pulse",
    "median ms",
    "min ms",
    "p90 ms",
    "cpu ms",
    "× python -I -S",
    "exit",
    "note",
]

CHECK_FILE_AGE = "/usr/lib/nagios/plugins/check_file_age"
PLUGIN_SCRIPT = Path(sys.executable).with_name("check_ldirectord_pulse")
RUN_TIMEOUT = 60.0


def _write_pulses(directory: Path) -> dict[str, Path]:
    from ldirectord import pulse_format as pf

    empty = directory / "ldirectord.empty.pulse"
    empty.write_bytes(b"")
    now = time.time()
    doc = pf.PulseDoc(
        pid=os.getpid(),
        config="/etc/ha.d/ldirectord.cf",
        started=now - 3600,
        beat=now,
        checks_completed=123456,
        virtuals=tuple(
            pf.PulseVirtual(
                name=f"192.168.6.{240 + i}:80",
                protocol="tcp",
                reals_up=2,
                reals_total=3,
                fallback_active=False,
            )
            for i in range(3)
        ),
    )
    full = directory / "ldirectord.full.pulse"
    full.write_bytes(pf.encode(doc))
    return {"empty": empty, "schema 1": full}


def _cases(pulses: dict[str, Path]) -> list[dict[str, Any]]:
    plugin = [str(PLUGIN_SCRIPT)] if PLUGIN_SCRIPT.exists() else None
    module = [sys.executable, "-m", "ldirectord.nagios.check_pulse"]
    cases: list[dict[str, Any]] = [
        {
            "command": "python -I -S -c pass",
            "pulse": "–",
            "argv": [sys.executable, "-I", "-S", "-c", "pass"],
        },
        {
            "command": "python -c pass (venv, site on)",
            "pulse": "–",
            "argv": [sys.executable, "-c", "pass"],
        },
    ]
    for kind, path in pulses.items():
        if plugin is not None:
            cases.append(
                {
                    "command": "check_ldirectord_pulse",
                    "pulse": kind,
                    "argv": [*plugin, "-f", str(path)],
                }
            )
        else:
            cases.append(
                {
                    "command": "check_ldirectord_pulse",
                    "pulse": kind,
                    "argv": None,
                    "note": f"{PLUGIN_SCRIPT} is not installed (pip install -e .)",
                }
            )
    cases.append(
        {
            "command": "python -m ldirectord.nagios.check_pulse",
            "pulse": "schema 1",
            "argv": [*module, "-f", str(pulses["schema 1"])],
        }
    )
    age = shutil.which("check_file_age") or CHECK_FILE_AGE
    for kind, path in pulses.items():
        if os.access(age, os.X_OK):
            cases.append(
                {
                    "command": "check_file_age",
                    "pulse": kind,
                    "argv": [age, "-w", "120", "-c", "300", "-f", str(path)],
                }
            )
        else:
            cases.append(
                {
                    "command": "check_file_age",
                    "pulse": kind,
                    "argv": None,
                    "note": f"not measured: {CHECK_FILE_AGE} missing (monitoring-plugins-basic)",
                }
            )
    return cases


def _time_once(argv: Sequence[str]) -> tuple[float, float, int]:
    """Wall and CPU (user + system of the child) milliseconds of one run, and its exit code."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run(list(argv), capture_output=True, timeout=RUN_TIMEOUT, check=False)
    wall = (time.perf_counter() - began) * 1000.0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000.0
    return wall, cpu, done.returncode


def _compile_plugin() -> None:
    """Byte-compile the plugin's modules, as a package install does.

    Without this, a PYTHONDONTWRITEBYTECODE environment (or a read-only tree) makes every run
    compile the plugin from source, and the table would measure the compiler.
    """
    import compileall

    import ldirectord
    import ldirectord.nagios

    for package in (ldirectord, ldirectord.nagios):
        for folder in package.__path__:
            compileall.compile_dir(folder, maxlevels=0, quiet=1)


def run(quick: bool) -> list[dict[str, Any]]:
    """Measure every command; one row per command and pulse kind."""
    runs = 5 if quick else 50
    _compile_plugin()
    with tempfile.TemporaryDirectory(prefix="bench-plugin-") as tmp:
        pulses = _write_pulses(Path(tmp))
        cases = _cases(pulses)
        live = [c for c in cases if c["argv"] is not None]
        samples: dict[int, list[float]] = {id(c): [] for c in live}
        cpu: dict[int, list[float]] = {id(c): [] for c in live}
        codes: dict[int, set[int]] = {id(c): set() for c in live}
        for case in live:  # warm-up: page cache, pyc files
            _time_once(case["argv"])
        for _ in range(runs):
            for path in pulses.values():
                os.utime(path)  # a fresh pulse each round: every plugin answers OK
            for case in live:
                ms, cpu_ms, code = _time_once(case["argv"])
                samples[id(case)].append(ms)
                cpu[id(case)].append(cpu_ms)
                codes[id(case)].add(code)
    base = median(samples[id(live[0])]) if live else None
    rows: list[dict[str, Any]] = []
    for case in cases:
        row: dict[str, Any] = {"command": case["command"], "pulse": case["pulse"]}
        if case["argv"] is None:
            row["note"] = case["note"]
        else:
            values = samples[id(case)]
            mid = median(values)
            row.update(
                {
                    "median ms": mid,
                    "min ms": min(values),
                    "p90 ms": percentile(values, 0.9),
                    "cpu ms": median(cpu[id(case)]),
                    "× python -I -S": ratio(mid, base),
                    "exit": ",".join(str(c) for c in sorted(codes[id(case)])),
                    "runs": runs,
                    "note": "",
                }
            )
        rows.append(row)
    return rows


def main(argv: Sequence[str]) -> int:
    quick = "--quick" in argv
    rows = run(quick)
    print(f"## {TITLE}\n")
    print(markdown_table(COLUMNS, rows))
    print(f"\n**Method.** {METHOD}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
