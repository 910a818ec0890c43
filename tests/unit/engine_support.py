"""Builders for engine tests: Config objects without the parser, and table shorthands."""

from __future__ import annotations

import dataclasses
from typing import Any

from ldirectord.config.model import (
    CheckSpec,
    CheckType,
    Config,
    Fallback,
    Family,
    GlobalConfig,
    Method,
    Protocol,
    RealServer,
    VirtualService,
)
from ldirectord.forwarding.base import (
    Dest,
    DestKey,
    KernelTable,
    ServiceKey,
    ServiceSpec,
    VirtualEntry,
)


def real(address: str, port: int = 80, method: Method = Method.GATE, **kw: Any) -> RealServer:
    return RealServer(address, port, method, **kw)


def virtual(
    address: str = "192.168.6.240",
    port: int = 80,
    *reals: RealServer,
    protocol: Protocol = Protocol.TCP,
    checktype: CheckType = CheckType.CONNECT,
    check: dict[str, Any] | None = None,
    **kw: Any,
) -> VirtualService:
    spec = CheckSpec(checktype=checktype, **(check or {}))
    fwmark = kw.pop("fwmark", None)
    family = kw.pop("family", Family.INET)
    if fwmark is not None:
        protocol, address_or_none, port = Protocol.FWM, None, 0
    else:
        address_or_none = address
    return VirtualService(
        family=family,
        protocol=protocol,
        address=address_or_none,
        port=port,
        fwmark=fwmark,
        address_as_written=str(fwmark) if fwmark is not None else f"{address}:{port}",
        check=spec,
        reals=tuple(reals),
        **kw,
    )


def config(*virtuals: VirtualService, **globals_: Any) -> Config:
    return Config("<test>", GlobalConfig(**globals_), tuple(virtuals))


def fallback(address: str = "127.0.0.1", port: int = 80, method: Method = Method.GATE) -> Fallback:
    return Fallback(address, port, method)


def skey(
    address: str = "192.168.6.240", port: int = 80, protocol: Protocol = Protocol.TCP
) -> ServiceKey:
    return ServiceKey(protocol, Family.INET, address, port)


def dest(
    address: str, port: int = 80, weight: int = 1, method: Method = Method.GATE, **kw: Any
) -> Dest:
    return Dest(DestKey(address, port), method, weight, **kw)


def table(*entries: tuple[ServiceSpec | ServiceKey, list[Dest]]) -> KernelTable:
    services = {}
    for spec, dests in entries:
        s = spec if isinstance(spec, ServiceSpec) else ServiceSpec(spec)
        services[s.key] = VirtualEntry(s, {d.key: d for d in dests})
    return KernelTable(services)


def with_check(v: VirtualService, **changes: Any) -> VirtualService:
    return dataclasses.replace(v, check=dataclasses.replace(v.check, **changes))
