"""The daemon against real IPVS, in a User-Mode Linux guest (tests/kernel/uml.py).

start (--backend ipvs) → the kernel table has both reals → status 0 on backend ipvs →
a reload changes a weight in the kernel → a bad reload leaves the kernel table as it was →
a real dies and leaves the table → stop purges the table (cleanstop=yes).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.kernel import uml

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

DRIVER = r"""
import json, os, signal, subprocess, sys, time
from pathlib import Path
from tests.component.test_daemon_support import demo_config, http_reals, ldirectord, wait_for

T = Path(sys.argv[1])
subprocess.run(["modprobe", "ip_vs"], check=False)
out = {}
def table():
    return subprocess.run(["ipvsadm", "-Ln"], capture_output=True, text=True).stdout
cfg, run = T / "k.cf", T / "run"
run.mkdir()
opts = ["--backend", "ipvs", "--rundir", str(run)]
with http_reals(T, 2) as reals:
    ports = [r.port for r in reals]
    demo_config(cfg, ports)
    out["start"] = ldirectord(*opts, str(cfg), "start").returncode
    state = run / "ldirectord.k.cf.state"
    def up():
        try:
            doc = json.loads(state.read_text())
        except (OSError, ValueError):
            return 0
        return doc["virtuals"][0]["reals_up"] if doc["status"] == "running" else 0
    wait_for("2 reals up", lambda: up() == 2)
    out["running"] = table()
    st = ldirectord(*opts, str(cfg), "status")
    out["status"] = [st.returncode, st.stdout]
    demo_config(cfg, ports, weights=[1, 4])
    out["reload"] = ldirectord(*opts, str(cfg), "reload").returncode
    wait_for("weight 4", lambda: f"127.0.0.1:{ports[1]}" in table() and " 4 " in table())
    out["reloaded"] = table()
    good = cfg.read_text()
    cfg.write_text(good + "\tbogus=1\n")
    os.kill(int((run / "ldirectord.k.cf.pid").read_text()), signal.SIGHUP)
    time.sleep(2)
    out["bad_reload"] = table()
    cfg.write_text(good)
    os.killpg(reals[1].proc.pid, signal.SIGKILL)
    wait_for("the dead real to leave", lambda: f"127.0.0.1:{ports[1]}" not in table())
    out["one_dead"] = table()
    out["stop"] = ldirectord(*opts, str(cfg), "stop").returncode
    out["stopped"] = table()
    out["ports"] = ports
(T / "result.json").write_text(json.dumps(out))
"""


def test_daemon_drives_real_ipvs(tmp_path: Path) -> None:
    reason = uml.available()
    if reason is not None:
        message = f"needs a User-Mode Linux guest: {reason}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    tmp_path.chmod(0o755)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    env = dict(os.environ, PYTHONPATH=str(uml.REPO_ROOT))
    env.pop("NOTIFY_SOCKET", None)
    result = uml.run_in_guest(
        [uml.guest_python(), str(driver), str(tmp_path)],
        timeout=240,
        env=env,
        cwd=uml.REPO_ROOT,
        writable=(uml.REPO_ROOT, tmp_path),
    )
    assert result.returncode == 0, result.stdout + result.stderr + result.console[-2000:]
    out = json.loads((tmp_path / "result.json").read_text())
    p1, p2 = out["ports"]
    assert out["start"] == 0 and out["reload"] == 0 and out["stop"] == 0
    running = out["running"]
    assert "TCP  127.0.0.1:8080 wrr" in running
    assert f"-> 127.0.0.1:{p1}" in running and f"-> 127.0.0.1:{p2}" in running
    code, text = out["status"]
    assert code == 0 and "backend: ipvs" in text
    reloaded = [line.split() for line in out["reloaded"].splitlines() if f":{p2}" in line]
    assert reloaded and reloaded[0][2:4] == ["Masq", "4"]
    assert out["bad_reload"] == out["reloaded"]  # a bad reload changes nothing in the kernel
    assert f"127.0.0.1:{p2}" not in out["one_dead"] and f"127.0.0.1:{p1}" in out["one_dead"]
    assert "127.0.0.1:8080" not in out["stopped"]  # cleanstop purged the table
