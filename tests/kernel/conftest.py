"""Host side of the kernel tests: each test boots a User-Mode Linux guest (tests/kernel/uml.py)
and runs a guest-side pytest module (tests/kernel/guest/) or script inside it.

Without the harness these tests are skipped with the command that enables them; with CI=true
a missing harness fails them instead. The guest-side modules are never collected on the host
(they need real IPVS and run as root inside the guest, where LDIRECTORD_IN_GUEST=1).
"""

from __future__ import annotations

import os

import pytest

from tests.kernel import uml

if os.environ.get("LDIRECTORD_IN_GUEST") != "1":
    collect_ignore = ["guest"]


@pytest.fixture(scope="session")
def uml_harness() -> None:
    """Skip (or, under CI=true, fail) when no User-Mode Linux guest can be started here."""
    reason = uml.available()
    if reason is None:
        return
    message = f"kernel tests need a User-Mode Linux guest: {reason}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true: a missing harness is a failure)", pytrace=False)
    pytest.skip(f"{message}; enable them with: {uml.INSTALL_HINT}")
