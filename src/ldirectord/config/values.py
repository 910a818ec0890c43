"""Value rules shared by global and per-virtual directives, the problem collector and hints.

Owns ldirectord's small value grammars (first digit run with Perl truthiness, yes/no exactly,
mandatory double quotes up to the last quote, e-mail alert status lists) and the hints that
explain the common mistakes behind an error. Knows nothing about which directive uses which.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from ldirectord.config.location import Location
from ldirectord.config.model import ALL_ALERT_STATUSES, DaemonStatus
from ldirectord.errors import ConfigProblem

DIGITS = re.compile(r"(\d+)", re.ASCII)
QUOTED = re.compile(r'^"(.*)"', re.ASCII)
TYPOGRAPHIC_QUOTES = "“”„‟″‘’‚‛«»"

GLOBAL_ONLY = frozenset(
    {
        "autoreload",
        "callback",
        "logfile",
        "execute",
        "fork",
        "supervised",
        "readdquiescent",
        "emailalertfrom",
        "maintenancedir",
    }
)
BOTH = frozenset(
    {
        "checktimeout",
        "negotiatetimeout",
        "checkinterval",
        "checkcount",
        "failurecount",
        "fallback",
        "fallback6",
        "fallbackcommand",
        "quiescent",
        "emailalert",
        "emailalertfreq",
        "emailalertstatus",
        "cleanstop",
        "smtp",
    }
)
VIRTUAL_ONLY = frozenset(
    {
        "real",
        "real6",
        "request",
        "receive",
        "checktype",
        "checkcommand",
        "checkport",
        "login",
        "passwd",
        "database",
        "secret",
        "load",
        "scheduler",
        "persistent",
        "schedflags",
        "netmask",
        "protocol",
        "ops",
        "service",
        "httpmethod",
        "virtualhost",
        "monitorfile",
        "servicename",
        "comment",
    }
)
KNOWN = GLOBAL_ONLY | BOTH | VIRTUAL_ONLY | {"virtual", "virtual6"}
#: Our own directives, valid globally and in a virtual block (the virtual's wins). They are not
#: ldirectord's: Perl ldirectord rejects a file that uses them (docs/config.md, "Extensions").
EXTENSIONS = frozenset({"rise", "fastinterval"})
#: Every name a hint may point to.
ALL_NAMES = KNOWN | EXTENSIONS
#: The largest value an extension takes (beyond it a typo is far likelier than intent).
MAX_EXTENSION = 999_999_999
_EXTENSION_HINTS = {
    "rise": "rise=N: a down real server is put back after N successful checks in a row (N >= 1)",
    "fastinterval": (
        "fastinterval=N: seconds between the checks of a real server that is failing or down (N >= 1)"
    ),
}
#: Directives whose value ldirectord only accepts in double quotes.
QUOTED_ONLY = frozenset(
    {"request", "receive", "login", "passwd", "database", "secret", "load", "callback", "logfile"}
)


@dataclass(slots=True)
class Problems:
    """Collects every error and warning instead of stopping at the first."""

    errors: list[ConfigProblem] = field(default_factory=list)
    warnings: list[ConfigProblem] = field(default_factory=list)

    def error(self, loc: Location, message: str, hint: str | None = None) -> None:
        self.errors.append(ConfigProblem(loc, message, hint))

    def warn(self, loc: Location, message: str, hint: str | None = None) -> None:
        self.warnings.append(ConfigProblem(loc, message, hint))


def first_digits(value: str) -> str | None:
    """The first run of digits in the value, as ldirectord's ``/(\\d+)/``."""
    match = DIGITS.search(value)
    return match.group(1) if match else None


def read_extension(
    name: str, value: str, loc: Location, problems: Problems, *, in_block: bool
) -> int | None:
    """``rise=``/``fastinterval=``: the first run of digits, as ldirectord's numbers, but > 0.

    Unlike ldirectord's own numbers (where "00" passes Perl's truth test), any zero is an error.
    """
    digits = first_digits(value)
    significant = digits.lstrip("0") if digits is not None else ""
    if not significant:
        hint = value_hint(value, in_block=in_block) or _EXTENSION_HINTS[name]
        problems.error(loc, f"invalid {name} value", hint)
        return None
    if len(significant) > len(str(MAX_EXTENSION)) or int(significant) > MAX_EXTENSION:
        problems.error(loc, f"{name} value too large (at most {MAX_EXTENSION})")
        return None
    return int(significant)


#: Where digit runs saturate (see digits_value()); far above every range the config checks.
NUMBER_CAP = 10**18 - 1


def digits_value(digits: str) -> int:
    """A run of ASCII digits as an int, saturated at NUMBER_CAP.

    Perl makes a (huge) float of any digit run; Python's int() refuses more than 4300 digits
    and float() more than 308, so an absurd value would otherwise raise instead of becoming a
    ConfigError or an (equally absurd) accepted value, as in ldirectord.
    """
    significant = digits.lstrip("0")
    return NUMBER_CAP if len(significant) > len(str(NUMBER_CAP)) else int(digits)


def perl_true(text: str | None) -> bool:
    """Perl truthiness of a string: "" and "0" are false ("00" is true)."""
    return text is not None and text not in ("", "0")


def quoted(value: str) -> str | None:
    """The text between the first and the last double quote, when the value starts with one."""
    match = QUOTED.match(value)
    return match.group(1) if match else None


def read_emailalert(value: str) -> str:
    """ldirectord's read_emailalert: enclosing quotes stripped only if they wrap everything."""
    match = re.match(r'^"([^"]*)"$', value)
    return match.group(1) if match else value


def parse_alert_status(value: str) -> tuple[frozenset[DaemonStatus], list[str]]:
    """``all``/``none``/status names, comma separated; returns (statuses, error messages)."""
    items = re.split(r"\s*,\s*", value)
    while items and items[-1] == "":
        items.pop()  # Perl's split drops trailing empty fields
    errors: list[str] = []
    statuses: set[DaemonStatus] = set()
    has_none = "none" in items
    for item in items:
        if item == "none":
            continue
        if item == "all":
            statuses = set(ALL_ALERT_STATUSES)
        elif item in {s.value for s in DaemonStatus}:
            statuses.add(DaemonStatus(item))
        else:
            errors.append(f'invalid email alert status at: "{item}"')
        if has_none:
            errors.append(f'invalid email alert status: "{item}" specified with "none"')
    return frozenset(statuses), errors


def value_hint(value: str, *, in_block: bool) -> str | None:
    """The usual reason a well-formed directive has a rejected value."""
    if value.endswith("\r"):
        return "the file has Windows (CRLF) line endings: convert it with dos2unix"
    if not in_block and "#" in value:
        return "global lines keep trailing comments: remove '# ...'"
    if any(q in value for q in TYPOGRAPHIC_QUOTES):
        return 'use plain double quotes (") instead of typographic quotes'
    if value != value.rstrip():
        return "remove the blanks after the value (ldirectord compares the whole rest of the line)"
    if value.lower() in ("yes", "no") and value not in ("yes", "no"):
        return f"write {value.lower()} in lowercase"
    return None


def unknown_hint(name: str | None, text: str, *, in_block: bool) -> str | None:
    """Why a line is an "Unknown command", for the common cases."""
    if text.endswith("\r") and text[:-1].strip() and name is not None and name in ALL_NAMES:
        return "the file has Windows (CRLF) line endings: convert it with dos2unix"
    if not text.strip():
        return "a line of only blanks inside a virtual block: delete the blanks"
    if text.lstrip().startswith("["):
        return "ldirectord.cf has no [sections]: global directives start in column 0"
    if name is None:
        if any(q in text for q in TYPOGRAPHIC_QUOTES):
            return 'use plain double quotes (") instead of typographic quotes'
        return "expected name=value"
    return _name_hint(name, text, in_block=in_block)


def _name_hint(name: str, text: str, *, in_block: bool) -> str | None:
    value = text.split("=", 1)[1].lstrip() if "=" in text else ""
    if name in QUOTED_ONLY:
        if any(value.startswith(q) for q in TYPOGRAPHIC_QUOTES):
            return 'use plain double quotes (") instead of typographic quotes'
        return f'{name} needs its value in double quotes: {name}="..."'
    if name in ("virtual", "virtual6"):
        return f"{name}= must start in column 0"
    if not in_block and name in VIRTUAL_ONLY:
        return f"{name} is only valid inside a virtual block: indent it by 4 spaces or a tab"
    if in_block and name in GLOBAL_ONLY:
        return f"{name} is a global directive: put it in column 0 outside any virtual block"
    if name.lower() in ALL_NAMES:
        return f"directive names are lowercase: {name.lower()}"
    if name == "timeout":
        return "write checktimeout=N and/or negotiatetimeout=N"
    close = difflib.get_close_matches(name, sorted(ALL_NAMES), n=1, cutoff=0.8)
    if close:
        return f"did you mean {close[0]}?"
    return None
