"""Test helpers shared by every suite: hostile peers (hostile.py), the nginx fixture (nginx.py),
and ``check_target`` to build a CheckTarget without a config file."""

from __future__ import annotations

from typing import Any

from ldirectord.checks.base import CheckTarget
from ldirectord.config.model import CheckSpec, CheckType, Family, Protocol, Service


def check_target(
    service: Service = Service.NONE,
    port: int = 0,
    *,
    kind: CheckType = CheckType.NEGOTIATE,
    host: str = "127.0.0.1",
    protocol: Protocol = Protocol.TCP,
    request: str = "/",
    receive: str = "",
    checktimeout: float = 2.0,
    negotiatetimeout: float = 2.0,
    external_args: tuple[str, str, str, str] = ("", "", "", ""),
    **spec: Any,
) -> CheckTarget:
    """A CheckTarget as target_for() would build it; ``spec`` sets other CheckSpec fields.

    ``request``/``receive`` are the virtual's (CheckSpec) and the effective ones alike.
    """
    family = Family.INET6 if ":" in host else Family.INET
    check = CheckSpec(
        checktype=kind,
        service=service,
        request=request,
        receive=receive,
        checktimeout=checktimeout,
        negotiatetimeout=negotiatetimeout,
        **spec,
    )
    return CheckTarget(
        kind=kind,
        service=service,
        family=family,
        protocol=protocol,
        host=host,
        port=port,
        spec=check,
        request=request,
        receive=receive,
        external_args=external_args,
    )
