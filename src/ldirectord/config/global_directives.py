"""Global (column-0) directives → GlobalConfig, as ldirectord's read_config reads them.

Owns each global directive's value rule (first digit run with Perl truthiness, yes/no
exactly, quotes required for callback/logfile, the bare ``supervised``, the global fallback
resolved for tcp and udp), the logfile check, and the hints for lines that are not global
directives at all (indented lines, per-virtual names in column 0).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ldirectord.config.environment import Environment
from ldirectord.config.lexer import BlockEnd
from ldirectord.config.location import Location
from ldirectord.config.model import ALL_ALERT_STATUSES, Fallback, Family, GlobalConfig
from ldirectord.config.parser import Directive, RawConfig
from ldirectord.config.servers import parse_fallback, resolve_fallback
from ldirectord.config.values import (
    EXTENSIONS,
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
    #: Where each extension (rise=, fastinterval=) was last written, for warnings.
    extension_locs: dict[str, Location] = field(default_factory=dict)


def _error(problems: Problems, d: Directive, message: str) -> None:
    problems.error(d.value_loc, message, value_hint(d.value, in_block=False))


def _positive(d: Directive, problems: Problems, message: str, *, strict: bool) -> int | None:
    """First digit run that is Perl-true (and > 0 when ``strict``)."""
    digits = first_digits(d.value)
    if digits is None or not perl_true(digits) or (strict and digits_value(digits) <= 0):
        _error(problems, d, message)
        return None
    if digits_value(digits) == 0:
        problems.warn(
            d.value_loc, f"{d.name}={d.value.strip()} means 0 (accepted as ldirectord does)"
        )
    return digits_value(digits)


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
    elif name in EXTENSIONS:
        number = read_extension(name, value, d.value_loc, problems, in_block=False)
        if number is not None:
            g.values[name] = number
            g.extension_locs[name] = d.value_loc
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
            g.values["emailalertfreq"] = digits_value(digits.group(0))
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
    | EXTENSIONS
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
        rise=_get(v, "rise", int, 1),
        fastinterval=_optional_float(v.get("fastinterval")),
    )


def _optional_float(value: object) -> float | None:
    return float(value) if isinstance(value, int) else None


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
