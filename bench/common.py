"""Shared benchmark helpers: medians and ratios, number formatting, markdown tables,
process CPU/RSS measurement and a description of the machine.

Owns nothing about any one benchmark. Stdlib only, no IO beyond /proc and a few
``--version`` calls in machine_info().
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Row = dict[str, Any]
MISSING = "missing"


def median(values: Iterable[float | None]) -> float | None:
    """The median of the values that are not None; None when there are none."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile (fraction in 0..1); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def ratio(ours: float | None, other: float | None) -> float | None:
    """ours / other, or None when either is missing or other is zero."""
    if ours is None or other is None or other == 0:
        return None
    return ours / other


def fmt_num(value: Any, digits: int = 2) -> str:
    """A table cell: '–' for None, thousands separators, ``digits`` decimals for floats."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def fmt_ratio(value: float | None) -> str:
    """'0.25×' style; '–' when unknown."""
    if value is None:
        return "–"
    return f"{value:.2f}×" if value < 10 else f"{value:.0f}×"


def fmt_seconds(value: float | None, cap: float | None = None, digits: int = 2) -> str:
    """Seconds, or '> cap s' when the measurement hit its cap (value None, cap given)."""
    if value is None:
        return f"> {cap:g} s" if cap is not None else "–"
    return f"{value:.{digits}f}"


def markdown_table(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    """A GitHub markdown table of ``rows`` (dicts) restricted to ``columns`` in that order."""
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        out.append("| " + " | ".join(fmt_num(row.get(c)) for c in columns) + " |")
    return "\n".join(out)


def columns_of(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The union of the rows' keys in first-seen order (for rows from other modules)."""
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            seen.setdefault(key, None)
    return list(seen)


@dataclass
class Section:
    """One benchmark family as it appears in BENCHMARKS.md and on the terminal."""

    key: str
    title: str
    method: str
    rows: list[Row] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    def render(self) -> str:
        parts = [f"## {self.title}", ""]
        if self.error:
            parts += [f"**Not measured in this run:** {self.error}", ""]
        if self.rows:
            parts += [markdown_table(self.columns or columns_of(self.rows), self.rows), ""]
        parts += [n + "\n" for n in self.notes]
        parts += ["**Method.** " + self.method.strip(), ""]
        parts += [f"_This section took {self.seconds:.0f} s._", ""]
        return "\n".join(parts)


# --- processes ----------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float | None:
    """user + system CPU seconds of one process (not its children), from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK


def proc_rss_kib(pid: int, key: str = "VmRSS") -> int | None:
    """VmRSS (or VmHWM, the peak) of a process in KiB."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


# --- the machine ----------------------------------------------------------------------------


def _first_line(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return MISSING
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else MISSING


def _dpkg_version(package: str) -> str:
    version = _first_line(["dpkg-query", "-W", "-f=${Version}", package])
    return MISSING if "no packages found" in version else version


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def machine_info() -> dict[str, str]:
    """What BENCHMARKS.md says about where the numbers came from."""
    mem_kib = 0
    try:
        with open("/proc/meminfo") as fh:
            mem_kib = int(fh.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": f"{os.cpu_count()} × {cpu_model()}",
        "memory": f"{mem_kib / 1024 / 1024:.0f} GiB",
        "kernel": platform.release(),
        "os": _first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "uml kernel": _dpkg_version("user-mode-linux"),
        "Perl ldirectord": _dpkg_version("ldirectord"),
        "keepalived": _dpkg_version("keepalived"),
        "ipvsadm": _dpkg_version("ipvsadm"),
        "load average at start": load_average(),
    }
