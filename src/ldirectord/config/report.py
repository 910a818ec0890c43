"""``ldirectord [configfile] configtest`` (``-t``) and its ``--json`` form.

Owns how a config check is shown: a one-paragraph summary (exit 0) or every error as
``file:line:col: message`` on stderr (exit 2, ldirectord's config-error code), and the
effective model as JSON. Knows nothing about how the config is read beyond ``load``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from typing import Any

from ldirectord.cli import CliOptions
from ldirectord.config import load
from ldirectord.config.model import (
    CheckType,
    Config,
    DaemonStatus,
    Fallback,
    Family,
    GlobalConfig,
    RealServer,
    VirtualService,
)
from ldirectord.errors import ConfigError, ConfigProblem

EXIT_CONFIG_ERROR = 2
_STATUS_ORDER = tuple(DaemonStatus)


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _statuses(statuses: frozenset[DaemonStatus]) -> list[str]:
    return [s.value for s in _STATUS_ORDER if s in statuses]


def fallback_json(fallback: Fallback | None) -> dict[str, Any] | None:
    if fallback is None:
        return None
    return {
        "address": fallback.address,
        "port": fallback.port or None,
        "method": fallback.method.value,
    }


def globals_json(g: GlobalConfig) -> dict[str, Any]:
    """Every effective global value (timeouts after ldirectord's mutual fallback)."""
    ct = g.checktimeout or g.negotiatetimeout or 5
    nt = g.negotiatetimeout or g.checktimeout or 30
    return {
        "autoreload": _yes_no(g.autoreload),
        "callback": g.callback,
        "checkcount": g.checkcount,
        "checkinterval": _number(g.checkinterval),
        "checktimeout": _number(ct),
        "negotiatetimeout": _number(nt),
        "cleanstop": _yes_no(g.cleanstop),
        "emailalert": g.emailalert,
        "emailalertfreq": g.emailalertfreq,
        "emailalertfrom": g.emailalertfrom,
        "emailalertstatus": _statuses(g.emailalertstatus),
        "execute": list(g.execute),
        "failurecount": g.failurecount,
        "fallback": fallback_json(g.fallback),
        "fallback6": fallback_json(g.fallback6),
        "fallbackcommand": g.fallbackcommand,
        "fork": _yes_no(g.fork),
        "logfile": g.logfile,
        "maintenancedir": g.maintenancedir,
        "quiescent": _yes_no(g.quiescent),
        "readdquiescent": _yes_no(g.readdquiescent),
        "smtp": g.smtp,
        "supervised": _yes_no(g.supervised),
        "rise": g.rise,
        "fastinterval": None if g.fastinterval is None else _number(g.fastinterval),
    }


def real_json(real: RealServer) -> dict[str, Any]:
    return {
        "address": real.address,
        "port": real.port,
        "method": real.method.value,
        "weight": real.weight,
        "request": real.request,
        "receive": real.receive,
        "lower": real.lower,
        "upper": real.upper,
        "location": str(real.location),
    }


def virtual_json(v: VirtualService) -> dict[str, Any]:
    check = v.check
    address = None
    if v.address is not None:
        host = f"[{v.address}]" if v.family is Family.INET6 else v.address
        address = f"{host}:{v.port}"
    return {
        "address": address,
        "fwmark": v.fwmark,
        "family": v.family.value,
        "protocol": v.protocol.value,
        "scheduler": v.scheduler,
        "checktype": check.checktype.value,
        "service": check.service.value,
        "checkport": check.checkport,
        "request": check.request,
        "receive": check.receive,
        "virtualhost": check.virtualhost,
        "persistent": v.persistent,
        "netmask": v.netmask,
        "fallback": fallback_json(v.fallback),
        "reals": [real_json(r) for r in v.reals],
        "address_as_written": v.address_as_written,
        "port": v.port,
        "combined_n": check.combined_n,
        "schedflags": v.schedflags,
        "ops": _yes_no(v.ops),
        "httpmethod": check.httpmethod.value,
        "login": check.login,
        "passwd": check.passwd,
        "database": check.database,
        "secret": check.secret,
        "checkcommand": check.checkcommand,
        "checktimeout": _number(check.checktimeout),
        "negotiatetimeout": _number(check.negotiatetimeout),
        "checkcount": check.checkcount,
        "failurecount": check.failurecount,
        "checkinterval": _number(check.checkinterval),
        "rise": check.rise,
        "fastinterval": None if check.fastinterval is None else _number(check.fastinterval),
        "fallbackcommand": v.fallbackcommand,
        "quiescent": _yes_no(v.quiescent),
        "cleanstop": _yes_no(v.cleanstop),
        "emailalert": v.emailalert,
        "emailalertfreq": v.emailalertfreq,
        "emailalertstatus": _statuses(v.emailalertstatus),
        "smtp": v.smtp,
        "monitorfile": v.monitorfile,
        "servicename": v.servicename,
        "comment": v.comment,
        "location": str(v.location),
    }


def config_json(config: Config) -> dict[str, Any]:
    return {
        "globals": globals_json(config.globals),
        "virtuals": [virtual_json(v) for v in config.virtuals],
        "warnings": list(config.warnings),
        "extensions": list(config.extensions),
    }


def errors_json(problems: tuple[ConfigProblem, ...]) -> dict[str, Any]:
    return {
        "errors": [
            {
                "file": p.location.file,
                "line": p.location.line,
                "col": p.location.col,
                "message": p.message,
                "hint": p.hint,
            }
            for p in problems
        ]
    }


def summary(config: Config) -> str:
    """The one-paragraph summary printed for a valid config."""
    virtuals = config.virtuals
    reals = sum(len(v.reals) for v in virtuals)
    fwmarks = sum(1 for v in virtuals if v.fwmark is not None)
    v6 = sum(1 for v in virtuals if v.family is Family.INET6)
    parts = [f"{fwmarks} firewall-mark"] if fwmarks else []
    parts += [f"{v6} IPv6"] if v6 else []
    kinds = f" ({', '.join(parts)})" if parts else ""
    warnings = len(config.warnings)
    extensions = ""
    if config.extensions:
        extensions = (
            f" Uses our extension{'' if len(config.extensions) == 1 else 's'} "
            f"{', '.join(config.extensions)}: Perl ldirectord would reject this file."
        )
    return (
        f"{config.path}: configuration OK: {len(virtuals)} virtual service"
        f"{'' if len(virtuals) == 1 else 's'}{kinds} with {reals} real server"
        f"{'' if reals == 1 else 's'}; checkinterval {_number(config.globals.checkinterval)} s, "
        f"quiescent={_yes_no(config.globals.quiescent)}, fork={_yes_no(config.globals.fork)}; "
        f"{warnings} warning{'' if warnings == 1 else 's'}.{extensions}\n"
    )


def environment_warnings(config: Config) -> list[str]:
    """Problems of this machine rather than of the file, e.g. a check's missing driver."""
    from ldirectord.checks.sql import driver_problem  # lazy: only configtest pays for it

    out = []
    for v in config.virtuals:
        if v.check.checktype not in (CheckType.NEGOTIATE, CheckType.COMBINED):
            continue
        problem = driver_problem(v.check.service)
        if problem:
            out.append(f"{v.location}: {problem}")
    return out


def _write(stream: Any, text: str) -> None:
    stream.write(text.encode("utf-8", "backslashreplace").decode("utf-8"))


def configtest(opts: CliOptions) -> int:
    """Check opts.config.path; exit 0 when valid, 2 with every error otherwise."""
    try:
        config = load(opts.config.path)
    except ConfigError as exc:
        if opts.json:
            _write(sys.stdout, json.dumps(errors_json(exc.problems), indent=1) + "\n")
        else:
            for problem in exc.problems:
                _write(sys.stderr, problem.render() + "\n")
            _write(sys.stderr, f"{len(exc.problems)} error(s): configuration not valid\n")
        return EXIT_CONFIG_ERROR
    extra = environment_warnings(config)
    if extra:
        config = replace(config, warnings=(*config.warnings, *extra))
    if opts.json:
        _write(sys.stdout, json.dumps(config_json(config), indent=1) + "\n")
        return 0
    for warning in config.warnings:
        _write(sys.stderr, f"warning: {warning}\n")
    _write(sys.stdout, summary(config))
    return 0
