"""Per-virtual directives: the draft a virtual block fills in, and one handler per directive.

Owns each in-block directive's value rule exactly as ldirectord's read_config applies it
(mandatory quotes, first digit run, yes/no exactly, first [a-z]+ run for the scheduler...)
and its order of effects (``service=ftp`` only fills a login that is still empty). Knows
nothing about the virtual header or name resolution (virtual.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from ldirectord.config.environment import Environment
from ldirectord.config.location import Location
from ldirectord.config.model import (
    CheckType,
    DaemonStatus,
    Fallback,
    Family,
    HttpMethod,
    RealServer,
    Service,
)
from ldirectord.config.parser import Directive
from ldirectord.config.servers import RawFallback, parse_fallback
from ldirectord.config.values import (
    Problems,
    digits_value,
    first_digits,
    parse_alert_status,
    perl_true,
    quoted,
    read_emailalert,
    read_extension,
    unknown_hint,
    value_hint,
)

_CHECKTYPES = ("connect", "negotiate", "ping", "off", "on", "external", "external-perl")
_SERVICES = frozenset(s.value for s in Service)
_SERVICE_MESSAGE = (
    "service must be dns, ftp, http, https, http_proxy, imap, imaps, ldap, ldaps, mysql, nntp, "
    "none, oracle, pop, pops, radius, pgsql, simpletcp, sip, smtp or submission"
)
_CHECKTYPE_MESSAGE = (
    'checktype must be "connect", "negotiate", "on", "off", "ping", "external", '
    '"external-perl" or a positive number'
)


@dataclass(slots=True)
class VirtualDraft:
    family: Family
    location: Location
    address_as_written: str
    host_text: str | None = None  # None for fwmark services
    port_text: str = "0"
    fwmark: int | None = None
    protocol: str = "tcp"
    valid: bool = True
    address_hint: str | None = None
    address: str | None = None
    port: int = 0
    scheduler: str = "wrr"
    persistent: int | None = None
    netmask: str | None = None
    schedflags: str | None = None
    ops: bool = False
    checktype: CheckType = CheckType.NEGOTIATE
    combined_n: int | None = None
    service: Service | None = None
    checkport: int | None = None
    request: str = "/"
    receive: str = ""
    virtualhost: str | None = None
    httpmethod: HttpMethod = HttpMethod.GET
    login: str = ""
    passwd: str = ""
    database: str = ""
    secret: str = ""
    checkcommand: str = "/bin/true"
    checktimeout: int | None = None
    negotiatetimeout: int | None = None
    checkcount: int | None = None
    failurecount: int | None = None
    checkinterval: int | None = None
    checkinterval_loc: Location | None = None
    reals_todo: list[tuple[str, Location]] = field(default_factory=list)
    reals: list[RealServer] = field(default_factory=list)
    raw_fallback: RawFallback | None = None
    fallback: Fallback | None = None
    fallbackcommand: str | None = None
    quiescent: bool | None = None
    cleanstop: bool | None = None
    emailalert: str | None = None
    emailalertfreq: int | None = None
    emailalertstatus: frozenset[DaemonStatus] | None = None
    smtp: str | None = None
    monitorfile: str | None = None
    servicename: str | None = None
    comment: str | None = None
    #: Our extensions (None = the global value); fastinterval_loc for the warning.
    rise: int | None = None
    fastinterval: int | None = None
    fastinterval_loc: Location | None = None


Handler = Callable[[VirtualDraft, Directive, Problems, Environment], None]


def _number(message: str, nonzero: bool = True) -> Callable[[Directive, Problems], int | None]:
    def read(d: Directive, problems: Problems) -> int | None:
        digits = first_digits(d.value)
        if digits is None or (nonzero and not perl_true(digits)):
            problems.error(d.value_loc, message, value_hint(d.value, in_block=d.in_block))
            return None
        if nonzero and digits_value(digits) == 0:
            problems.warn(
                d.value_loc, f"{d.name}={d.value.strip()} means 0 (accepted as ldirectord does)"
            )
        return digits_value(digits)

    return read


def _yes_no(d: Directive, problems: Problems) -> bool | None:
    if d.value in ("yes", "no"):
        return d.value == "yes"
    problems.error(
        d.value_loc, f"{d.name} must be 'yes' or 'no'", value_hint(d.value, in_block=d.in_block)
    )
    return None


def _quoted(message: str, attr: str) -> Handler:
    def handle(v: VirtualDraft, d: Directive, problems: Problems, env: Environment) -> None:
        inner = quoted(d.value)
        if inner is None:
            unknown(d, problems)
            return
        if not inner:
            problems.error(d.value_loc, message)
            return
        if attr == "request" and not inner.startswith("/"):
            inner = "/" + inner
        setattr(v, attr, inner)

    return handle


def unknown(d: Directive, problems: Problems) -> None:
    problems.error(
        d.loc,
        f'Unknown command "{d.text.strip()}"',
        unknown_hint(d.name, d.text, in_block=d.in_block),
    )


def _real(v: VirtualDraft, d: Directive, problems: Problems, env: Environment) -> None:
    is6 = d.name == "real6"
    if is6 != (v.family is Family.INET6):
        want = "real6" if v.family is Family.INET6 else "real"
        problems.error(d.loc, f'cannot specify "{d.name}" here.  please use "{want}" instead')
        return
    v.reals_todo.append((d.value, d.value_loc))


def _checktype(v: VirtualDraft, d: Directive, problems: Problems, env: Environment) -> None:
    digits = first_digits(d.value)
    if digits is not None:
        v.checktype, v.combined_n = CheckType.COMBINED, digits_value(digits)
        return
    word = re.search(r"([\w-]+)", d.value, re.ASCII)
    if word and word.group(1) in _CHECKTYPES:
        v.checktype, v.combined_n = CheckType(word.group(1)), None
        return
    problems.error(d.value_loc, _CHECKTYPE_MESSAGE, value_hint(d.value, in_block=True))


def _command(attr: str, message: str) -> Handler:
    def handle(v: VirtualDraft, d: Directive, problems: Problems, env: Environment) -> None:
        inner = quoted(d.value)
        text = d.value if inner is None else inner
        if not text:
            problems.error(d.value_loc, message)
            return
        setattr(v, attr, text)

    return handle


def _int_attr(attr: str, message: str, *, deprecated: bool = False) -> Handler:
    read = _number(message)

    def handle(v: VirtualDraft, d: Directive, problems: Problems, env: Environment) -> None:
        number = read(d, problems)
        if deprecated:
            problems.warn(
                d.loc,
                "checkcount option is deprecated and slated for removal.  please see 'failurecount'",
            )
        if number is not None:
            setattr(v, attr, number)
            if attr == "checkinterval":
                v.checkinterval_loc = d.loc

    return handle


def _checkport(v: VirtualDraft, d: Directive, problems: Problems, env: Environment) -> None:
    digits = first_digits(d.value)
    if digits is None:
        problems.error(d.value_loc, "invalid port", value_hint(d.value, in_block=True))
    elif not 0 < digits_value(digits) < 65536:
        problems.error(d.value_loc, "checkport must be in range 1..65535")
    else:
        v.checkport = digits_value(digits)


def _load(v: VirtualDraft, d: Directive, problems: Problems, env: Environment) -> None:
    inner = quoted(d.value)
    if inner is None:
        unknown(d, problems)
    elif not re.search(r"\w+", inner, re.ASCII):
        problems.error(d.value_loc, "invalid string for load testing")


def _first(pattern: str, attr: str, message: str, hint: str | None = None) -> Handler:
    regex = re.compile(pattern, re.ASCII)

    def handle(v: VirtualDraft, d: Directive, problems: Problems, env: Environment) -> None:
        match = regex.search(d.value)
        if match is None:
            problems.error(d.value_loc, message, hint or value_hint(d.value, in_block=True))
            return
        text = match.group(1)
        setattr(v, attr, digits_value(text) if attr == "persistent" else text)

    return handle


def _netmask(v: VirtualDraft, d: Directive, problems: Problems, env: Environment) -> None:
    value = d.value
    if v.family is Family.INET6:
        if not re.fullmatch(r"\d+", value, re.ASCII) or not 1 <= digits_value(value) <= 128:
            problems.error(
                d.value_loc,
                "invalid netmask: a prefix length between 1 and 128 is required",
                value_hint(value, in_block=True),
            )
            return
    elif not re.fullmatch(r"\d+\.\d+\.\d+\.\d+", value, re.ASCII):
        problems.error(
            d.value_loc,
            "invalid netmask: dotted quad notation is required",
            value_hint(value, in_block=True) or "e.g. netmask=255.255.255.0",
        )
        return
    v.netmask = value


def _protocol(v: VirtualDraft, d: Directive, problems: Problems, env: Environment) -> None:
    word = re.search(r"(\w+)", d.value, re.ASCII)
    if word is None:
        problems.error(d.value_loc, "invalid protocol")
    elif v.protocol == "fwm":
        if word.group(1) != "fwm":
            problems.error(
                d.value_loc, "protocol must be fwm if the virtual service is a fwmark (a number)"
            )
    elif word.group(1) in ("tcp", "udp"):
        v.protocol = word.group(1)
    else:
        problems.error(
            d.value_loc, "protocol must be tcp or udp if the virtual service is an address and port"
        )


def _ops(v: VirtualDraft, d: Directive, problems: Problems, env: Environment) -> None:
    flag = _yes_no(d, problems)
    if flag is not None:
        v.ops = flag


def _service(v: VirtualDraft, d: Directive, problems: Problems, env: Environment) -> None:
    word = re.search(r"(\w+)", d.value, re.ASCII)
    if word is None or word.group(1) not in _SERVICES:
        problems.error(d.value_loc, _SERVICE_MESSAGE, value_hint(d.value, in_block=True))
        return
    v.service = Service(word.group(1))
    if v.service is Service.FTP and v.login == "":
        v.login = "anonymous"
    elif v.service is Service.SIP and v.login == "":
        v.login = f"ldirectord@{env.hostname}"
    if v.service is Service.FTP and v.passwd == "":
        v.passwd = f"ldirectord@{env.hostname}"


def _httpmethod(v: VirtualDraft, d: Directive, problems: Problems, env: Environment) -> None:
    word = re.search(r"(\w+)", d.value, re.ASCII)
    if word is None or word.group(1).upper() not in ("GET", "HEAD"):
        problems.error(
            d.value_loc, "httpmethod must be GET or HEAD", value_hint(d.value, in_block=True)
        )
        return
    v.httpmethod = HttpMethod(word.group(1).upper())


def _virtualhost(v: VirtualDraft, d: Directive, problems: Problems, env: Environment) -> None:
    match = re.match(r'"?([^"]*)"?', d.value)
    v.virtualhost = match.group(1) if match else d.value


def _fallback(v: VirtualDraft, d: Directive, problems: Problems, env: Environment) -> None:
    is6 = d.name == "fallback6"
    if is6 != (v.family is Family.INET6):
        want = "fallback6" if v.family is Family.INET6 else "fallback"
        problems.error(d.loc, f'cannot specify "{d.name}" here.  please use "{want}" instead')
        return
    v.raw_fallback = parse_fallback(d.value, d.value_loc, v.port_text, problems, in_block=True)


def _flag(attr: str) -> Handler:
    def handle(v: VirtualDraft, d: Directive, problems: Problems, env: Environment) -> None:
        flag = _yes_no(d, problems)
        if flag is not None:
            setattr(v, attr, flag)

    return handle


def _emailalert(v: VirtualDraft, d: Directive, problems: Problems, env: Environment) -> None:
    address = read_emailalert(d.value)
    if not address:
        problems.error(d.value_loc, "no email address specified")
        return
    v.emailalert = address


def _emailalertfreq(v: VirtualDraft, d: Directive, problems: Problems, env: Environment) -> None:
    digits = re.match(r"\d*", d.value, re.ASCII)
    if digits is None or not digits.group(0):
        problems.error(
            d.value_loc, "invalid email alert frequency", value_hint(d.value, in_block=True)
        )
        return
    v.emailalertfreq = digits_value(digits.group(0))


def _emailalertstatus(v: VirtualDraft, d: Directive, problems: Problems, env: Environment) -> None:
    statuses, errors = parse_alert_status(d.value)
    for message in errors:
        problems.error(d.value_loc, message, value_hint(d.value, in_block=True))
    if not errors:
        v.emailalertstatus = statuses


def _monitorfile(v: VirtualDraft, d: Directive, problems: Problems, env: Environment) -> None:
    inner = quoted(d.value)
    path = d.value if inner is None else inner
    why = env.unwritable(path)
    if why is not None:
        problems.error(d.value_loc, f"unable to open monitorfile {path}: {why}")
        return
    v.monitorfile = path


def _text(attr: str) -> Handler:
    def handle(v: VirtualDraft, d: Directive, problems: Problems, env: Environment) -> None:
        setattr(v, attr, d.value)

    return handle


def _extension(v: VirtualDraft, d: Directive, problems: Problems, env: Environment) -> None:
    assert d.name is not None
    number = read_extension(d.name, d.value, d.value_loc, problems, in_block=True)
    if number is None:
        return
    if d.name == "rise":
        v.rise = number
    else:
        v.fastinterval, v.fastinterval_loc = number, d.value_loc


def _deprecated_connecttimeout(
    v: VirtualDraft, d: Directive, problems: Problems, env: Environment
) -> None:
    problems.error(d.loc, "connecttimeout directive deprecated in favour of negotiatetimeout")


HANDLERS: dict[str, Handler] = {
    "real": _real,
    "real6": _real,
    "request": _quoted("no request string specified", "request"),
    "receive": _quoted("invalid receive string", "receive"),
    "checktype": _checktype,
    "checkcommand": _command("checkcommand", "invalid check command"),
    "checktimeout": _int_attr("checktimeout", "invalid check timeout"),
    "connecttimeout": _deprecated_connecttimeout,
    "negotiatetimeout": _int_attr("negotiatetimeout", "invalid negotiate timeout"),
    "checkcount": _int_attr("checkcount", "invalid check count", deprecated=True),
    "failurecount": _int_attr("failurecount", "invalid failure count"),
    "checkinterval": _int_attr("checkinterval", "invalid checkinterval"),
    "checkport": _checkport,
    "login": _quoted("invalid login string", "login"),
    "passwd": _quoted("invalid password", "passwd"),
    "database": _quoted("invalid database", "database"),
    "secret": _quoted("invalid secret", "secret"),
    "load": _load,
    "scheduler": _first(
        r"([a-z]+)", "scheduler", "invalid scheduler, should be only lowercase letters (a-z)"
    ),
    "persistent": _first(r"(\d+)", "persistent", "invalid persistent timeout"),
    "schedflags": _first(r"(\S+)", "schedflags", "invalid sched-flags"),
    "netmask": _netmask,
    "protocol": _protocol,
    "ops": _ops,
    "service": _service,
    "httpmethod": _httpmethod,
    "virtualhost": _virtualhost,
    "fallback": _fallback,
    "fallback6": _fallback,
    "fallbackcommand": _command("fallbackcommand", "invalid fallback command"),
    "quiescent": _flag("quiescent"),
    "cleanstop": _flag("cleanstop"),
    "emailalert": _emailalert,
    "emailalertfreq": _emailalertfreq,
    "emailalertstatus": _emailalertstatus,
    "monitorfile": _monitorfile,
    "smtp": _first(r"^([0-9A-Za-z._+-]+)", "smtp", "invalid SMTP server address"),
    "servicename": _text("servicename"),
    "comment": _text("comment"),
    # our extensions (values.EXTENSIONS), not ldirectord's
    "rise": _extension,
    "fastinterval": _extension,
}
