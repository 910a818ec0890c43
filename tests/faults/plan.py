"""Backend-fault scenarios as data: which virtual services, which reals are healthy, dead from
the start or turned hostile while the daemon runs, and the config that describes them.

One *kind* per fault of issue 8. A kind knows the virtual's check settings, the healthy and the
hostile behaviour of its reals (a fleet mode, or a flag file for the external script) and how
to switch a real from one to the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tests.faults.harness import Addresses, Fleet, Listener
from tests.helpers.servers import PASSWORD, USER

HEALTHY, DEAD, DIES = "healthy", "dead", "dies"

# A script that, once its real's flag file exists, ignores SIGTERM, forks two children that
# ignore it too (same process group), and never ends: only a SIGKILL of the group ends it.
STUBBORN = """#!/bin/sh
# external check: $1 VIP, $2 VPORT, $3 RIP, $4 RPORT
if [ -e "{flags}/bad-$3-$4" ]; then
    trap '' TERM
    sleep 3600 &
    sleep 3600 &
    sleep 3600
fi
exit 0
"""


@dataclass(frozen=True)
class Kind:
    name: str
    proto: str  # tcp / udp / none (external: no listener)
    healthy: str  # fleet mode of a healthy real
    fault: str  # fleet mode of a hostile real
    service: str  # the virtual's check lines (tab-indented)
    vport: int = 80
    udp_virtual: bool = False


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "hang",
            "tcp",
            "http_ok",
            "hang",
            '\tservice=http\n\trequest="/health"\n\treceive="OK"\n',
        ),
        Kind(
            "trickle",
            "tcp",
            "http_ok",
            "trickle",
            '\tservice=http\n\trequest="/health"\n\treceive="OK"\n',
        ),
        Kind(
            "reset",
            "tcp",
            "http_ok",
            "reset",
            '\tservice=http\n\trequest="/health"\n\treceive="OK"\n',
        ),
        Kind(
            "garbage",
            "tcp",
            "http_ok",
            "garbage",
            '\tservice=http\n\trequest="/health"\n\treceive="OK"\n',
        ),
        Kind(
            "tls_hang",
            "tcp",
            "https_ok",
            "tls_hang",
            '\tservice=https\n\trequest="/health"\n\treceive="OK"\n',
            vport=443,
        ),
        Kind(
            "dns_black_hole",
            "udp",
            "dns_ok",
            "black_hole",
            '\tservice=dns\n\trequest="www.faults.test"\n\treceive="192.0.2.10"\n',
            vport=53,
            udp_virtual=True,
        ),
        Kind(
            "mysql_stall",
            "tcp",
            "proxy:{mysql}",
            "mysql_stall",
            f'\tservice=mysql\n\tlogin="{USER}"\n\tpasswd="{PASSWORD}"\n\tdatabase="ldtest"\n'
            '\trequest="SELECT v FROM t"\n',
            vport=3306,
        ),
        Kind(
            "external_stubborn",
            "none",
            "exit0",
            "stubborn",
            '\tchecktype=external\n\tcheckcommand="{script}"\n',
        ),
    )
}


@dataclass
class Real:
    kind: Kind
    role: str  # HEALTHY / DEAD / DIES
    listener: Listener | None = None
    host: str = ""
    port: int = 0

    @property
    def name(self) -> str:
        if self.listener is not None:
            return self.listener.name
        return f"{self.host}:{self.port}"


@dataclass
class Virtual:
    kind: Kind
    vip: str
    reals: list[Real] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.vip}:{self.kind.vport}"


@dataclass
class Plan:
    """Virtual services and reals of one scenario; ``fleet_listeners`` feed the fleet."""

    base: Path
    virtuals: list[Virtual] = field(default_factory=list)
    mysql_port: int = 0
    addresses: Addresses = field(default_factory=Addresses)

    @property
    def flags(self) -> Path:
        return self.base / "flags"

    @property
    def script(self) -> Path:
        return self.base / "stubborn-check.sh"

    def add(self, kind: str, healthy: int, dead: int, dies: int) -> Virtual:
        k = KINDS[kind]
        virtual = Virtual(k, f"192.0.2.{len(self.virtuals) + 1}")
        for role, count in ((HEALTHY, healthy), (DEAD, dead), (DIES, dies)):
            for _ in range(count):
                real = Real(k, role, host=self.addresses.next(), port=9000)
                if k.proto != "none":
                    mode = k.fault if role == DEAD else self.healthy_mode(k)
                    real.listener = Listener(real.host, k.proto, mode)
                virtual.reals.append(real)
        self.virtuals.append(virtual)
        return virtual

    def healthy_mode(self, k: Kind) -> str:
        return k.healthy.format(mysql=self.mysql_port)

    @property
    def listeners(self) -> list[Listener]:
        return [r.listener for v in self.virtuals for r in v.reals if r.listener is not None]

    def reals(self, role: str | None = None) -> list[tuple[Virtual, Real]]:
        return [(v, r) for v in self.virtuals for r in v.reals if role in (None, r.role)]

    def prepare(self) -> None:
        """The external script and its flag directory (dead reals flagged from the start)."""
        self.flags.mkdir(exist_ok=True)
        self.script.write_text(STUBBORN.format(flags=self.flags))
        self.script.chmod(0o755)
        for _, real in self.reals(DEAD):
            if real.kind.proto == "none":
                self.flag(real).touch()

    def flag(self, real: Real) -> Path:
        return self.flags / f"bad-{real.host}-{real.port}"

    def config_body(self) -> str:
        blocks = []
        for v in self.virtuals:
            reals = "".join(f"\treal={r.name} masq 1\n" for r in v.reals)
            proto = "\tprotocol=udp\n" if v.kind.udp_virtual else ""
            service = v.kind.service.format(script=self.script)
            blocks.append(f"virtual={v.name}\n{reals}{proto}{service}\tscheduler=wrr\n")
        return "\n".join(blocks)

    def break_real(self, fleet: Fleet, real: Real) -> None:
        """Turn a healthy real hostile while the daemon runs."""
        if real.listener is None:
            self.flag(real).touch()
        else:
            fleet.set_mode(real.listener, real.kind.fault)
