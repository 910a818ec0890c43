"""One ``virtual=``/``virtual6=`` block → a draft virtual service, as ldirectord reads it.

Owns the virtual header forms (ipv4:port, host:port, fwmark N, [v6]:port), the per-block
defaults set at block start, the dispatch of the block's lines to directives.py, and the
resolution that ldirectord delays to the end of the block (fallback, then the address, then
the reals). Effective values that depend on globals are finished by validate.py.
"""

from __future__ import annotations

import re
import socket

from ldirectord.config.directives import HANDLERS, VirtualDraft, unknown
from ldirectord.config.environment import Environment
from ldirectord.config.model import PORT_SERVICES, Family, Service
from ldirectord.config.parser import RawVirtual
from ldirectord.config.servers import lookup_name, parse_real, resolve_fallback
from ldirectord.config.values import Problems, digits_value, value_hint

_V4_PORT = re.compile(r"^(\d+\.\d+\.\d+\.\d+):([0-9A-Za-z_-]+)", re.ASCII)
_HOST_PORT = re.compile(r"^([0-9A-Za-z._+-]+):([0-9A-Za-z_-]+)", re.ASCII)
_FWMARK = re.compile(r"^(\d+)", re.ASCII)
_V6_PORT = re.compile(r"^\[([0-9A-Fa-f:]+)\]:([0-9A-Za-z_-]+)", re.ASCII)


def _header(raw: RawVirtual, problems: Problems) -> VirtualDraft:
    family = Family.INET6 if raw.family6 else Family.INET
    value = raw.value
    draft = VirtualDraft(family, raw.loc, value.strip())
    v4 = _V4_PORT.match(value)
    hostport = _HOST_PORT.match(value)
    v6 = _V6_PORT.match(value)
    if v4 and family is Family.INET:
        draft.host_text, draft.port_text = v4.group(1), v4.group(2)
    elif hostport:
        draft.host_text, draft.port_text = hostport.group(1), hostport.group(2)
        if value.count(":") > 1:
            draft.address_hint = "IPv6 addresses go in brackets: virtual6=[2001:db8::1]:80"
    elif fwmark := _FWMARK.match(value):
        draft.fwmark, draft.protocol, draft.service = (
            digits_value(fwmark.group(1)),
            "fwm",
            Service.NONE,
        )
        draft.address_as_written = fwmark.group(1)
        if draft.fwmark == 0:
            problems.warn(raw.value_loc, "firewall mark 0 cannot be programmed into IPVS")
        if re.match(r"\d+[.:]", value, re.ASCII):
            problems.warn(
                raw.value_loc,
                f"virtual={value.strip()} is read as firewall mark {draft.fwmark} (as ldirectord does)",
                "a virtual address needs a port: virtual=IP:PORT",
            )
    elif v6 and family is Family.INET:
        problems.error(
            raw.value_loc,
            'cannot specify an IPv6 address here. please use "virtual6" instead.',
        )
        draft.valid = False
    elif v6:
        try:
            socket.inet_pton(socket.AF_INET6, v6.group(1))
        except OSError:
            problems.error(raw.value_loc, "invalid ipv6 address for virtual server")
            draft.valid = False
        draft.host_text, draft.port_text = f"[{v6.group(1)}]", v6.group(2)
    else:
        hint = None
        if family is Family.INET6 and ":" in value:
            hint = "IPv6 addresses go in brackets: virtual6=[2001:db8::1]:80"
        elif value != value.strip() or not value:
            hint = (
                value_hint(value, in_block=False)
                or "expected ip:port, host:port or a firewall mark"
            )
        problems.error(raw.value_loc, "invalid address for virtual server", hint)
        draft.valid = False
    if draft.host_text is not None:
        draft.address_as_written = f"{draft.host_text}:{draft.port_text}"
        if draft.port_text in ("53", "domain"):
            draft.protocol = "udp"
    return draft


def _resolve(draft: VirtualDraft, problems: Problems, env: Environment) -> None:
    """What ldirectord does after the block: fallback, then the address, then the reals."""
    if draft.raw_fallback is not None:
        draft.fallback = resolve_fallback(
            draft.raw_fallback, draft.protocol, draft.family, env, problems
        )
    if draft.host_text is not None and draft.valid:
        _resolve_address(draft, problems, env)
    for value, loc in draft.reals_todo:
        draft.reals.extend(parse_real(value, loc, draft.family, env, problems))


def _resolve_address(draft: VirtualDraft, problems: Problems, env: Environment) -> None:
    assert draft.host_text is not None
    name = lookup_name(draft.host_text)
    address = env.host(name, draft.family)
    port = env.port(draft.port_text, draft.protocol)
    if address is None:
        why = env.host_failure(name, draft.family)
        problems.error(
            draft.location,
            f"invalid address for virtual service (host {name}: {why})",
            draft.address_hint,
        )
        draft.valid = False
    if port is None:
        problems.error(
            draft.location,
            f"invalid address for virtual service (port {draft.port_text} unknown for {draft.protocol})",
            "use the port number" if draft.protocol == "udp" else None,
        )
        draft.valid = False
    if address is None or port is None:
        return
    draft.address, draft.port = address, port
    if draft.service is None:
        draft.service = PORT_SERVICES.get(port, Service.NONE)


def read_virtual(raw: RawVirtual, problems: Problems, env: Environment) -> VirtualDraft:
    draft = _header(raw, problems)
    for directive in raw.directives:
        handler = HANDLERS.get(directive.name) if directive.name else None
        if handler is None:
            unknown(directive, problems)
            continue
        handler(draft, directive, problems, env)
    _resolve(draft, problems, env)
    return draft
