"""``python -m bench [--quick] [--no-write] [--only NAME ...]``: every benchmark, one command.

Owns the list of benchmark families, running them in order, printing their tables and
rewriting BENCHMARKS.md (each family between its own markers, so ``--only`` replaces just
that family's section). A family whose module is missing, or that fails, is reported as not
measured; it never stops the others, and the command exits 0 unless the runner itself breaks.

``--quick`` is the smoke run CI uses: tiny sizes, one rep, a couple of minutes at most; it
checks that every benchmark runs and asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import time
import traceback
from datetime import UTC, datetime

from bench import bench_daemon
from bench.common import Row, Section, columns_of, fmt_num, load_average, machine_info

REPO = bench_daemon.REPO
OUTPUT = os.path.join(REPO, "BENCHMARKS.md")

# Families whose rows come from another module's run(quick) -> list[dict].
EXTERNAL = {
    "checks": (
        "bench.bench_checks",
        "Check throughput: ours vs a raw asyncio loop (the machine's limit), loopback",
        "Connect, HTTP and HTTPS checks per second and CPU per 1,000 checks, our check code against "
        "a raw asyncio loop doing the same work on the same targets (bench/bench_checks.py).",
    ),
    "engine": (
        "bench.bench_engine",
        "Scale and scheduling: 10,000 reals at 1 s, start-up and detection on the dry-run backend",
        "Our engine on the dry-run backend against real loopback listeners (bench/bench_engine.py): "
        "CPU share and RSS with 10,000 reals checked every second, how late each check started "
        "(p50/p99), start-up with hung reals and detection of a dead real.",
    ),
    "plugin": (
        "bench.bench_plugin",
        "The plugin: check_ldirectord_pulse wall time",
        "Wall time of `check_ldirectord_pulse` against `python -I -S -c pass` and "
        "monitoring-plugins' `check_file_age` on the same file (bench/bench_plugin.py).",
    ),
}
ORDER = ("checks", "detection", "startup", "reload", "engine", "plugin")
ALIASES = {"ipvs": ("detection", "startup"), "scale": ("engine",)}


def log(message: str) -> None:
    sys.stderr.write(f"[{datetime.now(UTC):%H:%M:%S}] {message}\n")
    sys.stderr.flush()


def external_section(key: str, quick: bool) -> Section:
    module_name, title, method = EXTERNAL[key]
    section = Section(key, title, method)
    began = time.monotonic()
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        section.error = f"{module_name} is not available ({exc})"
        return section
    section.method = str(getattr(module, "METHOD", "") or method)
    section.title = str(getattr(module, "TITLE", "") or title)
    try:
        rows: list[Row] = list(module.run(quick))
    except Exception as exc:
        section.error = f"{module_name}.run failed: {type(exc).__name__}: {exc}"
        log(traceback.format_exc())
        rows = []
    finally:
        section.seconds = time.monotonic() - began
    section.rows = rows
    section.columns = list(getattr(module, "COLUMNS", None) or columns_of(rows))
    return section


def run_family(key: str, quick: bool, done: dict[str, Section]) -> None:
    if key in done:
        return
    if key in EXTERNAL:
        done[key] = external_section(key, quick)
    elif key in ("detection", "startup"):
        done["detection"], done["startup"] = bench_daemon.ipvs_sections(quick, log)
    elif key == "reload":
        done[key] = bench_daemon.reload_section(quick, log)


def _guarded(key: str, quick: bool, done: dict[str, Section]) -> None:
    try:
        run_family(key, quick, done)
    except Exception as exc:  # one broken family never hides the others
        log(traceback.format_exc())
        done[key] = Section(key, key, "", error=f"{type(exc).__name__}: {exc}")


def header(quick: bool, started: datetime, took: float, info: dict[str, str]) -> str:
    info = info | {"load average at end": load_average()}
    lines = [
        "# Benchmarks",
        "",
        "Ours (ldirectord for Python) beside Perl ldirectord, keepalived and the machine's limit,",
        "measured in one run of `python -m bench` on one machine. Every table says how it was",
        "measured under it. Regenerate with `python -m bench` (about 15 minutes);",
        "`python -m bench --only NAME` reruns one family (checks, detection/startup, reload,",
        "engine, plugin) and replaces its section.",
        "",
        f"Run: {started:%Y-%m-%d %H:%M} UTC, {took / 60:.1f} min" + (" (quick)" if quick else ""),
        "",
        "| machine | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in info.items()),
        "",
    ]
    return "\n".join(lines)


def _pick(section: Section | None, **match: object) -> Row | None:
    if section is None:
        return None
    for row in section.rows:
        if all(fmt_num(row.get(k)).startswith(fmt_num(v)) for k, v in match.items()):
            return row
    return None


def _daemons(row: Row) -> str:
    names = ("ours", "Perl ldirectord", "keepalived", "asyncio limit")
    return ", ".join(f"{name} {row.get(name + ' s', '–')}" for name in names)


def _seconds(value: object) -> str:
    return f"{value:.2f} s" if isinstance(value, float) else str(value)


def summary(done: dict[str, Section]) -> str:
    """The headline figures, pulled from the tables of this run."""
    lines = []
    for n, hung in ((100, 10), (1000, 100)):
        row = _pick(done.get("detection"), N=f"{n:,}", hung=hung)
        if row:
            lines.append(
                f"- A dead real leaves the table (N = {fmt_num(row['N'])}, {row['hung']} hung), s: "
                f"{_daemons(row)}."
            )
    for n, hung in ((100, 50), (1000, 500)):
        row = _pick(done.get("startup"), N=f"{n:,}", hung=hung)
        if row:
            lines.append(
                f"- Start-up until every healthy real is in (N = {fmt_num(row['N'])}, {row['hung']} hung),"
                f" s: {_daemons(row)}."
            )
    reload = done.get("reload")
    for row in reload.rows if reload else []:
        lines.append(
            f"- Reload, {row.get('N'):,} reals, one changed: {row.get('daemon')} "
            f"{_seconds(row.get('wall s'))}, {fmt_num(row.get('changes logged'))} table change(s)."
        )
    if not lines:
        return ""
    return "## Headline figures of this run\n\n" + "\n".join(lines) + "\n"


def _marked(key: str, body: str) -> str:
    return f"<!-- bench:{key} -->\n{body.rstrip()}\n<!-- /bench:{key} -->\n"


def write(sections: dict[str, Section], head: str, only: bool) -> None:
    old = ""
    if only and os.path.exists(OUTPUT):
        with open(OUTPUT) as fh:
            old = fh.read()
    if old:
        text = old
        for key, section in sections.items():
            pattern = re.compile(rf"<!-- bench:{key} -->.*?<!-- /bench:{key} -->\n", re.S)
            block = _marked(key, section.render())
            match = pattern.search(text)
            if match:
                text = text[: match.start()] + block + text[match.end() :]
            else:
                text += "\n" + block
    else:
        parts = [_marked("header", head)]
        parts += [_marked(k, sections[k].render()) for k in ORDER if k in sections]
        text = "\n".join(parts)
    tmp = OUTPUT + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, OUTPUT)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, one rep")
    parser.add_argument("--no-write", action="store_true", help="leave BENCHMARKS.md alone")
    names = sorted(set(ORDER) | set(ALIASES))
    parser.add_argument(
        "--only",
        action="append",
        choices=names,
        metavar="NAME",
        help=f"run only this family (repeatable): {', '.join(names)}",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wanted: list[str] = []
    for name in args.only or ORDER:
        wanted += ALIASES.get(name, (name,))
    started, began = datetime.now(UTC), time.monotonic()
    info = machine_info()
    done: dict[str, Section] = {}
    for key in (k for k in ORDER if k in wanted):
        if key in done:
            continue
        log(f"{key} ...")
        _guarded(key, args.quick, done)
        if key in done:
            error = f" — {done[key].error}" if done[key].error else ""
            log(f"{key}: {done[key].seconds:.0f} s{error}")
    sections = {k: done[k] for k in ORDER if k in done and k in wanted}
    head = header(args.quick, started, time.monotonic() - began, info)
    head += "\n" + summary(sections)
    sys.stdout.write(head + "\n" + "\n".join(s.render() for s in sections.values()))
    if not args.no_write:
        if args.only:
            stamp = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
            for section in sections.values():
                section.notes.append(f"_Rerun on its own (`--only`) at {stamp}._")
        write(sections, head, only=bool(args.only))
        log(f"wrote {OUTPUT}")
    log(f"total {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
