"""What the netlink error storm logs: a refused IPVS change names its errno once.

The storm (tests/kernel/test_faults_netlink.py) logged ``IPVS update failed (…: No such
process (errno 3) (errno 3))``: the last failure's text, which already ends in the errno, was
wrapped in a new BackendError, which appends it again.
"""

from __future__ import annotations

import errno
from typing import Any

import pytest

from ldirectord.errors import BackendError
from ldirectord.forwarding.base import AddDest
from ldirectord.forwarding.nlsocket import NetlinkError
from tests.kernel.test_ipvs_adapter import DEST, TCP4, backend_with, svc_msg

pytestmark = pytest.mark.faults


@pytest.mark.asyncio
async def test_a_refused_change_names_its_errno_once() -> None:
    def handler(kind: str, cmd: str) -> Any:
        if cmd == "dump":
            return [svc_msg()] if kind == "service" else []
        return NetlinkError(errno.ESRCH)

    backend, _ = backend_with(handler, attempts=2)
    with pytest.raises(BackendError) as info:
        await backend.apply(AddDest(TCP4, DEST))
    text = str(info.value)
    assert info.value.errno == errno.ESRCH
    assert text.endswith("No such process (errno 3)"), text
    assert text.count("errno") == 1, text
