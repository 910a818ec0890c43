"""Start-up and detection of one daemon against N loopback reals, H of them hung (guest side).

Runs inside the User-Mode Linux guest as one command:

    python -m bench.guest_scenario SPEC_JSON

SPEC keys: daemon (ours, perl, keepalived, keepalived-default), n, hung, startups (cold
starts to time), kills (dead reals to time), warm (detection from a table that already holds
the healthy reals, as after a restart), startup_cap, detect_cap, settle, seed, interval,
timeout. Prints one line ``BENCH-RESULT {json}`` at the end.

Start-up: from spawning the daemon on an empty table until every healthy real is in the table.
Detection: a healthy real's server is killed at a random moment (uniform over one check
interval, after ``settle`` seconds of steady state); the time until it leaves the table.
The table is read from /proc/net/ip_vs every 0.1 s, so every figure has 0.1 s resolution.
Every wait is capped: a capped figure is reported as None with the cap.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench import guest_ipvs
from bench.anchors import Recipe
from bench.guest_fleet import fleet_addresses


def make_recipe(daemon: str, workdir: str, reals: list[str], **kw: Any) -> Recipe:
    if daemon == "ours":
        from bench.bench_daemon import ours_recipe

        return ours_recipe(workdir, reals, **kw)
    from bench.anchors import recipe

    return recipe(daemon, workdir, reals, **kw)


def hung_indices(n: int, hung: int) -> set[int]:
    """Spread the hung reals evenly through the config (serial checkers meet them in turn)."""
    return {int(i * n / hung) for i in range(hung)} if hung else set()


async def wait_startup(
    daemon: guest_ipvs.Daemon, healthy: set[str], hung: set[str], cap: float
) -> dict[str, Any]:
    seen_hung = 0
    first_in: float | None = None
    while True:
        now = time.monotonic()
        table = guest_ipvs.read_table()
        present = healthy.intersection(table)
        seen_hung = max(seen_hung, len(hung.intersection(table)))
        if present and first_in is None:
            first_in = now - daemon.started
        if len(present) == len(healthy):
            return {
                "s": now - daemon.started,
                "in": len(present),
                "hung_seen": seen_hung,
                "first_s": first_in,
            }
        if now - daemon.started > cap or daemon.exited() is not None:
            return {
                "s": None,
                "in": len(present),
                "hung_seen": seen_hung,
                "first_s": first_in,
                "exited": daemon.exited(),
            }
        await asyncio.sleep(guest_ipvs.POLL_S)


async def steady_usage(daemon: guest_ipvs.Daemon, seconds: float) -> dict[str, float]:
    """The daemon's CPU share (cores) and RSS over ``seconds`` of steady state."""
    cpu0, _ = guest_ipvs.session_usage(daemon.pid)
    began = time.monotonic()
    await asyncio.sleep(seconds)
    cpu1, rss = guest_ipvs.session_usage(daemon.pid)
    return {"cores": (cpu1 - cpu0) / (time.monotonic() - began), "rss_kib": rss}


async def detect(
    fleet: guest_ipvs.Fleet, healthy: set[str], spec: dict[str, Any], rng: random.Random
) -> list[float | None]:
    results: list[float | None] = []
    alive = set(healthy)
    for _ in range(spec["kills"]):
        await asyncio.sleep(rng.uniform(0, spec["interval"]))
        candidates = sorted(alive.intersection(guest_ipvs.read_table()))
        if not candidates:
            break
        victim = rng.choice(candidates)
        await fleet.command(f"kill {victim}")
        alive.discard(victim)
        killed = time.monotonic()
        while victim in guest_ipvs.read_table():
            if time.monotonic() - killed > spec["detect_cap"]:
                break
            await asyncio.sleep(guest_ipvs.POLL_S)
        else:
            results.append(time.monotonic() - killed)
            continue
        results.append(None)
        break  # one capped kill says it; the next would cost another cap
    return results


async def scenario(spec: dict[str, Any]) -> dict[str, Any]:
    rng = random.Random(spec.get("seed", 1))
    reals = fleet_addresses(spec["n"])
    hung_at = hung_indices(spec["n"], spec["hung"])
    hung = {r for i, r in enumerate(reals) if i in hung_at}
    healthy = set(reals) - hung
    workdir = tempfile.mkdtemp(prefix=f"bench-{spec['daemon']}-")
    kw = {"interval": spec["interval"], "timeout": spec["timeout"]}
    recipe = make_recipe(spec["daemon"], workdir, reals, **kw)
    out: dict[str, Any] = {
        "daemon": spec["daemon"],
        "n": spec["n"],
        "hung": spec["hung"],
        "startup": [],
        "detect": [],
        "detect_mode": None,
        "error": None,
    }
    fleet = await guest_ipvs.Fleet.start(sorted(healthy), sorted(hung), timeout=120)
    daemon: guest_ipvs.Daemon | None = None
    try:
        for rep in range(spec["startups"]):
            guest_ipvs.flush_table()
            await fleet.command("revive")
            daemon = guest_ipvs.Daemon(recipe, os.path.join(workdir, f"daemon-{rep}.log"))
            daemon.start()
            result = await wait_startup(daemon, healthy, hung, spec["startup_cap"])
            out["startup"].append(result)
            capped = result["s"] is None  # the next cold starts would hit the cap too
            last = rep == spec["startups"] - 1 or capped
            if last and not capped and spec["kills"]:
                out["detect_mode"] = "cold"
                out["usage"] = await steady_usage(daemon, spec["settle"])
                out["detect"] = await detect(fleet, healthy, spec, rng)
            if result.get("exited") is not None:
                out["error"] = f"daemon exited {result['exited']}: {daemon.log_tail()}"
            await daemon.stop()
            daemon = None
            if out["error"]:
                return out
            if last:
                break
        if spec["kills"] and out["detect_mode"] is None and spec.get("warm"):
            guest_ipvs.flush_table()
            await fleet.command("revive")
            guest_ipvs.preload_table(sorted(healthy))
            daemon = guest_ipvs.Daemon(recipe, os.path.join(workdir, "daemon-warm.log"))
            daemon.start()
            out["detect_mode"] = "warm"
            out["usage"] = await steady_usage(daemon, spec["settle"])
            out["detect"] = await detect(fleet, healthy, spec, rng)
            if daemon.exited() is not None:
                out["error"] = f"daemon exited {daemon.exited()}: {daemon.log_tail()}"
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        if daemon is not None:
            out["error"] += "\n" + daemon.log_tail()
    finally:
        if daemon is not None:
            await daemon.stop()
        await fleet.close()
        guest_ipvs.flush_table()
    return out


def main() -> None:
    spec = json.loads(sys.argv[1])
    subprocess.run(["modprobe", "ip_vs"], check=False, timeout=30)
    resource.setrlimit(resource.RLIMIT_NOFILE, (65536, 65536))  # root in the guest
    result = asyncio.run(scenario(spec))
    sys.stdout.write("BENCH-RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
