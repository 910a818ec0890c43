"""Guest-side fixtures: these tests run as root inside the User-Mode Linux guest, where the
host-side tests in tests/kernel/ start them (LDIRECTORD_IN_GUEST=1). Never collected on the host.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from ldirectord.forwarding.ipvs import IpvsBackend

if os.environ.get("LDIRECTORD_IN_GUEST") != "1":  # pragma: no cover - guarded by collect_ignore
    raise RuntimeError("tests/kernel/guest/ runs only inside the guest (see tests/kernel/uml.py)")


def sh(*argv: str, check: bool = True, timeout: float = 30) -> str:
    """Run a command in the guest; its stdout. Raises with stderr when it fails."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} → {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


@pytest.fixture(scope="session", autouse=True)
def ip_vs_module() -> None:
    sh("modprobe", "ip_vs")


@pytest.fixture
def clean_table() -> Iterator[None]:
    sh("ipvsadm", "-C")
    yield
    sh("ipvsadm", "-C")


@pytest_asyncio.fixture
async def backend(clean_table: None) -> AsyncIterator[IpvsBackend]:
    b = IpvsBackend()
    try:
        yield b
    finally:
        await b.close()
