"""``ldirectord status``: ldirectord's first line and exit code, then the live table.

Reads only files (the pid file, the pulse, the state file the daemon writes beside them): it
never reads the config, so it works with a broken one, and it never talks to the daemon, so it
answers even when the daemon is frozen (the pulse age then shows it). ``--json`` prints one
JSON document on stdout instead of the stdout text (the stderr line stays, as ldirectord's).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from ldirectord.cli import CliOptions
from ldirectord.runtime import pidfile
from ldirectord.runtime.state import decode_state


def read_state(path: str, pid: int | None) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as handle:
            doc = decode_state(handle.read(4 * 1024 * 1024))
    except OSError:
        return None
    if doc is None or (pid is not None and doc.get("pid") != pid):
        return None
    return doc


def pulse_info(path: str, now: float) -> dict[str, Any]:
    try:
        st = os.stat(path)
    except OSError as exc:
        return {"path": path, "exists": False, "error": exc.strerror or str(exc)}
    return {"path": path, "exists": True, "age": round(now - st.st_mtime, 3), "mtime": st.st_mtime}


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _get(row: Mapping[str, Any], *keys: str, default: Any = None) -> Any:
    for key in keys:
        if key in row and row[key] is not None:
            return row[key]
    return default


def real_cells(real: Mapping[str, Any], now: float) -> list[str]:
    name = _get(real, "name", "real")
    if name is None:
        host = str(_get(real, "address", "host", default="?"))
        name = f"{host}:{_get(real, 'port', default=0)}"
    health = _get(real, "health", "state")
    if health is None:
        up = _get(real, "up")
        health = "?" if up is None else ("up" if up else "down")
    result = str(_get(real, "last_result", "reason", default="-"))
    detail = _get(real, "last_detail", "detail")
    if detail:
        result = f"{result}: {detail}"
    duration = _get(real, "last_duration")
    if isinstance(duration, int | float):
        result += f" ({duration * 1000:.0f} ms)"
    last_check = _get(real, "last_check")
    if isinstance(last_check, int | float):
        result += f", {_ago(now - last_check)}"
    changed = _get(real, "last_change")
    change = _ago(now - changed) if isinstance(changed, int | float) else "-"
    if len(result) > 60:
        result = result[:59] + "…"
    return [str(name), str(_get(real, "weight", default="-")), str(health), result, change]


def render_table(state: Mapping[str, Any], now: float) -> list[str]:
    rows = [["VIRTUAL", "REAL", "WEIGHT", "HEALTH", "LAST CHECK", "LAST CHANGE"]]
    for virtual in state.get("virtuals", ()) or ():
        label = f"{virtual.get('protocol', '?')} {virtual.get('name', '?')}"
        up, total = virtual.get("reals_up"), virtual.get("reals_total")
        if up is not None and total is not None:
            label += f" ({up}/{total} up{', fallback' if virtual.get('fallback_active') else ''})"
        reals = virtual.get("reals") or ()
        if not reals:
            rows.append([label, "-", "-", "-", "-", "-"])
        for i, real in enumerate(reals):
            rows.append([label if i == 0 else "", *real_cells(real, now)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def status_command(
    opts: CliOptions,
    cfg: str,
    state_path: str,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    now = time.time()
    pid_state = pidfile.probe(opts.pid_file)
    if pid_state.running:
        code = 0
        err.write(f"ldirectord for {cfg} is running with pid: {pid_state.pid}\n")
    elif pid_state.exists:
        code = 1
        err.write(f"ldirectord stale pid file {opts.pid_file} for {cfg}\n")
    else:
        code = 3
    err.flush()
    # A foreground instance (-d, supervised=yes) writes no pid file; find it by its state file.
    state = read_state(state_path, pid_state.pid if pid_state.running else None)
    foreground_pid = None
    if state is not None and not pid_state.running:
        spid = state.get("pid")
        if isinstance(spid, int) and pidfile.is_ldirectord(spid):
            foreground_pid = spid
        else:
            state = None
    pulse = pulse_info(opts.pulse_file, now)
    if opts.json:
        doc = {
            "config": cfg,
            "exit_status": code,
            "running": pid_state.running,
            "pid": pid_state.pid if pid_state.running else foreground_pid,
            "pid_file": opts.pid_file,
            "stale_pid_file": pid_state.stale,
            "foreground": foreground_pid is not None,
            "pulse": pulse,
            "state": state,
        }
        out.write(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        out.flush()
        return code
    if code != 0:
        out.write(f"ldirectord is stopped for {cfg}\n")
    if state is not None:
        if foreground_pid is not None:
            out.write(
                f"(a foreground ldirectord, pid {foreground_pid}, started with -d or "
                "supervised=yes, is running for this config; it keeps no pid file)\n"
            )
        out.write(_pulse_line(pulse, state))
        out.write(
            f"status: {state.get('status', '?')}, backend: {state.get('backend', '?')}, "
            f"reloads: {state.get('reloads', 0)} ok / {state.get('failed_reloads', 0)} failed\n"
        )
        for line in render_table(state, now):
            out.write(line + "\n")
    elif pid_state.running:
        out.write(_pulse_line(pulse, None))
        out.write("(no state file yet: the daemon is starting, or it is not ours)\n")
    out.flush()
    return code


def _pulse_line(pulse: Mapping[str, Any], state: Mapping[str, Any] | None) -> str:
    checks = f", {state.get('checks_completed', 0)} checks completed" if state else ""
    if not pulse.get("exists"):
        return f"pulse: {pulse['path']}: missing ({pulse.get('error', '')}){checks}\n"
    return f"pulse: {pulse['path']}: last beat {pulse['age']:.1f} s ago{checks}\n"
