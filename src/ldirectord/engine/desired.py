"""The desired IPVS table: what the kernel should hold for a config and the reals' health.

Owns the mapping from configuration + health to table entries, with ldirectord's semantics
(reference §3.2–§3.5): services with scheduler, persistence, netmask, flags; serving reals at
their configured weight and thresholds; down reals quiesced (weight 0) or absent; the fallback
server (weight 1, thresholds 0) when no real of the virtual serves; ``checktype=off`` adding no
real and no fallback. It also owns the identities the engine keys things by (ServiceKey,
DestKey, MemberKey).

It does not know what the kernel holds now: the reconciler compares. Pure: no IO, no asyncio.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from ldirectord.config.model import (
    CheckType,
    Config,
    Fallback,
    Family,
    Method,
    Protocol,
    RealServer,
    VirtualService,
)
from ldirectord.forwarding.base import (
    Dest,
    DestKey,
    ServiceKey,
    ServiceSpec,
    canonical_sched_flags,
    default_netmask,
)
from ldirectord.health.machine import Health, State

#: One real server in one virtual service: the unit that has a health state.
MemberKey = tuple[ServiceKey, DestKey]


class Mode(StrEnum):
    SERVE = "serve"  # present with the configured weight and thresholds
    QUIESCE = "quiesce"  # present with weight 0 (the method must match; thresholds ignored)
    KEEP = "keep"  # no verdict yet: leave whatever the kernel holds (absent stays absent)


@dataclass(frozen=True, slots=True)
class DesiredDest:
    dest: Dest
    mode: Mode
    #: For QUIESCE: add at weight 0 when missing (readdquiescent=yes, or its first verdict).
    add_if_missing: bool = False
    is_fallback: bool = False


@dataclass(frozen=True, slots=True)
class DesiredService:
    spec: ServiceSpec
    #: Dests that should (or, for KEEP, may) be present. Anything else present is removed.
    dests: Mapping[DestKey, DesiredDest] = field(default_factory=dict)
    #: Keys of the configured reals (to tell a down real from a stranger when removing one).
    configured: frozenset[DestKey] = frozenset()
    #: The virtual's fallback server key, active or not (None when it has none).
    fallback: DestKey | None = None
    fallback_active: bool = False


@dataclass(frozen=True, slots=True)
class DesiredTable:
    services: Mapping[ServiceKey, DesiredService] = field(default_factory=dict)


@functools.lru_cache(maxsize=65536)
def canonical(address: str) -> str:
    """An IP literal in the form backends dump (compressed IPv6, no brackets)."""
    try:
        return str(ipaddress.ip_address(address.strip("[]")))
    except ValueError:
        return address


def service_key(virtual: VirtualService) -> ServiceKey:
    if virtual.fwmark is not None:
        return ServiceKey(Protocol.FWM, virtual.family, None, 0, virtual.fwmark)
    address = canonical(virtual.address) if virtual.address is not None else None
    return ServiceKey(virtual.protocol, virtual.family, address, virtual.port)


def service_spec(virtual: VirtualService) -> ServiceSpec:
    """The service as ldirectord's ``-A``/``-E`` flags describe it, normalised as dumps are."""
    netmask = default_netmask(virtual.family)
    if virtual.persistent is not None and virtual.netmask:
        netmask = virtual.netmask
    flags = frozenset(
        f.strip() for f in (virtual.schedflags or "").replace("|", ",").split(",") if f.strip()
    )
    return ServiceSpec(
        key=service_key(virtual),
        scheduler=virtual.scheduler,
        persistent=virtual.persistent,
        netmask=netmask,
        sched_flags=canonical_sched_flags(virtual.scheduler, flags),
        ops=virtual.ops and virtual.protocol is Protocol.UDP,
    )


def _port_for(virtual: VirtualService, port: int, method: Method) -> int:
    """The port ipvsadm puts in the table for a real of a non-fwmark service.

    Port 0 (none written) becomes the virtual's port, and so does any port of a gate or ipip
    real (ipvsadm forces the service port for direct routing and tunnelling), so the table we
    want is the table ldirectord's ipvsadm calls produce and restarts do not flap.
    """
    if virtual.fwmark is None and (port == 0 or method is not Method.MASQ):
        return virtual.port
    return port


def dest_key(virtual: VirtualService, real: RealServer) -> DestKey:
    return DestKey(canonical(real.address), _port_for(virtual, real.port, real.method))


def member_key(virtual: VirtualService, real: RealServer) -> MemberKey:
    return (service_key(virtual), dest_key(virtual, real))


def fallback_for(config: Config, virtual: VirtualService) -> Fallback | None:
    """ldirectord's fallback_find: the virtual's own, else the global one of its family."""
    if virtual.fallback is not None:
        return virtual.fallback
    if virtual.protocol is Protocol.FWM:
        return None  # the global fallback is kept per protocol (tcp, udp) only
    if virtual.family is Family.INET6:
        return config.globals.fallback6
    return config.globals.fallback


def fallback_dest(virtual: VirtualService, fallback: Fallback) -> Dest:
    key = DestKey(canonical(fallback.address), _port_for(virtual, fallback.port, fallback.method))
    return Dest(key, fallback.method, weight=1, upper=0, lower=0)


def serving_dest(virtual: VirtualService, real: RealServer) -> Dest:
    return Dest(dest_key(virtual, real), real.method, real.weight, real.upper, real.lower)


def desired_service(
    config: Config,
    virtual: VirtualService,
    health: Mapping[MemberKey, Health],
    fresh_down: Iterable[MemberKey] = (),
) -> DesiredService:
    """The desired entry of one virtual. ``fresh_down``: reals whose *first* verdict was down."""
    skey = service_key(virtual)
    fresh = frozenset(fresh_down)
    readd = config.globals.readdquiescent
    dests: dict[DestKey, DesiredDest] = {}
    configured: set[DestKey] = set()
    any_up = False
    off = virtual.check.checktype is CheckType.OFF
    for real in virtual.reals:
        dest = serving_dest(virtual, real)
        configured.add(dest.key)
        h = health.get((skey, dest.key), Health())
        if off or h.state is State.UNKNOWN:
            dests[dest.key] = DesiredDest(dest, Mode.KEEP)
        elif h.up:
            any_up = True
            dests[dest.key] = DesiredDest(dest, Mode.SERVE)
        elif virtual.quiescent:
            quiet = Dest(dest.key, dest.method, weight=0)
            add = readd or (skey, dest.key) in fresh
            dests[dest.key] = DesiredDest(quiet, Mode.QUIESCE, add_if_missing=add)
        # else: down and not quiescent, so absent
    fb = fallback_for(config, virtual)
    fb_key = fallback_dest(virtual, fb).key if fb is not None else None
    active = fb is not None and not any_up and not off
    if active and fb is not None:
        fdest = fallback_dest(virtual, fb)
        dests[fdest.key] = DesiredDest(fdest, Mode.SERVE, is_fallback=True)
    return DesiredService(
        spec=service_spec(virtual),
        dests=dests,
        configured=frozenset(configured),
        fallback=fb_key,
        fallback_active=active,
    )


def desired_table(
    config: Config,
    health: Mapping[MemberKey, Health],
    fresh_down: Iterable[MemberKey] = (),
) -> DesiredTable:
    """The whole desired table, services in config order (later duplicates win)."""
    fresh = frozenset(fresh_down)
    services: dict[ServiceKey, DesiredService] = {}
    for virtual in config.virtuals:
        entry = desired_service(config, virtual, health, fresh)
        services[entry.spec.key] = entry
    return DesiredTable(services)
