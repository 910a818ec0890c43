"""Kernel fault: a netlink error storm on the IPVS backend, in the User-Mode Linux guest.

The guest side (tests/kernel/guest/faults_netlink_storm.py) runs the real daemon with
``--backend ipvs`` on four loopback reals, one flapping, while another process deletes the
virtual service and a real with ipvsadm every 50 ms for 10 s. Proven here from its
measurements: the kernel's refusals are logged and followed by a re-read of the table (retried,
re-verified), checking goes on through the storm, the pulse never pauses beyond the margin and
the plugin stays OK, the kernel table converges once the storm ends, and stop still purges.
"""

from __future__ import annotations

import json

import pytest

from tests.kernel import uml
from tests.kernel.guest_run import GUEST_ENV, report

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.faults,
    pytest.mark.slow,
    pytest.mark.usefixtures("uml_harness"),
]


@pytest.mark.timeout(300)
def test_netlink_error_storm_is_retried_and_checking_continues() -> None:
    env = dict(GUEST_ENV, PYTHONPATH=str(uml.REPO_ROOT))
    result = uml.run_in_guest(
        [uml.guest_python(), "tests/kernel/guest/faults_netlink_storm.py"],
        timeout=240,
        env=env,
        cwd=uml.REPO_ROOT,
    )
    assert result.returncode == 0, report(result)
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    print("netlink storm:", json.dumps(doc))
    assert doc["storm_ops"] >= 40, doc  # the storm really ran
    assert doc["error_count"] >= 1, f"the storm never met a change of the engine: {doc}"
    assert all("re-reading the table" in line for line in doc["error_lines"]), doc
    assert doc["checks_during_storm"] >= 20, doc  # 4 reals at 1 s for 10 s, one flapping
    assert doc["stalls"] == 0 and doc["alive"], doc
    assert doc["pulse_max_gap"] <= 3.0, doc
    assert doc["plugin_polls"] >= 10 and not doc["plugin_not_ok"], doc
    # the engine re-reads the kernel every 5 checkintervals (10 s here): a hand deletion that
    # no later health change touches is put back by then
    assert doc["converged_after"] is not None and doc["converged_after"] <= 13, doc
    restored = doc["restored_without_health_change"]
    assert restored is not None and restored <= 13, doc
    assert doc["stop_rc"] == 0 and doc["kernel_after_stop"] is None, doc
