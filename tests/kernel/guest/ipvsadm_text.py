"""An independent reading of the kernel table: ``ipvsadm -Ln`` text, the way ldirectord reads it.

The contract tests compare IpvsBackend.dump() with this, so the backend's normalisation is
checked against ipvsadm's own view (and ldirectord's way of parsing it: -Ln for services,
methods and weights, --thresholds for u/l thresholds, --persistent-conn as a cross-check of
weights). Guest-side only: it runs the real ipvsadm binary.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
from dataclasses import dataclass, field

from ldirectord.config.model import Family, Method, Protocol
from ldirectord.forwarding.base import Dest, DestKey, KernelTable, ServiceKey, ServiceSpec
from ldirectord.forwarding.base import VirtualEntry as Entry

_SERVICE = re.compile(r"^(TCP|UDP|FWM)\s+(\S+)(\s+IPv6)?\s+(\S+)(.*)$")
_DEST = re.compile(r"^\s+->\s+(\S+)\s+(\S+)\s+(\d+)\s+(\d+)")
_METHODS = {"Route": Method.GATE, "Masq": Method.MASQ, "Tunnel": Method.IPIP}


def ipvsadm(*args: str) -> str:
    return subprocess.run(
        ["ipvsadm", *args], check=True, capture_output=True, text=True, timeout=30
    ).stdout


@dataclass
class _Svc:
    spec: ServiceSpec
    dests: dict[DestKey, dict[str, object]] = field(default_factory=dict)


def _split_hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return ipaddress.ip_address(host.strip("[]")).compressed, int(port)


def _service(m: re.Match[str]) -> ServiceSpec:
    proto, where, v6, sched, rest = m.groups()
    if proto == "FWM":
        family = Family.INET6 if v6 else Family.INET
        key = ServiceKey(Protocol.FWM, family, None, 0, int(where))
    else:
        address, port = _split_hostport(where)
        family = Family.INET6 if ":" in address else Family.INET
        key = ServiceKey(Protocol(proto.lower()), family, address, port)
    flags = re.search(r"\(([^)]*)\)", rest)
    persistent = re.search(r"\bpersistent (\d+)", rest)
    mask = re.search(r"\bmask (\S+)", rest)
    default = "128" if family is Family.INET6 else "255.255.255.255"
    return ServiceSpec(
        key=key,
        scheduler=sched,
        persistent=int(persistent.group(1)) if persistent else None,
        netmask=mask.group(1) if mask else default,
        sched_flags=frozenset(flags.group(1).split(",")) if flags else frozenset(),
        ops=re.search(r"\bops\b", rest) is not None,
    )


def _listing(*extra: str) -> dict[ServiceKey, _Svc]:
    services: dict[ServiceKey, _Svc] = {}
    current: _Svc | None = None
    for line in ipvsadm("-Ln", *extra).splitlines()[3:]:
        if m := _SERVICE.match(line):
            current = _Svc(_service(m))
            services[current.spec.key] = current
        elif (d := _DEST.match(line)) and current is not None:
            address, port = _split_hostport(d.group(1))
            current.dests[DestKey(address, port)] = {
                "col1": d.group(2),
                "col2": int(d.group(3)),
                "col3": int(d.group(4)),
            }
        elif line.strip():
            raise AssertionError(f"unparsed ipvsadm line: {line!r}")
    return services


def read_table() -> KernelTable:
    """The table as ``ipvsadm -Ln`` and ``ipvsadm -Ln --thresholds`` show it."""
    main = _listing()
    thresholds = _listing("--thresholds")
    persist = _listing("--persistent-conn")
    services: dict[ServiceKey, Entry] = {}
    for key, svc in main.items():
        assert thresholds[key].spec == svc.spec == persist[key].spec
        dests: dict[DestKey, Dest] = {}
        for dkey, cols in svc.dests.items():
            thr = thresholds[key].dests[dkey]
            assert persist[key].dests[dkey]["col1"] == str(cols["col2"])  # weight again
            dests[dkey] = Dest(
                key=dkey,
                method=_METHODS[str(cols["col1"])],
                weight=int(str(cols["col2"])),
                upper=int(str(thr["col1"])),
                lower=int(str(thr["col2"])),
            )
        services[key] = Entry(svc.spec, dests)
    return KernelTable(services)
