"""Test helpers shared by every suite: hostile peers (hostile.py), the nginx fixture (nginx.py),
and ``check_target`` to build a CheckTarget without a config file."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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


def open_fds() -> int:
    """How many file descriptors this process has open (Linux /proc)."""
    import os

    return len(os.listdir("/proc/self/fd"))


async def cancellation_sweep(
    make: Callable[[], Awaitable[object]], *, max_ms: int = 40, max_steps: int = 40
) -> int:
    """Start ``make()`` and cancel it after 0..max_steps loop iterations, then after
    1..max_ms milliseconds, so every await inside gets cancelled at least once. Returns how
    many runs completed before their cancel point (so a sweep can assert it went far enough).
    """
    import asyncio

    completed = 0
    points = [(steps, 0.0) for steps in range(max_steps)]
    points += [(0, ms / 1000) for ms in range(1, max_ms + 1)]
    for steps, delay in points:
        task = asyncio.ensure_future(make())
        for _ in range(steps):
            await asyncio.sleep(0)
        if delay:
            await asyncio.sleep(delay)
        if task.done():
            task.result()
            completed += 1
            continue
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        else:
            completed += 1
    for _ in range(20):  # aborted transports close on the next loop iterations
        await asyncio.sleep(0.01)
    return completed
