"""IpvsBackend against real IPVS in a User-Mode Linux guest (tests/kernel/guest/)."""

from __future__ import annotations

import pytest

from tests.kernel.guest_run import guest_pytest, report

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("uml_harness")]


@pytest.mark.timeout(700)
def test_contract_every_op_and_field_round_trips_in_the_kernel() -> None:
    result = guest_pytest(["tests/kernel/guest/test_ipvs_contract.py"], timeout=600)
    assert result.returncode == 0, report(result)
