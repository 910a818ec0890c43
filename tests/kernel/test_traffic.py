"""End-to-end traffic through real IPVS: the engine with IpvsBackend in the director namespace
of a guest, real HTTP servers, a client (tests/kernel/guest/test_traffic.py)."""

from __future__ import annotations

import pytest

from tests.kernel.guest_run import guest_pytest, report

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("uml_harness")]


@pytest.mark.timeout(900)
def test_nat_dr_tun_failover_restart_and_reload_in_the_guest() -> None:
    result = guest_pytest(
        ["tests/kernel/guest/test_traffic.py"],
        timeout=800,
        setup="sh tests/kernel/guest/topology.sh",
        prefix=["ip", "netns", "exec", "director"],
    )
    assert result.returncode == 0, report(result)
