"""Ours end to end against real IPVS, beside Perl ldirectord, keepalived and the limit.

Owns the three real-IPVS families of BENCHMARKS.md (detection, start-up, reload): which
scenarios run (the grid, reps and caps), booting one User-Mode Linux guest per scenario
through tests/kernel/uml.py, and turning the guests' results into tables with ratios. The
guest side lives in guest_scenario.py / guest_reload.py; the anchors' configs in anchors.py.

Also owns ours_recipe(): how our daemon is started in the guest (stdlib only, imported there).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.anchors import Recipe, anchor_available, ldirectord_cf
from bench.common import Row, Section, fmt_num, median

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DAEMONS = ("ours", "perl", "keepalived", "limit")
LABEL = {
    "ours": "ours",
    "perl": "Perl ldirectord",
    "keepalived": "keepalived",
    "limit": "asyncio limit",
    "keepalived-default": "keepalived without alpha",
}
INTERVAL, TIMEOUT = 1, 2
DETECT_GRID = ((10, 0), (100, 0), (100, 10), (1000, 0), (1000, 10), (1000, 100))
STARTUP_GRID = ((100, 0), (100, 50), (1000, 0), (1000, 500))
QUICK_GRID = ((6, 2),)
RELOAD_N, QUICK_RELOAD_N = 10_000, 200
RELOAD_CAP = 60  # seconds for each reload
FILL_CAP = 120  # seconds to fill the table before the reloads
GUEST_CPU = "1"  # the guest (UML kernel and every process in it) is pinned to this host CPU


def ours_recipe(
    workdir: str,
    reals: Sequence[str],
    *,
    check: str = "http",
    interval: int = 1,
    timeout: int = 2,
    weights: Mapping[str, int] | None = None,
) -> Recipe:
    """Our daemon in the foreground on the IPVS backend, reading the same ldirectord.cf."""
    path = os.path.join(workdir, "bench.cf")
    text = ldirectord_cf(
        reals,
        check=check,
        interval=interval,
        timeout=timeout,
        weights=weights,
        logfile=os.path.join(workdir, "ours.log"),
    )
    script = os.path.join(os.path.dirname(sys.executable), "ldirectord")
    head = (script,) if os.access(script, os.X_OK) else (sys.executable, "-m", "ldirectord")
    # supervised=yes in the config keeps it in the foreground at normal log level (-d would
    # log every check); the pid and pulse files go to the scenario's working directory.
    argv = (*head, "--backend", "ipvs", "--rundir", workdir, path, "start")
    return Recipe("ours", argv, path, text, workdir)


# --- what runs ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    daemon: str
    n: int
    hung: int
    startups: int
    kills: int
    warm: bool
    startup_cap: float
    detect_cap: float
    # (n, hung) of the same daemon whose capped figures imply this plan's: not run then
    infer_from: tuple[int, int] | None = None

    def spec(self, seed: int) -> dict[str, Any]:
        return {
            "daemon": self.daemon,
            "n": self.n,
            "hung": self.hung,
            "startups": self.startups,
            "kills": self.kills,
            "warm": self.warm,
            "startup_cap": self.startup_cap,
            "detect_cap": self.detect_cap,
            "settle": 2.0,
            "seed": seed,
            "interval": INTERVAL,
            "timeout": TIMEOUT,
        }

    def guest_timeout(self) -> float:
        per_start = self.startup_cap + 20
        per_kill = self.detect_cap + INTERVAL + 2
        return (
            90
            + self.startups * per_start
            + (per_start if self.warm else 0)
            + 3
            + (self.kills * per_kill)
        )


def plans(quick: bool) -> list[Plan]:
    """The scenarios, one guest boot each. Perl ldirectord gets fewer reps: it is slow.

    Every daemon falls back to detection from a warm table when its cold start hits the cap.
    Perl ldirectord's figures with hung reals are inferred (not run) when the same N with none
    hung was already over the cap: hung reals only lengthen its serial cycle and start-up.
    """
    if quick:
        return [Plan(d, n, h, 1, 1, True, 30, 15) for d in DAEMONS for n, h in QUICK_GRID]
    out = []
    grid = sorted(set(DETECT_GRID) | set(STARTUP_GRID))
    for daemon in DAEMONS:
        for n, h in grid:
            detect = (n, h) in DETECT_GRID
            startup = (n, h) in STARTUP_GRID
            if daemon == "perl":
                # Its cold start costs three ipvsadm runs per real (reference §3.6): time it
                # once where the start-up table needs it, else detect from a warm table.
                starts = 1 if startup or n <= 10 else 0
                infer = (n, 0) if h and (n >= 1000 or not detect) else None
                out.append(Plan(daemon, n, h, starts, 2 if detect else 0, True, 30, 45, infer))
            else:
                starts = 3 if startup else 1
                out.append(Plan(daemon, n, h, starts, 3 if detect else 0, True, 30, 30))
    # keepalived's default (no alpha) puts every real in service until its first check fails.
    out.append(Plan("keepalived-default", 100, 50, 1, 0, False, 30, 30))
    return out


# --- running guests --------------------------------------------------------------------------


def guest_unavailable() -> str | None:
    try:
        sys.path.insert(0, REPO) if REPO not in sys.path else None
        from tests.kernel import uml
    except ImportError as exc:
        return f"the UML runner tests/kernel/uml.py is not importable ({exc})"
    return uml.available()


def run_guest(module: str, spec: Mapping[str, Any], timeout: float) -> dict[str, Any]:
    """Boot a guest, run ``python -m module SPEC``, return its BENCH-RESULT (or an error)."""
    from tests.kernel import uml

    os.environ.setdefault("UML_CPU", GUEST_CPU)
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    argv = [uml.guest_python(), "-m", module, json.dumps(spec, separators=(",", ":"))]
    try:
        result = uml.run_in_guest(argv, timeout=timeout, env=env, cwd=REPO)
    except uml.GuestError as exc:
        return {"error": f"guest failed: {str(exc)[:300]}"}
    for line in result.stdout.splitlines():
        if line.startswith("BENCH-RESULT "):
            parsed: dict[str, Any] = json.loads(line.removeprefix("BENCH-RESULT "))
            return parsed
    return {"error": f"no result (rc {result.returncode}): {result.stderr.strip()[-300:]}"}


def run_scenarios(quick: bool, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Every plan, one guest each; a missing anchor or runner becomes an error result."""
    unavailable = guest_unavailable()
    results: list[dict[str, Any]] = []
    for seed, plan in enumerate(plans(quick), start=1):
        reason = unavailable or (None if plan.daemon == "ours" else anchor_available(plan.daemon))
        began = time.monotonic()
        source = _find(results, plan.daemon, plan.infer_from) if plan.infer_from else None
        if reason is not None:
            result: dict[str, Any] = {"error": f"missing: {reason}"}
        elif source is not None and _implies(source, plan):
            result = {
                "detect": [None] if plan.kills else [],
                "startup": [{"s": None, "hung_seen": None}] if plan.startups else [],
                "inferred": plan.infer_from,
            }
        else:
            result = run_guest("bench.guest_scenario", plan.spec(seed), plan.guest_timeout())
        result |= {"daemon": plan.daemon, "n": plan.n, "hung": plan.hung, "plan": plan}
        results.append(result)
        log(
            f"  {plan.daemon:<10} N={plan.n:<5} H={plan.hung:<4} {_brief(result)}"
            f"  [{time.monotonic() - began:.0f} s]"
        )
    return results


def _implies(source: Mapping[str, Any], plan: Plan) -> bool:
    """The source row was capped wherever this plan would measure."""
    starts = [s.get("s") for s in source.get("startup", [])]
    start_capped = bool(starts) and None in starts
    detect_capped = None in source.get("detect", [])
    return (not plan.startups or start_capped) and (not plan.kills or detect_capped)


def _find(
    results: Sequence[Mapping[str, Any]], daemon: str, key: tuple[int, int]
) -> Mapping[str, Any] | None:
    for r in results:
        if (r["daemon"], r["n"], r["hung"]) == (daemon, *key):
            return r
    return None


def _brief(result: Mapping[str, Any]) -> str:
    if result.get("error") and not result.get("startup") and not result.get("detect"):
        return "error: " + str(result["error"]).splitlines()[0][:120]
    starts = [s.get("s") for s in result.get("startup", [])]
    return f"start-up {starts} detect {result.get('detect')}"


# --- tables ---------------------------------------------------------------------------------


def _capped_median(values: Sequence[float | None]) -> tuple[float | None, bool]:
    """Median with capped runs (None) counted as +infinity: (value, capped)."""
    if not values:
        return None, False
    ordered = sorted(values, key=lambda v: float("inf") if v is None else v)
    mid = ordered[len(ordered) // 2] if len(ordered) % 2 else None
    if len(ordered) % 2 == 0:
        lo, hi = ordered[len(ordered) // 2 - 1], ordered[len(ordered) // 2]
        mid = None if lo is None or hi is None else (lo + hi) / 2
    return mid, mid is None


@dataclass(frozen=True, slots=True)
class Cell:
    value: float | None
    text: str
    cap: float | None = None  # set when the value is "> cap"


def _cell(result: Mapping[str, Any] | None, values: Sequence[float | None], cap: float) -> Cell:
    if result is None:
        return Cell(None, "–")
    if not values:
        error = str(result.get("error") or "")
        if error.startswith("missing"):
            return Cell(None, "missing")
        return Cell(None, "error" if error else "–")
    value, capped = _capped_median(values)
    if capped:
        return Cell(None, f"> {cap:g}", cap)
    return Cell(value, f"{value:.2f}")


def _ratio(ours: Cell, other: Cell) -> str:
    if ours.value is None:
        return "–"
    if other.cap is not None:
        return f"< {ours.value / other.cap:.2f}×"
    if other.value is None or other.value == 0:
        return "–"
    return f"{ours.value / other.value:.2f}×"


def _index(results: Sequence[Mapping[str, Any]]) -> dict[tuple[str, int, int], Mapping[str, Any]]:
    return {(r["daemon"], r["n"], r["hung"]): r for r in results}


def detection_rows(results: Sequence[Mapping[str, Any]], quick: bool) -> list[Row]:
    index = _index(results)
    rows = []
    for n, h in QUICK_GRID if quick else DETECT_GRID:
        cells: dict[str, Cell] = {}
        row: Row = {"N": n, "hung": h}
        kills, cores = [], []
        for daemon in DAEMONS:
            result = index.get((daemon, n, h))
            cap = result["plan"].detect_cap if result else 0.0
            values = list(result.get("detect", [])) if result else []
            cells[daemon] = _cell(result, values, cap)
            row[f"{LABEL[daemon]} s"] = cells[daemon].text
            kills.append(str(len(values)))
            usage = (result or {}).get("usage") or {}
            cores.append(f"{usage['cores']:.2f}" if "cores" in usage else "–")
            if result and result.get("detect_mode") == "warm":
                row[f"{LABEL[daemon]} s"] += " ʷ"
            if result and result.get("inferred"):
                row[f"{LABEL[daemon]} s"] += " ⁱ"
        row["ours ÷ Perl"] = _ratio(cells["ours"], cells["perl"])
        row["ours ÷ keepalived"] = _ratio(cells["ours"], cells["keepalived"])
        row["ours ÷ asyncio limit"] = _ratio(cells["ours"], cells["limit"])
        row["kills (ours/Perl/ka/limit)"] = "/".join(kills)
        row["daemon CPU, cores (ours/Perl/ka/limit)"] = " / ".join(cores)
        rows.append(row)
    return rows


def startup_rows(results: Sequence[Mapping[str, Any]], quick: bool) -> list[Row]:
    index = _index(results)
    rows = []
    for n, h in QUICK_GRID if quick else STARTUP_GRID:
        cells: dict[str, Cell] = {}
        row: Row = {"N": n, "hung": f"{h} ({100 * h // n}%)"}
        hung_seen = []
        for daemon in DAEMONS:
            result = index.get((daemon, n, h))
            cap = result["plan"].startup_cap if result else 0.0
            runs = list(result.get("startup", [])) if result else []
            finished = [s.get("s") for s in runs if s.get("exited") is None]
            cells[daemon] = _cell(result, finished, cap)
            row[f"{LABEL[daemon]} s"] = cells[daemon].text
            if result and result.get("inferred"):
                row[f"{LABEL[daemon]} s"] += " ⁱ"
            seen = [s["hung_seen"] for s in runs if s.get("hung_seen") is not None]
            hung_seen.append(str(max(seen)) if seen else "–")
        row["ours ÷ Perl"] = _ratio(cells["ours"], cells["perl"])
        row["ours ÷ keepalived"] = _ratio(cells["ours"], cells["keepalived"])
        row["ours ÷ asyncio limit"] = _ratio(cells["ours"], cells["limit"])
        row["hung reals seen in table (ours/Perl/ka/limit)"] = "/".join(hung_seen)
        rows.append(row)
    return rows


def _errors(results: Sequence[Mapping[str, Any]]) -> list[str]:
    notes = []
    for r in results:
        if r.get("error") and not str(r["error"]).startswith("missing"):
            first = str(r["error"]).strip().splitlines()
            notes.append(
                f"- {LABEL[r['daemon']]} N={r['n']} H={r['hung']}: {fmt_num(' '.join(first)[:300])}"
            )
    return notes


DETECTION_METHOD = """
Inside one User-Mode Linux guest per row and daemon (Debian's linux.uml, real IPVS, the
whole guest pinned to host CPU {cpu} with taskset), one virtual service with N real servers:
loopback listeners on 127.1.x.y:80 served by one asyncio process in the guest; healthy ones
answer `HTTP/1.0 200 OK`, hung ones accept and never answer. Every daemon reads the same
semantics: HTTP GET every 1 s with a 2 s deadline, a failed check deletes the real
(ldirectord `quiescent=no`, `failurecount=1`; keepalived `retry 0`, `alpha`). After the table
holds every healthy real and 2 s of steady state, a healthy real chosen at random is killed (its
listener closed, open connections reset) at a random moment within one check interval; the
figure is the time until it leaves the table, read from /proc/net/ip_vs every 0.1 s (so ±0.1 s),
median of the kills (`kills` column; a kill still in the table at the cap counts as +∞ and
ends the row: "> cap"). *asyncio limit* is bench/guest_limit.py: one raw-asyncio HTTP check per real
every second streaming adds and deletes into one `ipvsadm -R` — what a plain event loop and the
kernel do here; with a 1 s interval its expected detection is about 0.5 s. ʷ: the daemon's
cold start hit the start-up cap (or, for Perl ldirectord from N = 100, would: three `ipvsadm`
runs per real), so it was started on a table that already held the healthy reals, as after a
restart, and detection timed from there. ⁱ: not run; inferred from the same daemon's row with
no hung reals, which already exceeded the cap (hung reals only lengthen a serial cycle). Ratios below 1 mean
ours is faster. *daemon CPU* is the daemon's processes' CPU time over the 2 s of steady state
before the first kill, per second of wall time. Everything in the guest (checkers, servers, kernel) shares one host CPU, and
the host is shared with other work: expect ±20 % between runs. At N = 1,000 that one CPU is
saturated (the fleet answering 1,000 checks/s plus the checker: see *daemon CPU*), so there the
asyncio limit is no floor and a Python daemon is bound by the guest's CPU (its syscalls cost
5–20× the host's); the engine table below measures ours at 10,000 reals on the host.
"""

STARTUP_METHOD = """
Same guest, fleet and configs as the detection table. Time from spawning the daemon on an empty
IPVS table until every healthy real is in it (interpreter start-up and imports included), median
of 3 cold starts (1 for Perl ldirectord; 1 when the first reaches the cap), capped at {cap} s. The hung reals are spread evenly
through the config. The last column is the most hung reals ever seen in the table during
start-up: a hung real in the table would receive traffic (Perl ldirectord adds and deletes every
real at start, a short flash; keepalived without `alpha` puts every real in service until its
first check fails). ⁱ: not run; inferred from the same daemon's row with no hung reals at the
same N, which already exceeded the cap (hung reals only lengthen a serial start-up).
"""

RELOAD_METHOD = """
Inside a User-Mode Linux guest pinned to host CPU {cpu}, {n} reals in one virtual service, not probed (ldirectord
`checktype=on`, keepalived real servers without a checker), so the table holds every real from
the start. Each reload rewrites the config with one more real at weight 2 (exactly one real
differs from the running config) and sends SIGHUP; *wall* is the time until that real shows
weight 2 in /proc/net/ip_vs (polled every 0.1 s; reading {n} entries takes part of that),
median of {reloads} reloads. *fewest in table* is the fewest reals seen during a reload (below
{n} means reals were removed and re-added). *changes logged*: the table changes the daemon
logged during the reload and 2 s after (both daemons log every change they make). *netlink
writes / reads (strace)*: the IPVS requests of one more reload counted with `strace -f
--seccomp-bpf` (only the traced send calls stop the daemon) (writes: new/set/del of services
and dests; reads: dumps and gets; a reads figure above 2 for ours includes the periodic
re-verifying dump when it fell in the traced window). *fill* is the start-up with no checks: spawn until all {n} reals are in the
table (capped at 120 s; a daemon that does not fill it is not reloaded). The same is repeated with
1,000 reals. *own log*: what ours logged each reload cost, median (reading and validating the
file; the kernel table: dump, plan and changes). Perl ldirectord is not run: its cold start alone is three `ipvsadm` processes per
real.
"""


def ipvs_sections(quick: bool, log: Callable[[str], None]) -> tuple[Section, Section]:
    """Families 2 (detection) and 3 (start-up), from the same guest runs."""
    began = time.monotonic()
    results = run_scenarios(quick, log)
    took = (time.monotonic() - began) / 2
    cap = 30
    errors = _errors(results)
    detection = Section(
        "detection",
        "Detection: a healthy real dies, until it leaves the IPVS table (s)",
        DETECTION_METHOD.format(cpu=os.environ.get("UML_CPU", GUEST_CPU)),
        detection_rows(results, quick),
        seconds=took,
    )
    startup = Section(
        "startup",
        "Start-up: spawn until every healthy real is in the IPVS table (s)",
        STARTUP_METHOD.format(cap=cap),
        startup_rows(results, quick),
        seconds=took,
    )
    if errors:
        detection.notes.append("Errors in this run:\n" + "\n".join(errors))
    default = _find(results, "keepalived-default", (100, 50))
    runs = (default or {}).get("startup", [])
    if runs and runs[0].get("s") is not None:
        startup.notes.append(
            f"keepalived with its default settings (no `alpha`), N = 100, 50 hung: every healthy "
            f"real in the table after {runs[0]['s']:.2f} s, but so were up to "
            f"{runs[0]['hung_seen']} of the 50 hung reals during start-up (they would get traffic)."
        )
    reason = guest_unavailable()
    if reason:
        detection.error = startup.error = reason
    return detection, startup


def _reload_row(daemon: str, n: int, reloads: int, reason: str | None) -> tuple[Row, float | None]:
    if reason:
        return {"daemon": LABEL[daemon], "N": n, "wall s": f"missing: {reason}"}, None
    strace = True
    spec = {"daemon": daemon, "n": n, "reloads": reloads, "cap": RELOAD_CAP, "fill_cap": FILL_CAP}
    spec["strace"] = strace
    r = run_guest("bench.guest_reload", spec, timeout=RELOAD_CAP * (reloads + 1) + FILL_CAP + 90)
    done = r.get("reloads", [])
    wall = median(x.get("s") for x in done)
    if wall is not None:
        shown: Any = wall
    elif r.get("fill_s") is None and not done:
        shown = f"not run: table not full after {FILL_CAP} s"
    else:
        shown = "error" if r.get("error") and done else f"> {RELOAD_CAP}"
    ops = r.get("ops") or {}
    row = {
        "daemon": LABEL[daemon],
        "N": n,
        "wall s": shown,
        "fewest in table": min((x["fewest"] for x in done), default=None),
        "changes logged": median(x.get("logged_ops") for x in done),
        "netlink writes (strace)": ops.get("writes"),
        "writes by kind": " ".join(f"{k}:{v}" for k, v in sorted(ops.get("by_cmd", {}).items())),
        "netlink reads (strace)": ops.get("reads"),
        "reads by kind": " ".join(
            f"{k}:{v}" for k, v in sorted(ops.get("reads_by_cmd", {}).items())
        ),
        "fill s": r.get("fill_s") if r.get("fill_s") is not None else f"> {FILL_CAP}",
    }
    own = r.get("own_timings") or []
    if own:
        row["own log: reading / kernel s"] = (
            f"{median(t['reading'] for t in own):.2f} / {median(t['kernel'] for t in own):.2f}"
        )
    if r.get("error"):
        words = " ".join(str(r["error"]).split())
        row["error"] = words if len(words) <= 260 else f"{words[:90]} … {words[-160:]}"
    return row, wall


def reload_section(quick: bool, log: Callable[[str], None]) -> Section:
    """Family 4: the reload, at 10,000 reals and (so ours has a figure too) at 1,000."""
    began = time.monotonic()
    sizes = (QUICK_RELOAD_N,) if quick else (RELOAD_N, 1_000)
    reloads = 1 if quick else 3
    unavailable = guest_unavailable()
    rows: list[Row] = []
    notes: list[str] = []
    for n in sizes:
        walls: dict[str, float | None] = {}
        for daemon in ("ours", "keepalived"):
            reason = unavailable or (None if daemon == "ours" else anchor_available(daemon))
            row, walls[daemon] = _reload_row(daemon, n, reloads, reason)
            rows.append(row)
            log(f"  reload {daemon:<10} N={n} wall={row['wall s']} fill={row.get('fill s')}")
        ours, ka = walls.get("ours"), walls.get("keepalived")
        if ours is not None and ka:
            grain = (
                " (both within about one 0.1 s poll of /proc/net/ip_vs: the ratio is mostly noise)"
                if max(ours, ka) < 0.25
                else ""
            )
            notes.append(
                f"Reload wall time at N = {n:,}, ours ÷ keepalived: {ours / ka:.2f}×{grain}."
            )
    errors = [f"- {r['daemon']} N={r['N']:,}: {r['error']}" for r in rows if r.get("error")]
    if errors:
        notes.append("Errors (last words of the daemon's log):\n" + "\n".join(errors))
    columns = [c for c in rows[0] if c != "error"] if rows else []
    section = Section(
        "reload",
        f"Reload: {sizes[0]:,} reals, one changed, SIGHUP",
        RELOAD_METHOD.format(
            n=f"{sizes[0]:,}", reloads=reloads, cpu=os.environ.get("UML_CPU", GUEST_CPU)
        ),
        rows,
        columns=columns,
        notes=notes,
        seconds=time.monotonic() - began,
    )
    return section
