"""The effective configuration: frozen, slotted dataclasses and enums.

Owns the *meaning* of an ldirectord.cf after validation: every value here is already the
effective one (defaults from ldirectord's code applied, timeouts resolved as ldirectord's
ld_setup resolves them, names resolved to addresses, ports to numbers). It knows nothing about
how the text was lexed or parsed, and does no IO.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from ldirectord.config.location import NOWHERE, Location


class Family(StrEnum):
    INET = "inet"
    INET6 = "inet6"


class Protocol(StrEnum):
    TCP = "tcp"
    UDP = "udp"
    FWM = "fwm"


class Method(StrEnum):
    """Forwarding method of a real server (ipvsadm -g / -m / -i)."""

    GATE = "gate"
    MASQ = "masq"
    IPIP = "ipip"


class CheckType(StrEnum):
    CONNECT = "connect"
    NEGOTIATE = "negotiate"
    PING = "ping"
    EXTERNAL = "external"
    EXTERNAL_PERL = "external-perl"
    ON = "on"
    OFF = "off"
    #: ``checktype=N``: N connect checks between negotiate checks (see CheckSpec.combined_n).
    COMBINED = "combined"


class Service(StrEnum):
    DNS = "dns"
    FTP = "ftp"
    HTTP = "http"
    HTTPS = "https"
    HTTP_PROXY = "http_proxy"
    IMAP = "imap"
    IMAPS = "imaps"
    LDAP = "ldap"
    LDAPS = "ldaps"
    MYSQL = "mysql"
    NNTP = "nntp"
    NONE = "none"
    ORACLE = "oracle"
    PGSQL = "pgsql"
    POP = "pop"
    POPS = "pops"
    RADIUS = "radius"
    SIP = "sip"
    SMTP = "smtp"
    SUBMISSION = "submission"
    SIMPLETCP = "simpletcp"


class HttpMethod(StrEnum):
    GET = "GET"
    HEAD = "HEAD"


class DaemonStatus(StrEnum):
    """The daemon phases emailalertstatus filters on."""

    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    RELOADING = "reloading"


ALL_ALERT_STATUSES: frozenset[DaemonStatus] = frozenset(DaemonStatus)


@dataclass(frozen=True, slots=True)
class Fallback:
    """The server put into a virtual service when none of its reals is available."""

    address: str  # IP literal, IPv6 without brackets
    port: int
    method: Method = Method.GATE
    location: Location = NOWHERE


@dataclass(frozen=True, slots=True)
class RealServer:
    address: str  # IP literal, IPv6 without brackets (ranges already expanded)
    port: int  # 0 when not written (ipvsadm then uses the virtual's port)
    method: Method
    weight: int = 1
    #: Per-real overrides as ldirectord stores them (request with its leading "/"), else None.
    request: str | None = None
    receive: str | None = None
    lower: int = 0  # l:N, ipvsadm -y
    upper: int = 0  # u:N, ipvsadm -x
    location: Location = NOWHERE


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """How the reals of one virtual are checked, with effective values only."""

    checktype: CheckType = CheckType.NEGOTIATE
    #: N for ``checktype=N`` (CheckType.COMBINED), else None.
    combined_n: int | None = None
    service: Service = Service.NONE
    checkport: int | None = None  # explicit checkport=, else None (see effective_check_port)
    request: str = "/"  # as ldirectord stores it: a leading "/" added when missing
    receive: str = ""
    virtualhost: str | None = None
    httpmethod: HttpMethod = HttpMethod.GET
    login: str = ""
    passwd: str = ""
    database: str = ""
    secret: str = ""
    checkcommand: str = "/bin/true"
    checktimeout: float = 5.0  # effective, after ldirectord's mutual fallback
    negotiatetimeout: float = 30.0  # effective, after ldirectord's mutual fallback
    checkcount: int = 1
    failurecount: int = 1
    checkinterval: float = 10.0  # effective for this virtual
    #: Our extensions (not in ldirectord), off by default; see docs/engine.md.
    rise: int = 1  # successes in a row before a down real is put back
    fastinterval: float | None = None  # re-check interval after a failed check (None = off)


@dataclass(frozen=True, slots=True)
class VirtualService:
    family: Family
    protocol: Protocol
    address: str | None  # IP literal (IPv6 without brackets); None for fwmark services
    port: int  # 0 for fwmark services
    fwmark: int | None
    address_as_written: str
    scheduler: str = "wrr"
    persistent: int | None = None
    netmask: str | None = None  # dotted quad (inet) or prefix length as text (inet6)
    schedflags: str | None = None
    ops: bool = False
    check: CheckSpec = field(default_factory=CheckSpec)
    reals: tuple[RealServer, ...] = ()
    fallback: Fallback | None = None
    fallbackcommand: str | None = None
    quiescent: bool = False
    cleanstop: bool = True
    emailalert: str = ""
    emailalertfreq: int = 0
    emailalertstatus: frozenset[DaemonStatus] = ALL_ALERT_STATUSES
    smtp: str | None = None
    monitorfile: str | None = None
    servicename: str | None = None
    comment: str | None = None
    location: Location = NOWHERE

    @property
    def name(self) -> str:
        """``ip:port``, ``[ip6]:port`` or the fwmark number: the pulse's and status's name."""
        if self.fwmark is not None:
            return str(self.fwmark)
        assert self.address is not None
        host = f"[{self.address}]" if self.family is Family.INET6 else self.address
        return f"{host}:{self.port}"

    @property
    def vid(self) -> str:
        """ldirectord's virtual id: ``tcp:IP:PORT``, ``udp:…``, ``fwm:N`` or ``fwm6:N``."""
        if self.fwmark is not None:
            return f"fwm{'6' if self.family is Family.INET6 else ''}:{self.fwmark}"
        return f"{self.protocol}:{self.name}"


@dataclass(frozen=True, slots=True)
class GlobalConfig:
    autoreload: bool = False
    callback: str | None = None
    checkcount: int = 1
    checkinterval: float = 10.0
    checktimeout: float | None = (
        None  # as written (None = unset); effective values live in CheckSpec
    )
    negotiatetimeout: float | None = None
    cleanstop: bool = True
    emailalert: str = ""
    emailalertfreq: int = 0
    emailalertfrom: str | None = None
    emailalertstatus: frozenset[DaemonStatus] = ALL_ALERT_STATUSES
    failurecount: int = 1
    fallback: Fallback | None = None
    fallback6: Fallback | None = None
    fallbackcommand: str | None = None
    fork: bool = False
    logfile: str = "/var/log/ldirectord.log"  # "/path" = file, else a syslog facility
    maintenancedir: str | None = None
    quiescent: bool = False
    readdquiescent: bool = False
    supervised: bool = False
    smtp: str | None = None
    execute: tuple[str, ...] = ()
    #: Our extensions (rise=, fastinterval= in column 0), the defaults of every virtual's
    #: CheckSpec.rise / CheckSpec.fastinterval; see docs/engine.md.
    rise: int = 1
    fastinterval: float | None = None


@dataclass(frozen=True, slots=True)
class Config:
    path: str
    globals: GlobalConfig
    virtuals: tuple[VirtualService, ...]
    warnings: tuple[str, ...] = ()
    #: The extension directives the file uses (sorted), e.g. ("fastinterval", "rise"): Perl
    #: ldirectord would reject such a file.
    extensions: tuple[str, ...] = ()


#: Port → service, as ldirectord's ld_port_to_service (reference §1.5).
PORT_SERVICES: dict[int, Service] = {
    21: Service.FTP,
    25: Service.SMTP,
    53: Service.DNS,
    80: Service.HTTP,
    110: Service.POP,
    119: Service.NNTP,
    143: Service.IMAP,
    389: Service.LDAP,
    443: Service.HTTPS,
    587: Service.SUBMISSION,
    636: Service.LDAPS,
    993: Service.IMAPS,
    995: Service.POPS,
    1521: Service.ORACLE,
    1812: Service.RADIUS,
    3128: Service.HTTP_PROXY,
    3306: Service.MYSQL,
    5060: Service.SIP,
    5432: Service.PGSQL,
}

#: Service → default port, as ldirectord's ld_service_to_port (used as the check port last).
SERVICE_PORTS: dict[Service, int] = {svc: port for port, svc in PORT_SERVICES.items()}


def effective_check_port(virtual: VirtualService, real: RealServer) -> int:
    """ldirectord's ld_checkport: checkport, else the real's port if > 0, else the service's."""
    if virtual.check.checkport:
        return virtual.check.checkport
    if real.port > 0:
        return real.port
    return SERVICE_PORTS.get(virtual.check.service, 0)
