"""Differential test in a guest: Debian's Perl ldirectord vs our engine, same configs, same
healthy and dead real servers, same ``ipvsadm -Ln`` (tests/kernel/guest/test_differential.py)."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.kernel.guest_run import guest_pytest, report

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("uml_harness")]


@pytest.mark.timeout(900)
def test_same_ipvs_table_as_perl_ldirectord_in_the_guest() -> None:
    if shutil.which("ldirectord", path="/usr/sbin:/sbin") is None:
        message = "Debian's ldirectord is not installed (apt-get install ldirectord)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    result = guest_pytest(
        ["tests/kernel/guest/test_differential.py"],
        timeout=800,
        setup="sh tests/kernel/guest/topology.sh",
        prefix=["ip", "netns", "exec", "director"],
    )
    assert result.returncode == 0, report(result)
