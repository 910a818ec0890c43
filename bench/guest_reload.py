"""Reload of a big table: N reals, one real changed, SIGHUP (guest side).

Runs inside the User-Mode Linux guest:

    python -m bench.guest_reload SPEC_JSON

SPEC keys: daemon (ours, keepalived), n, reloads, cap (each reload), fill_cap, strace (also count the netlink
requests of one extra reload with strace attached; ptrace slows a Python daemon's every
syscall so much in the guest that it is only used for keepalived). The reals are not probed (ldirectord
``checktype=on``; keepalived real servers without a checker), so the table holds every real
from the start and only the reload is measured. Prints ``BENCH-RESULT {json}``.

Each reload rewrites the config with one more real at weight 2 (so exactly one real differs
from the running config), sends SIGHUP and polls /proc/net/ip_vs until that real shows weight
2: that is the reload's wall time. While waiting it records the fewest reals seen in the table
(a reload that deletes and re-adds shows it). Table changes are counted from the daemon's own
log (both log every change they make) over the reload and 2 s after; with ``strace`` also from
``strace -f`` of the daemon's processes: every IPVS netlink request sent, writes by command.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench import guest_ipvs
from bench.guest_fleet import fleet_addresses
from bench.guest_scenario import make_recipe

SETTLE_S = 2.0


async def wait_full(daemon: guest_ipvs.Daemon, reals: list[str], cap: float) -> float | None:
    wanted = set(reals)
    while time.monotonic() - daemon.started < cap and daemon.exited() is None:
        if wanted.issubset(guest_ipvs.read_table()):
            return time.monotonic() - daemon.started
        await asyncio.sleep(guest_ipvs.POLL_S)
    return None


# A table change as the daemons log it: ldirectord's wording (ours) and keepalived's.
LOGGED_OP = re.compile(
    r"\b(Added|Changed|Deleted|Purged|Quiescent|Readd Quiescent|Restored) "
    r"(real|virtual|fallback) server|\b(Adding|Removing) service|\bChanging weight"
)


def logged_ops(path: str, offset: int) -> int:
    with open(path, "rb") as fh:
        fh.seek(offset)
        text = fh.read().decode(errors="replace")
    # -d style duplicates ("DEBUG2: " copies) are not counted twice.
    return sum(1 for line in text.splitlines() if LOGGED_OP.search(line) and "DEBUG" not in line)


async def one_reload(
    daemon: guest_ipvs.Daemon, workdir: str, reals: list[str], changed: int, cap: float
) -> dict[str, Any]:
    weights = {r: 2 for r in reals[: changed + 1]}
    daemon.rewrite(make_recipe(daemon.recipe.daemon, workdir, reals, check="on", weights=weights))
    target = reals[changed]
    fewest = len(reals)
    offset = os.path.getsize(daemon.log_path)
    sent = time.monotonic()
    daemon.signal(daemon.recipe.reload_signal)
    while True:
        table = guest_ipvs.read_table()
        fewest = min(fewest, len(table))
        if table.get(target) == 2:
            wall = time.monotonic() - sent
            await asyncio.sleep(SETTLE_S)  # let the reload finish its other work, if any
            return {"s": wall, "fewest": fewest, "logged_ops": logged_ops(daemon.log_path, offset)}
        if time.monotonic() - sent > cap or daemon.exited() is not None:
            return {"s": None, "fewest": fewest}
        await asyncio.sleep(guest_ipvs.POLL_S)


# IPVS generic-netlink commands (linux/ip_vs.h) that change the table.
IPVS_WRITE_CMDS = {
    1: "new_service",
    2: "set_service",
    3: "del_service",
    5: "new_dest",
    6: "set_dest",
    7: "del_dest",
    12: "flush",
    16: "zero",
}
IPVS_READ_CMDS = {
    4: "get_service",
    8: "get_dest",
    11: "get_daemon",
    13: "get_config",
    15: "get_info",
}
_PAYLOAD = re.compile(r'nlmsg_type=IPVS,[^}]*\}, "(\\x[0-9a-f]{2}|\\[0-7]{1,3}|.)')


def _first_byte(escape: str) -> int:
    if escape.startswith("\\x"):
        return int(escape[2:], 16)
    if escape.startswith("\\") and len(escape) > 1:
        return int(escape[1:], 8)
    return ord(escape)


def count_netlink(trace_path: str) -> dict[str, Any]:
    """IPVS requests in an strace log: table writes by command, and reads (dumps, gets)."""
    writes: dict[str, int] = {}
    reads: dict[str, int] = {}
    with open(trace_path, errors="replace") as fh:
        for line in fh:
            if not re.search(r"\b(sendto|sendmsg)\(", line):
                continue
            for match in _PAYLOAD.finditer(line):
                cmd = _first_byte(match.group(1))
                if cmd in IPVS_WRITE_CMDS:
                    writes[IPVS_WRITE_CMDS[cmd]] = writes.get(IPVS_WRITE_CMDS[cmd], 0) + 1
                else:
                    name = IPVS_READ_CMDS.get(cmd, f"cmd{cmd}")
                    reads[name] = reads.get(name, 0) + 1
    return {
        "writes": sum(writes.values()),
        "reads": sum(reads.values()),
        "by_cmd": writes,
        "reads_by_cmd": reads,
    }


async def traced_reload(
    daemon: guest_ipvs.Daemon, workdir: str, reals: list[str], changed: int, cap: float
) -> dict[str, Any]:
    if shutil.which("strace") is None:
        return {"error": "strace not installed"}
    trace = os.path.join(workdir, "reload.strace")
    # --seccomp-bpf: only the traced calls stop the daemon (ptrace on every syscall would
    # slow a Python daemon so much in the guest that its reload could not be timed)
    argv = [
        "strace",
        "-f",
        "--seccomp-bpf",
        "-qq",
        "-e",
        "trace=sendto,sendmsg",
        "-e",
        "signal=none",
    ]
    argv += ["-s", "8", "-o", trace]
    for pid in guest_ipvs.session_pids(daemon.pid):
        argv += ["-p", str(pid)]
    tracer = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    await asyncio.sleep(1.5)  # attach
    result = await one_reload(daemon, workdir, reals, changed, cap)
    tracer.send_signal(signal.SIGINT)
    try:
        tracer.wait(timeout=10)
    except subprocess.TimeoutExpired:
        tracer.kill()
        tracer.wait()
    return result | count_netlink(trace)


# Ours logs what each reload cost: "Reloaded <cfg> in T s (reading R s, kernel table K s)".
OWN_TIMING = re.compile(
    r"Reloaded \S+ in ([0-9.]+) s \(reading ([0-9.]+) s, kernel table ([0-9.]+) s\)"
)


def own_timings(path: str) -> list[dict[str, float]]:
    """The reload costs the daemon logged itself (ours only; empty for the others)."""
    with open(path, errors="replace") as fh:
        found = [OWN_TIMING.search(line) for line in fh if "DEBUG" not in line]
    return [
        {"total": float(m[1]), "reading": float(m[2]), "kernel": float(m[3])} for m in found if m
    ]


async def scenario(spec: dict[str, Any]) -> dict[str, Any]:
    reals = fleet_addresses(spec["n"])
    workdir = tempfile.mkdtemp(prefix=f"bench-reload-{spec['daemon']}-")
    recipe = make_recipe(spec["daemon"], workdir, reals, check="on")
    out: dict[str, Any] = {
        "daemon": spec["daemon"],
        "n": spec["n"],
        "fill_s": None,
        "reloads": [],
        "ops": None,
        "error": None,
    }
    guest_ipvs.flush_table()
    daemon = guest_ipvs.Daemon(recipe, os.path.join(workdir, "daemon.log"))
    daemon.start()
    try:
        out["fill_s"] = await wait_full(daemon, reals, spec.get("fill_cap", spec["cap"]))
        if out["fill_s"] is None:
            cap = spec.get("fill_cap", spec["cap"])
            out["error"] = f"table not filled within {cap} s: {daemon.log_tail()}"
            return out
        await asyncio.sleep(SETTLE_S)
        for i in range(spec["reloads"]):
            out["reloads"].append(await one_reload(daemon, workdir, reals, i, spec["cap"]))
        if spec.get("strace"):
            out["ops"] = await traced_reload(daemon, workdir, reals, spec["reloads"], spec["cap"])
        out["own_timings"] = own_timings(daemon.log_path)
        if daemon.exited() is not None:
            out["error"] = f"daemon exited {daemon.exited()}: {daemon.log_tail()}"
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}\n{daemon.log_tail()}"
    finally:
        await daemon.stop(grace=1.0)
        guest_ipvs.flush_table()
    return out


def main() -> None:
    spec = json.loads(sys.argv[1])
    subprocess.run(["modprobe", "ip_vs"], check=False, timeout=30)
    resource.setrlimit(resource.RLIMIT_NOFILE, (65536, 65536))
    result = asyncio.run(scenario(spec))
    sys.stdout.write("BENCH-RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
