"""Guest side of the netlink error storm (tests/kernel/test_faults_netlink.py starts it).

Runs as root inside the User-Mode Linux guest with real IPVS: the real daemon with
``--backend ipvs`` on four loopback HTTP reals (the fault suite's fleet), one of which flaps
(healthy ↔ hang) so the engine has to change the kernel table all the time, while another
process deletes the virtual service and a real with ``ipvsadm`` every 50 ms for STORM seconds:
nearly every change the engine makes meets a table that is not what it last saw, and the
kernel refuses it. The plugin is polled throughout. Prints one JSON document of measurements
on stdout; the host side asserts on it.

    PYTHONPATH=. python tests/kernel/guest/faults_netlink_storm.py
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.faults.harness import Daemon, fleet, kill_daemon, wait_for, watching
from tests.faults.plan import Plan

STORM = 10.0
FLAP_EVERY = 1.2


def ipvsadm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ipvsadm", *args], capture_output=True, text=True, timeout=10, check=False
    )


def kernel_reals(vip: str) -> dict[str, int] | None:
    """real → weight of service ``vip`` in the kernel (``ipvsadm -Ln``); None if absent."""
    out = ipvsadm("-Ln", "-t", vip)
    if out.returncode != 0:
        return None
    reals = {}
    for line in out.stdout.splitlines():
        m = re.match(r"\s+->\s+(\S+)\s+\S+\s+(\d+)", line)
        if m and m.group(1) != "RemoteAddress:Port":
            reals[m.group(1)] = int(m.group(2))
    return reals


def main() -> int:
    subprocess.run(["modprobe", "ip_vs"], check=True, timeout=30)
    ipvsadm("-C")
    base = Path(tempfile.mkdtemp(prefix="faults-netlink-"))
    plan = Plan(base)
    virtual = plan.add("hang", healthy=4, dead=0, dies=0)
    plan.prepare()
    result: dict[str, object] = {}
    daemon = Daemon(base)
    daemon.backend = ["--backend", "ipvs"]
    with fleet(plan.listeners) as running:
        daemon.write_config(plan.config_body())
        try:
            daemon.start()
            want = {r.name: 1 for r in virtual.reals}
            result["ready"] = wait_for(
                "the kernel table", lambda: kernel_reals(virtual.name) == want, 15
            )
            flapper = virtual.reals[0]
            victim = virtual.reals[1].name
            stop = threading.Event()
            storm_ops = [0]

            def storm() -> None:
                end = time.monotonic() + STORM
                while time.monotonic() < end and not stop.is_set():  # bounded by STORM
                    ipvsadm("-D", "-t", virtual.name)
                    storm_ops[0] += 1
                    time.sleep(0.05)
                    ipvsadm("-d", "-t", virtual.name, "-r", victim)
                    storm_ops[0] += 1
                    time.sleep(0.05)

            with watching(daemon, plugin_every=0.5) as (plugin, pulse):
                time.sleep(1.0)
                checks0 = int(daemon.state()["checks_completed"])
                t0 = time.monotonic()
                stormer = threading.Thread(target=storm, daemon=True)
                stormer.start()
                flips = 0
                while stormer.is_alive() and time.monotonic() - t0 < STORM + 5:
                    assert flapper.listener is not None
                    mode = "hang" if flips % 2 == 0 else "http_ok"
                    running.set_mode(flapper.listener, mode)
                    flips += 1
                    time.sleep(FLAP_EVERY)
                stop.set()
                stormer.join(10)
                assert flapper.listener is not None
                running.set_mode(flapper.listener, "http_ok")
                t_end = time.monotonic()
                checks1 = int(daemon.state()["checks_completed"])
                try:
                    result["converged_after"] = wait_for(
                        "the kernel table to converge",
                        lambda: kernel_reals(virtual.name) == want,
                        20,
                    )
                except AssertionError:
                    result["converged_after"] = None
                    result["kernel_at_end"] = kernel_reals(virtual.name)
                t_done = time.monotonic()
                # one deletion with no health change after it: ldirectord only touched the
                # kernel when a real changed state; our engine re-reads it every 10 s here
                ipvsadm("-D", "-t", virtual.name)
                try:
                    result["restored_without_health_change"] = wait_for(
                        "the service back", lambda: kernel_reals(virtual.name) == want, 15
                    )
                except AssertionError:
                    result["restored_without_health_change"] = None
            log = daemon.log_text()
            result.update(
                storm_ops=storm_ops[0],
                flips=flips,
                checks_during_storm=checks1 - checks0,
                storm_seconds=round(t_end - t0, 2),
                pulse_max_gap=round(pulse.max_gap(t0, t_done), 2),
                plugin_polls=len(plugin.since(t0)),
                plugin_not_ok=[s.line for s in plugin.not_ok(t0, t_done)][:5],
                error_lines=[x for x in log.splitlines() if "rror" in x or "failed" in x][:8],
                error_count=sum(1 for x in log.splitlines() if "rror" in x or "failed" in x),
                stalls=log.count("Event loop stalled"),
                alive=daemon.pid > 0 and Path(f"/proc/{daemon.pid}").exists(),
            )
            stopped = daemon.stop()
            result["stop_rc"] = stopped.returncode
            result["kernel_after_stop"] = kernel_reals(virtual.name)
        finally:
            kill_daemon(daemon)
            ipvsadm("-C")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
