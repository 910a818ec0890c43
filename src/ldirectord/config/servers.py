"""The ``real=``/``real6=`` and ``fallback=``/``fallback6=`` grammars, as ldirectord reads them.

Owns _ld_read_config_real_resolve/add_real_server/add_real_server_range and parse_fallback/
_ld_read_config_fallback_resolve, unanchored regexes included (``gate -w 1`` is weight 1),
IPv4 ranges ``a->b`` (with ldirectord's string comparison of the bounds) and name/port
resolution through the Environment. Knows nothing about virtual blocks.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from ldirectord.config.environment import Environment
from ldirectord.config.location import Location
from ldirectord.config.model import Fallback, Family, Method, RealServer
from ldirectord.config.values import Problems, digits_value, perl_true, value_hint

_HOST = r"(?:\d+\.\d+\.\d+\.\d+|[A-Za-z0-9.-]+|\[[0-9A-fa-f:]+\])"
_REAL = re.compile(
    rf"({_HOST})(->({_HOST}))?(:(\d+|[A-Za-z0-9_-]+))?\s+(.*)",
    re.ASCII,
)
_METHOD = re.compile(r"(\w+)(.*)", re.ASCII)
_WEIGHT = re.compile(r"\s+(\d+)(.*)", re.ASCII)
_CHECK = re.compile(r'\s+"(.*)"[, ]\s*"(.*)"(.*)', re.ASCII)
_LOWER = re.compile(r"\s+l:(\d+)(.*)", re.ASCII)
_UPPER = re.compile(r"\s+u:(\d+)(.*)", re.ASCII)
_FALLBACK_WORDS = re.compile(r"(\S+)(\s+(\S+))?\s*$", re.ASCII)
_PORT_SUFFIX = re.compile(r"(:(\d+|[A-Za-z0-9_-]+))?$", re.ASCII)
_BRACKETS = re.compile(r"\[(.*)\]", re.ASCII)
METHODS = ("gate", "masq", "ipip")
MAX_RANGE = 65536
_V6_UNBRACKETED = re.compile(r"^[0-9A-Fa-f]*:[0-9A-Fa-f]*:", re.ASCII)


def lookup_name(name: str) -> str:
    """ld_gethostbyname's bracket stripping: the text inside the first ``[...]``."""
    match = _BRACKETS.search(name)
    return match.group(1) if match else name


def _resolve_host(env: Environment, name: str, family: Family) -> tuple[str | None, str]:
    target = lookup_name(name)
    if not target:  # getaddrinfo(NULL, ...) as Perl's Socket6 does for "": the loopback
        return ("::1" if family is Family.INET6 else "127.0.0.1"), ""
    address = env.host(target, family)
    return address, ("" if address else env.host_failure(target, family))


def _range(first: str, last: str) -> list[str] | str:
    """IPv4 range; ldirectord loops ``while ($i le $last)``: a *string* comparison."""
    first_i = int(ipaddress.IPv4Address(first))
    last_i = int(ipaddress.IPv4Address(last))
    if first_i > last_i:
        return f"Invalid Range: {first}-{last}: the first address is greater than the last"
    if last_i - first_i >= MAX_RANGE:
        return f"Invalid Range: {first}-{last}: more than {MAX_RANGE} addresses"
    out: list[str] = []
    last_s = str(last_i)
    i = first_i
    while str(i) <= last_s and i <= last_i:
        out.append(str(ipaddress.IPv4Address(i)))
        i += 1
    return out


@dataclass(frozen=True, slots=True)
class RealFlags:
    method: Method
    weight: int
    request: str | None
    receive: str | None
    lower: int
    upper: int


def _parse_flags(flags: str, loc: Location, problems: Problems) -> RealFlags | None:
    match = _METHOD.search(flags)
    if match is None or match.group(1) not in METHODS:
        problems.error(
            loc, "forward method must be gate, masq or ipip", value_hint(flags, in_block=True)
        )
        return None
    method, rest = Method(match.group(1)), match.group(2)
    weight = 1
    request = receive = None
    lower = upper = 0
    if found := _WEIGHT.search(rest):
        _note_skipped(rest[: found.start()], loc, problems)
        weight, rest = digits_value(found.group(1)), found.group(2)
    if found := _CHECK.search(rest):
        request, receive, rest = found.group(1), found.group(2), found.group(3)
        if request.startswith("/"):
            # In ldirectord, the regex match that tests for the leading "/" resets $2 and $3:
            # the per-real receive string and everything after it are lost.
            problems.warn(
                loc,
                f'real server: receive "{receive}" and anything after it ignored, '
                'as ldirectord ignores them when the per-real request starts with "/"',
                f'write the request without its leading "/" ("{request[1:]}") to have both used',
            )
            return RealFlags(method, weight, request, None, 0, 0)
        request = "/" + request
    if found := _LOWER.search(rest):
        lower, rest = digits_value(found.group(1)), found.group(2)
    if found := _UPPER.search(rest):
        upper, rest = digits_value(found.group(1)), found.group(2)
    if rest.strip(" \t\n\r\f\v"):
        hint = (
            "thresholds are written l:N u:N without quotes"
            if "l:" in rest or "u:" in rest
            else None
        )
        problems.error(loc, f'Invalid real server line, around "{rest.strip()}"', hint)
        return None
    return RealFlags(method, weight, request, receive, lower, upper)


def _note_skipped(skipped: str, loc: Location, problems: Problems) -> None:
    if skipped.strip():
        problems.warn(loc, f'real server: "{skipped.strip()}" ignored (as ldirectord ignores it)')


def parse_real(
    value: str, loc: Location, family: Family, env: Environment, problems: Problems
) -> list[RealServer]:
    """One real=/real6= value → its real servers (several for a range); errors collected."""
    match = _REAL.search(value)
    if match is None:
        hint = "expected real=HOST[:PORT] gate|masq|ipip [WEIGHT]"
        if _V6_UNBRACKETED.match(value):
            hint = "IPv6 addresses go in brackets: real6=[2001:db8::1]:80 gate"
        problems.error(loc, "invalid address for real server (wrong format)", hint)
        return []
    _note_skipped(value[: match.start()], loc, problems)
    ip1, ip2, port_text, flags = match.group(1), match.group(3), match.group(5), match.group(6)
    ok = True
    first, why = _resolve_host(env, ip1, family)
    if first is None:
        problems.error(
            loc, f"invalid address ({ip1}) for real server (could not resolve host: {why})"
        )
        ok = False
    port = env.port(port_text, "") if port_text is not None else 0
    if port is None:
        problems.error(loc, f"invalid port ({port_text}) for real server (could not resolve port)")
        ok = False
    addresses: list[str] = [first] if first else []
    if ip2 is not None:
        last, why = _resolve_host(env, ip2, family)
        if last is None:
            problems.error(
                loc, f"invalid address ({ip2}) for real server (could not resolve end host: {why})"
            )
            ok = False
        elif family is Family.INET6:
            problems.error(loc, "Address range for IPv6 is not supported yet")
            ok = False
        elif first is not None:
            expanded = _range(first, last)
            if isinstance(expanded, str):
                problems.error(loc, expanded)
                ok = False
            else:
                if (
                    len(expanded)
                    != int(ipaddress.IPv4Address(last)) - int(ipaddress.IPv4Address(first)) + 1
                ):
                    problems.warn(
                        loc,
                        f"range {first}->{last} crosses a power of ten: ldirectord (and so this) only adds {len(expanded)} address(es)",
                    )
                addresses = expanded
    parsed = _parse_flags(flags, loc, problems)
    if not ok or parsed is None or port is None:
        return []
    return [
        RealServer(
            address=address,
            port=port,
            method=parsed.method,
            weight=parsed.weight,
            request=parsed.request,
            receive=parsed.receive,
            lower=parsed.lower,
            upper=parsed.upper,
            location=loc,
        )
        for address in addresses
    ]


@dataclass(frozen=True, slots=True)
class RawFallback:
    server: str
    port: str | None  # as written (or inherited from the virtual), None = none
    method: Method
    location: Location


def parse_fallback(
    value: str, loc: Location, default_port: str | None, problems: Problems, *, in_block: bool
) -> RawFallback | None:
    """ldirectord's parse_fallback: the LAST one or two words are ``host[:port] [method]``."""
    line = value
    method_text: str | None = None
    if words := _FALLBACK_WORDS.search(line):
        method_text, line = words.group(3), words.group(1)
    suffix = _PORT_SUFFIX.search(line)
    port = suffix.group(2) if suffix else None
    server = line[: suffix.start()] if suffix else line
    if port is None:
        port = default_port
    method = Method.GATE
    if perl_true(method_text):
        assert method_text is not None
        if method_text not in METHODS:
            hint = value_hint(value, in_block=in_block)
            problems.error(loc, "forward method must be gate, masq or ipip", hint)
            return None
        method = Method(method_text)
    return RawFallback(server, port, method, loc)


def resolve_fallback(
    raw: RawFallback, protocol: str, family: Family, env: Environment, problems: Problems
) -> Fallback | None:
    """Resolve host and port (getservbyname with the virtual's protocol)."""
    address, why = _resolve_host(env, raw.server, family)
    if not lookup_name(raw.server):
        problems.warn(
            raw.location, f"fallback server without a host means {address} (as in ldirectord)"
        )
    if address is None:
        version = "IPv4" if family is Family.INET else "IPv6"
        problems.error(
            raw.location,
            f"invalid {version} address or could not resolve for fallback server: {raw.server} ({why})",
        )
        return None
    port = 0
    if perl_true(raw.port):
        assert raw.port is not None
        resolved = env.port(raw.port, protocol)
        if resolved is None:
            problems.error(
                raw.location, f"invalid port for fallback server: {raw.port} ({protocol})"
            )
            return None
        port = resolved
    return Fallback(address, port, raw.method, raw.location)
