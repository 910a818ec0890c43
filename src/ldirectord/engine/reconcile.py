"""The reconciler: desired table vs the kernel's table → the ordered ops that close the gap.

Owns the order of kernel changes and their log wording (ldirectord's, reference §3.2/§4.6), in
one place:
- services first (``Added virtual server`` / ``Changed virtual server`` only when different);
- within a service, traffic is never left without a destination: reals (and a fallback) that
  should serve are added or restored *before* anything is quiesced or deleted, so the fallback
  goes in before the last real leaves and a returning real is in before the fallback goes;
- what is already right is left alone (no delete-and-re-add where an edit does; a quiesced real
  already at weight 0 with the same method is not touched; KEEP entries are never touched);
- anything present in a managed service that the desired table does not hold is removed
  (a down real, a fallback no longer needed, a real not in the config: ``Purged … (start)``);
- services we managed that are no longer desired are drained (dests deleted) and then deleted;
  services we never managed are left alone.

Pure: no IO, no asyncio. The applier (engine/director.py) runs the ops in the order given.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from ldirectord.engine.desired import DesiredDest, DesiredService, DesiredTable, Mode
from ldirectord.forwarding.base import (
    AddDest,
    AddService,
    DeleteDest,
    DeleteService,
    Dest,
    DestKey,
    EditDest,
    EditService,
    KernelTable,
    Op,
    ServiceKey,
    VirtualEntry,
)


class Tag(StrEnum):
    """ldirectord's purge tag: ``start`` (start-up and reload) or ``stop``."""

    START = "start"
    STOP = "stop"


class Change(StrEnum):
    """What an op does to a configured real (for alerts), or OTHER."""

    SERVE = "serve"  # added or restored with its weight
    QUIESCE = "quiesce"  # weight 0
    REMOVE = "remove"  # deleted
    OTHER = "other"  # a service, a fallback, a stranger


@dataclass(frozen=True, slots=True)
class Planned:
    op: Op
    message: str  # ldirectord's log line for this op
    service: ServiceKey
    dest: DestKey | None = None
    change: Change = Change.OTHER


def virtual_str(key: ServiceKey) -> str:
    """ldirectord's get_virtual: ``VIP:PORT``, ``[VIP6]:PORT`` or the fwmark number."""
    if key.fwmark is not None:
        return str(key.fwmark)
    return str(key)


def _server(tag: str, key: ServiceKey, dest: DestKey) -> str:
    return f"{tag} server: {dest.render(key.family)} ({virtual_str(key)})"


def _same_serving(have: Dest, want: Dest) -> bool:
    return (
        have.weight == want.weight
        and have.upper == want.upper
        and have.lower == want.lower
        and have.method is want.method
    )


def _serve(key: ServiceKey, want: DesiredDest, have: Dest | None) -> Planned | None:
    what = "fallback" if want.is_fallback else "real"
    change = Change.OTHER if want.is_fallback else Change.SERVE
    dest = want.dest
    if have is None:
        msg = f"Added {_server(what, key, dest.key)} (Weight set to {dest.weight})"
        return Planned(AddDest(key, dest), msg, key, dest.key, change)
    if _same_serving(have, dest):
        return None
    msg = f"Restored {_server(what, key, dest.key)} (Weight set to {dest.weight})"
    return Planned(EditDest(key, dest), msg, key, dest.key, change)


def _quiesce(key: ServiceKey, want: DesiredDest, have: Dest | None) -> Planned | None:
    dest = want.dest
    if have is None:
        if not want.add_if_missing:
            return None
        msg = f"Readd Quiescent {_server('real', key, dest.key)} (Weight set to 0)"
        return Planned(AddDest(key, dest), msg, key, dest.key, Change.QUIESCE)
    if have.weight == 0 and have.method is dest.method:
        return None
    msg = f"Quiescent {_server('real', key, dest.key)} (Weight set to 0)"
    return Planned(EditDest(key, dest), msg, key, dest.key, Change.QUIESCE)


def _remove(key: ServiceKey, want: DesiredService, dest: DestKey, tag: Tag) -> Planned:
    op = DeleteDest(key, dest)
    if dest == want.fallback:
        return Planned(op, f"Deleted {_server('fallback', key, dest)}", key, dest)
    if dest in want.configured:
        return Planned(op, f"Deleted {_server('real', key, dest)}", key, dest, Change.REMOVE)
    msg = f"Purged real server ({tag}): {dest.render(key.family)} ({virtual_str(key)})"
    return Planned(op, msg, key, dest)


def diff_service(want: DesiredService, have: VirtualEntry | None, tag: Tag) -> list[Planned]:
    """The ops for one desired service against its kernel entry (None when absent)."""
    key = want.spec.key
    plan: list[Planned] = []
    if have is None:
        plan.append(
            Planned(AddService(want.spec), f"Added virtual server: {virtual_str(key)}", key)
        )
        present: dict[DestKey, Dest] = {}
    else:
        if have.spec != want.spec:
            msg = f"Changed virtual server: {virtual_str(key)}"
            plan.append(Planned(EditService(want.spec), msg, key))
        present = dict(have.dests)
    serving = [d for d in want.dests.values() if d.mode is Mode.SERVE]
    # Reals before the fallback: a returning real is in before the fallback leaves.
    serving.sort(key=lambda d: d.is_fallback)
    for d in serving:
        step = _serve(key, d, present.get(d.dest.key))
        if step is not None:
            plan.append(step)
    for d in want.dests.values():
        if d.mode is Mode.QUIESCE:
            step = _quiesce(key, d, present.get(d.dest.key))
            if step is not None:
                plan.append(step)
    # Removals last; the fallback first among them, then configured reals, then strangers.
    gone = [k for k in present if k not in want.dests]
    gone.sort(key=lambda k: (k != want.fallback, k not in want.configured, k))
    plan.extend(_remove(key, want, k, tag) for k in gone)
    return plan


def drain_service(have: VirtualEntry, tag: Tag) -> list[Planned]:
    """Delete every dest of a service, then the service (cleanstop, or dropped from the config)."""
    key = have.spec.key
    plan = [
        Planned(
            DeleteDest(key, k),
            f"Purged real server ({tag}): {k.render(key.family)} ({virtual_str(key)})",
            key,
            k,
        )
        for k in sorted(have.dests)
    ]
    msg = f"Purged virtual server ({tag}): {virtual_str(key)}"
    plan.append(Planned(DeleteService(key), msg, key))
    return plan


def _order(key: ServiceKey) -> tuple[str, str, str, int, int]:
    return (key.protocol, key.family, key.address or "", key.port, key.fwmark or 0)


def diff(
    desired: DesiredTable,
    actual: KernelTable,
    managed: Iterable[ServiceKey] = (),
    tag: Tag = Tag.START,
) -> list[Planned]:
    """Ordered ops turning ``actual`` into ``desired``.

    ``managed``: services we are responsible for beyond the desired ones (the previous config's
    on reload, the cleanstop ones on stop): those absent from ``desired`` are drained and
    deleted. Other services in ``actual`` are never touched.
    """
    plan: list[Planned] = []
    for key, want in desired.services.items():
        plan.extend(diff_service(want, actual.services.get(key), tag))
    for key in sorted(set(managed), key=_order):
        if key in desired.services:
            continue
        have = actual.services.get(key)
        if have is not None:
            plan.extend(drain_service(have, tag))
    return plan
