"""Raw tree → the frozen model: global directives, effective values, every problem collected.

Owns the global directives' value rules, the effective per-virtual values that ldirectord
computes from virtual and global settings (the mutual checktimeout/negotiatetimeout
fallback of ld_setup, checkinterval honoured per virtual only with fork=yes, alert settings,
the global fallback inherited by a virtual), duplicate virtual detection and the warnings.
Pure: the machine is reached only through the Environment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ldirectord.config.environment import Environment
from ldirectord.config.lexer import BlockEnd
from ldirectord.config.location import Location
from ldirectord.config.model import (
    ALL_ALERT_STATUSES,
    CheckSpec,
    Config,
    DaemonStatus,
    Fallback,
    Family,
    GlobalConfig,
    Protocol,
    Service,
    VirtualService,
)
from ldirectord.config.parser import Directive, RawConfig
from ldirectord.config.servers import parse_fallback, resolve_fallback
from ldirectord.config.values import (
    Problems,
    first_digits,
    parse_alert_status,
    perl_true,
    quoted,
    read_emailalert,
    unknown_hint,
    value_hint,
)
from ldirectord.config.virtual import VirtualDraft, read_virtual

DEFAULT_CHECKTIMEOUT = 5
DEFAULT_NEGOTIATETIMEOUT = 30
SYSLOG_FACILITIES = frozenset(
    [
        "auth",
        "authpriv",
        "cron",
        "daemon",
        "ftp",
        "kern",
        "lpr",
        "mail",
        "news",
        "syslog",
        "user",
        "uucp",
    ]
    + [f"local{i}" for i in range(8)]
)


@dataclass(slots=True)
class GlobalDraft:
    values: dict[str, object] = field(default_factory=dict)
    fallback: dict[Family, tuple[Fallback, Fallback]] = field(default_factory=dict)
    execute: list[str] = field(default_factory=list)
    logfile: tuple[str, Location] | None = None


def _error(problems: Problems, d: Directive, message: str) -> None:
    problems.error(d.value_loc, message, value_hint(d.value, in_block=False))


def _positive(d: Directive, problems: Problems, message: str, *, strict: bool) -> int | None:
    """First digit run that is Perl-true (and > 0 when ``strict``)."""
    digits = first_digits(d.value)
    if digits is None or not perl_true(digits) or (strict and int(digits) <= 0):
        _error(problems, d, message)
        return None
    if int(digits) == 0:
        problems.warn(
            d.value_loc, f"{d.name}={d.value.strip()} means 0 (accepted as ldirectord does)"
        )
    return int(digits)


_NUMBERS = {
    "checktimeout": ("invalid check timeout value", True),
    "negotiatetimeout": ("invalid negotiate timeout value", True),
    "checkinterval": ("invalid check interval value", False),
    "checkcount": ("invalid check count value", False),
    "failurecount": ("invalid failure count value", False),
}
_FLAGS = ("autoreload", "fork", "quiescent", "readdquiescent", "cleanstop")


def _global(g: GlobalDraft, d: Directive, problems: Problems, env: Environment) -> None:
    name, value = d.name, d.value
    if name in _NUMBERS:
        message, strict = _NUMBERS[name]
        number = _positive(d, problems, message, strict=strict)
        if name == "checkcount":
            problems.warn(
                d.loc,
                "checkcount option is deprecated and slated for removal.  please see 'failurecount'",
            )
        if number is not None:
            g.values[name] = number
    elif name in _FLAGS:
        if value in ("yes", "no"):
            g.values[name] = value == "yes"
        else:
            _error(problems, d, f"{name} must be 'yes' or 'no'")
    elif name in ("fallback", "fallback6"):
        _global_fallback(g, d, problems, env)
    elif name in ("fallbackcommand", "emailalertfrom", "maintenancedir"):
        _global_text(g, d, problems, env)
    elif name in ("callback", "logfile"):
        inner = quoted(value)
        if inner is None:
            _unknown(d, problems)
        elif name == "callback":
            g.values["callback"] = inner
        else:
            g.logfile = (inner, d.value_loc)
    elif name == "execute":
        g.execute.append(value)
    elif name == "supervised":
        _supervised(g, d, problems)
    else:
        _global_alerts(g, d, problems)


def _global_text(g: GlobalDraft, d: Directive, problems: Problems, env: Environment) -> None:
    messages = {
        "fallbackcommand": "invalid fallback command",
        "emailalertfrom": "no email from address specified",
        "maintenancedir": "maintenance directory not specified",
    }
    assert d.name is not None
    if not d.value:
        _error(problems, d, messages[d.name])
        return
    g.values[d.name] = d.value
    if d.name == "maintenancedir" and not env.is_dir(d.value):
        problems.warn(
            d.value_loc, "maintenance directory does not exist", value_hint(d.value, in_block=False)
        )


def _global_alerts(g: GlobalDraft, d: Directive, problems: Problems) -> None:
    name, value = d.name, d.value
    if name == "emailalert":
        address = read_emailalert(value)
        if address:
            g.values["emailalert"] = address
        else:
            _error(problems, d, "no email address specified")
    elif name == "emailalertfreq":
        digits = re.match(r"\d*", value, re.ASCII)
        if digits is None or not digits.group(0):
            _error(problems, d, "invalid email alert frequency")
        else:
            g.values["emailalertfreq"] = int(digits.group(0))
    elif name == "emailalertstatus":
        statuses, errors = parse_alert_status(value)
        for message in errors:
            _error(problems, d, message)
        if not errors:
            g.values["emailalertstatus"] = statuses
    elif name == "smtp":
        match = re.match(r"^([0-9A-Za-z._+-]+)", value, re.ASCII)
        if match is None:
            _error(problems, d, "invalid SMTP server address")
        else:
            g.values["smtp"] = match.group(1)
    elif name == "connecttimeout":
        problems.error(d.loc, "connecttimeout directive deprecated in favour of negotiatetimeout")
    elif name == "timeout":
        problems.error(
            d.loc,
            "timeout directive deprecated in favour of checktimeout and negotiatetimeout",
            "write checktimeout=N (connect checks) and/or negotiatetimeout=N (negotiate checks)",
        )
    else:
        _unknown(d, problems)


def _supervised(g: GlobalDraft, d: Directive, problems: Problems) -> None:
    match = re.match(r"^supervised\s*=\s*(.*)", d.text, re.ASCII)
    if match and match.group(1) in ("yes", "no"):
        g.values["supervised"] = match.group(1) == "yes"
    elif re.match(r"^supervised\s*$", d.text, re.ASCII):
        g.values["supervised"] = True
        problems.warn(d.loc, "please update your config not to use a bare supervised directive")
    else:
        _error(problems, d, "supervised must be 'yes' or 'no'")


def _global_fallback(g: GlobalDraft, d: Directive, problems: Problems, env: Environment) -> None:
    family = Family.INET6 if d.name == "fallback6" else Family.INET
    raw = parse_fallback(d.value, d.value_loc, None, problems, in_block=False)
    if raw is None:
        return
    tcp = resolve_fallback(raw, "tcp", family, env, problems)
    udp = resolve_fallback(raw, "udp", family, env, problems) if tcp else None
    if tcp is not None and udp is not None:
        g.fallback[family] = (tcp, udp)
        g.values["fallback6" if family is Family.INET6 else "fallback"] = tcp


def _unknown(d: Directive, problems: Problems, hint: str | None = None) -> None:
    problems.error(
        d.loc,
        f'Unknown command "{d.text.strip()}"',
        hint or unknown_hint(d.name, d.text, in_block=d.in_block),
    )


_GLOBAL_NAMES = frozenset(
    {*_NUMBERS, *_FLAGS, "fallback", "fallback6", "fallbackcommand", "emailalertfrom"}
    | {"maintenancedir", "callback", "logfile", "execute", "supervised", "emailalert"}
    | {"emailalertfreq", "emailalertstatus", "smtp", "connecttimeout", "timeout"}
)


def _indent_hint(raw: RawConfig, d: Directive) -> str:
    """An indented line at global level: why it is not part of a virtual block."""
    number = d.loc.line
    indent = len(d.text) - len(d.text.lstrip(" "))
    if d.text[:1] == " " and indent < 4:
        hint = "lines inside a virtual block must be indented by at least 4 spaces or a tab"
        if number - 1 in raw.blank_lines and any(v.loc.line < number for v in raw.virtuals):
            hint += f"; the blank line {number - 1} would end the virtual block too"
        return hint
    previous = [v for v in raw.virtuals if v.loc.line < number]
    if previous and previous[-1].ended_by is BlockEnd.BLANK:
        block = previous[-1]
        return (
            f"a blank line ends a virtual block: line {block.end_line} ended the block of "
            f"line {block.loc.line}; remove it or make it a comment"
        )
    return "global directives must start in column 0"


def read_globals(raw: RawConfig, problems: Problems, env: Environment) -> GlobalDraft:
    g = GlobalDraft()
    for d in raw.globals:
        if d.name is None or d.name not in _GLOBAL_NAMES or d.text[:1].isspace():
            _unknown(d, problems, _indent_hint(raw, d) if d.text[:1].isspace() else None)
            continue
        _global(g, d, problems, env)
    return g


def _get(values: dict[str, object], name: str, kind: type[Any], default: Any) -> Any:
    value = values.get(name, default)
    return value if isinstance(value, kind) else default


def build_globals(g: GlobalDraft, problems: Problems, env: Environment) -> GlobalConfig:
    v = g.values
    logfile = "/var/log/ldirectord.log"
    if g.logfile is not None:
        logfile, loc = g.logfile
        if not v.get("supervised"):
            _check_logfile(logfile, loc, problems, env)
    return GlobalConfig(
        autoreload=_get(v, "autoreload", bool, False),
        callback=_get(v, "callback", str, None),
        checkcount=_get(v, "checkcount", int, 1),
        checkinterval=float(_get(v, "checkinterval", int, 10)),
        checktimeout=_get(v, "checktimeout", int, None),
        negotiatetimeout=_get(v, "negotiatetimeout", int, None),
        cleanstop=_get(v, "cleanstop", bool, True),
        emailalert=_get(v, "emailalert", str, ""),
        emailalertfreq=_get(v, "emailalertfreq", int, 0),
        emailalertfrom=_get(v, "emailalertfrom", str, None),
        emailalertstatus=_get(v, "emailalertstatus", frozenset, ALL_ALERT_STATUSES),
        failurecount=_get(v, "failurecount", int, 1),
        fallback=_get(v, "fallback", Fallback, None),
        fallback6=_get(v, "fallback6", Fallback, None),
        fallbackcommand=_get(v, "fallbackcommand", str, None),
        fork=_get(v, "fork", bool, False),
        logfile=logfile,
        maintenancedir=_get(v, "maintenancedir", str, None),
        quiescent=_get(v, "quiescent", bool, False),
        readdquiescent=_get(v, "readdquiescent", bool, False),
        supervised=_get(v, "supervised", bool, False),
        smtp=_get(v, "smtp", str, None),
        execute=tuple(g.execute),
    )


def _check_logfile(path: str, loc: Location, problems: Problems, env: Environment) -> None:
    if path.startswith("/"):
        why = env.unwritable(path)
        if why is not None:
            problems.error(loc, f"unable to open logfile: {path} ({why})")
    elif path not in SYSLOG_FACILITIES:
        problems.error(
            loc,
            f"unable to open logfile: {path} (not a syslog facility)",
            "a logfile is an absolute path or a syslog facility such as local0 or daemon",
        )


def _timeouts(v: VirtualDraft, g: GlobalConfig) -> tuple[int, int]:
    """ld_setup: checktimeout and negotiatetimeout are mutual defaults."""
    chain_ct = (v.checktimeout, v.negotiatetimeout, g.checktimeout, g.negotiatetimeout)
    chain_nt = (v.negotiatetimeout, v.checktimeout, g.negotiatetimeout, g.checktimeout)
    ct = next((int(x) for x in chain_ct if x is not None), DEFAULT_CHECKTIMEOUT)
    nt = next((int(x) for x in chain_nt if x is not None), DEFAULT_NEGOTIATETIMEOUT)
    return ct, nt


def _effective_fallback(v: VirtualDraft, g: GlobalDraft) -> Fallback | None:
    """fallback_find: the virtual's own, else the global one of its family and protocol."""
    if v.fallback is not None:
        return v.fallback
    pair = g.fallback.get(v.family)
    if pair is None:
        return None
    chosen = pair[1] if v.protocol == "udp" else pair[0]
    if chosen.port:
        return chosen
    return Fallback(chosen.address, v.port, chosen.method, chosen.location)


def build_virtual(v: VirtualDraft, g: GlobalConfig, gd: GlobalDraft) -> VirtualService:
    ct, nt = _timeouts(v, g)
    interval = float(v.checkinterval) if g.fork and v.checkinterval else g.checkinterval
    check = CheckSpec(
        checktype=v.checktype,
        combined_n=v.combined_n,
        service=v.service or Service.NONE,
        checkport=v.checkport,
        request=v.request,
        receive=v.receive,
        virtualhost=v.virtualhost,
        httpmethod=v.httpmethod,
        login=v.login,
        passwd=v.passwd,
        database=v.database,
        secret=v.secret,
        checkcommand=v.checkcommand,
        checktimeout=float(ct),
        negotiatetimeout=float(nt),
        checkcount=v.checkcount if v.checkcount is not None else g.checkcount,
        failurecount=v.failurecount if v.failurecount is not None else g.failurecount,
        checkinterval=interval,
    )
    return VirtualService(
        family=v.family,
        protocol=Protocol(v.protocol),
        address=v.address,
        port=v.port,
        fwmark=v.fwmark,
        address_as_written=v.address_as_written,
        scheduler=v.scheduler,
        persistent=v.persistent,
        netmask=v.netmask,
        schedflags=v.schedflags,
        ops=v.ops,
        check=check,
        reals=tuple(v.reals),
        fallback=_effective_fallback(v, gd),
        fallbackcommand=v.fallbackcommand if v.fallbackcommand is not None else g.fallbackcommand,
        quiescent=g.quiescent if v.quiescent is None else v.quiescent,
        cleanstop=g.cleanstop if v.cleanstop is None else v.cleanstop,
        emailalert=g.emailalert if v.emailalert is None else v.emailalert,
        emailalertfreq=g.emailalertfreq if v.emailalertfreq is None else v.emailalertfreq,
        emailalertstatus=_statuses(v.emailalertstatus, g.emailalertstatus),
        smtp=v.smtp if v.smtp is not None else g.smtp,
        monitorfile=v.monitorfile,
        servicename=v.servicename,
        comment=v.comment,
        location=v.location,
    )


def _statuses(
    mine: frozenset[DaemonStatus] | None, theirs: frozenset[DaemonStatus]
) -> frozenset[DaemonStatus]:
    return theirs if mine is None else mine


def validate(raw: RawConfig, env: Environment, path: str) -> tuple[Config | None, Problems]:
    """Raw tree → Config (None when there is any error); every problem is in Problems."""
    problems = Problems()
    drafts = [read_virtual(virtual, problems, env) for virtual in raw.virtuals]
    gd = read_globals(raw, problems, env)
    g = build_globals(gd, problems, env)
    seen: dict[str, Location] = {}
    virtuals: list[VirtualService] = []
    for draft in drafts:
        if not draft.valid:
            continue
        virtual = build_virtual(draft, g, gd)
        if virtual.vid in seen:
            problems.error(
                draft.location,
                "duplicate virtual server",
                f"{virtual.vid} is already defined at line {seen[virtual.vid].line}",
            )
        seen.setdefault(virtual.vid, draft.location)
        if draft.checkinterval is not None and not g.fork and draft.checkinterval_loc:
            problems.warn(
                draft.checkinterval_loc,
                f"checkinterval in virtual service {virtual.vid} ignored when fork=no",
            )
        virtuals.append(virtual)
    problems.errors.sort(key=lambda p: (p.location.line, p.location.col))
    problems.warnings.sort(key=lambda p: (p.location.line, p.location.col))
    if problems.errors:
        return None, problems
    warnings = tuple(p.render() for p in problems.warnings)
    return Config(path, g, tuple(virtuals), warnings), problems
