"""The check registry: which function checks a CheckTarget, and ``run`` (never raises).

Owns the dispatch of ldirectord's ``_check_real`` (reference §2.1) once the engine has decided
the kind (combined mode and maintenance are the engine's): negotiate → by service, connect →
TCP connect (a ping for UDP virtuals, as ldirectord does), ping, external, external-perl, on,
off. Check modules are imported lazily, on first use, so ``status``/``configtest`` and a daemon
without SQL checks never import the drivers.

Adding a service (checks part 2): add one line to ``SERVICE_CHECKS`` mapping the Service to
``"module:function"`` (the module under ``ldirectord.checks``); the function is an
``async (CheckTarget) -> Outcome`` that may raise (``guarded`` maps exceptions to Reasons and
enforces the deadline). Nothing else needs changing.
"""

from __future__ import annotations

import functools
import importlib

from ldirectord.checks.base import Check, CheckTarget, Outcome, Reason, guarded
from ldirectord.config.model import CheckType, Protocol, Service

__all__ = ["SERVICE_CHECKS", "check_for", "run"]

#: Negotiate checks by service: Service → "module:function" under ldirectord.checks.
SERVICE_CHECKS: dict[Service, str] = {
    Service.HTTP: "http:check_http",
    Service.HTTPS: "http:check_http",
    Service.HTTP_PROXY: "http:check_http",
    Service.SIMPLETCP: "simpletcp:check_simpletcp",
    Service.NONE: "static:check_none",
    # --- checks part 2 adds its services below this line ---
    Service.SMTP: "mail:check_smtp",
    Service.SUBMISSION: "mail:check_smtp",
    Service.POP: "mail:check_pop",
    Service.POPS: "mail:check_pop",
    Service.IMAP: "mail:check_imap",
    Service.IMAPS: "mail:check_imap",
    Service.FTP: "ftp:check_ftp",
    Service.NNTP: "nntp:check_nntp",
    Service.LDAP: "ldap:check_ldap",
    Service.LDAPS: "ldap:check_ldap",
    Service.DNS: "dns:check_dns",
    Service.RADIUS: "radius:check_radius",
    Service.SIP: "sip:check_sip",
    Service.MYSQL: "sql:check_mysql",
    Service.PGSQL: "sql:check_pgsql",
    Service.ORACLE: "sql:check_oracle",
}

#: Every kind other than negotiate: CheckType → "module:function".
KIND_CHECKS: dict[CheckType, str] = {
    CheckType.CONNECT: "connect:check_connect",
    CheckType.PING: "ping:check_ping",
    CheckType.EXTERNAL: "external:check_external",
    CheckType.EXTERNAL_PERL: "external:check_external_perl",
    CheckType.ON: "static:check_on",
    CheckType.OFF: "static:check_off",
}


@functools.cache
def _load(spec: str) -> Check:
    module_name, _, function = spec.partition(":")
    module = importlib.import_module(f"ldirectord.checks.{module_name}")
    check: Check = getattr(module, function)
    return check


async def _not_implemented(target: CheckTarget) -> Outcome:
    return Outcome.down(Reason.CONFIG, f"no check implemented for service {target.service}")


def check_for(target: CheckTarget) -> Check:
    """The function that checks ``target`` (ldirectord's dispatch; an import may raise)."""
    kind = target.kind
    if kind is CheckType.COMBINED:  # target_for() never builds these; be safe anyway
        kind = CheckType.NEGOTIATE
    if kind is CheckType.NEGOTIATE:
        spec = SERVICE_CHECKS.get(target.service)
        return _load(spec) if spec is not None else _not_implemented
    if kind is CheckType.CONNECT and target.protocol is Protocol.UDP:
        return _load(KIND_CHECKS[CheckType.PING])
    return _load(KIND_CHECKS[kind])


async def run(target: CheckTarget) -> Outcome:
    """Check ``target`` once: an Outcome within ``target.deadline`` (+ scheduling), never raises.

    Cancellation from outside still propagates (daemon stop).
    """
    try:
        check = check_for(target)
    except Exception as exc:  # a broken import (missing driver) must not stop the daemon
        return Outcome.down(Reason.CONFIG, f"cannot load the {target.service} check: {exc}"[:200])
    return await guarded(check, target)
