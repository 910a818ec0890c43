"""Choose the forwarding backend: ``--backend auto|ipvs|dryrun`` (``--dry-run`` = dryrun).

``auto`` takes IPVS when ``IpvsBackend.usable()`` says so (root, ip_vs loaded, netlink works)
and otherwise the dry-run backend, with a clear warning saying why. ``ipvs`` that is not usable
is an error (the operator asked for it). Knows nothing else about either backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ldirectord.errors import BackendError
from ldirectord.forwarding.base import Backend
from ldirectord.forwarding.dryrun import DryRunBackend


@dataclass(frozen=True, slots=True)
class Choice:
    backend: Backend
    name: str  # "ipvs" or "dryrun"
    warning: str | None  # why auto fell back to dry-run


def make_dryrun(log: Callable[[str], None]) -> Backend:
    return DryRunBackend(log=log)


async def ipvs_unusable_reason() -> tuple[Backend | None, str | None]:
    from ldirectord.forwarding.ipvs import IpvsBackend  # imported only when IPVS is wanted

    backend = IpvsBackend()
    try:
        reason = await backend.usable()
    except (OSError, BackendError) as exc:
        reason = f"IPVS is not usable: {exc}"
    if reason is not None:
        await backend.close()
        return None, reason
    return backend, None


async def choose(kind: str, log: Callable[[str], None]) -> Choice:
    if kind == "dryrun":
        return Choice(make_dryrun(log), "dryrun", None)
    backend, reason = await ipvs_unusable_reason()
    if backend is not None:
        return Choice(backend, "ipvs", None)
    if kind == "ipvs":
        raise BackendError(f"--backend ipvs: {reason}")
    warning = (
        f"WARNING: {reason}; running with the dry-run backend: health checks, pulse and "
        "status work, but NO kernel IPVS table is changed"
    )
    return Choice(make_dryrun(log), "dryrun", warning)
