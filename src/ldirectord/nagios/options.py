"""The command line of check_ldirectord_pulse: options, usage, help.

Owns parsing only (no IO, no judgement). Hand-written rather than argparse (which exits 2 on
errors, abbreviates long options and costs ~6 ms of imports) or getopt (unique-prefix
matching): GNU style (``-w120``, ``-w 120``, ``--warning=120``, ``--warning 120``, bundled
flags ``-iv``), predictable, and every error is a UsageError the plugin turns into UNKNOWN.
"""

from __future__ import annotations

import os

from ldirectord import __version__
from ldirectord.nagios.ranges import Range, RangeError, parse_range

PROG = "check_ldirectord_pulse"
DEFAULT_WARNING = "120"
DEFAULT_CRITICAL = "300"
DEFAULT_TIMEOUT = 10.0
USAGE = f"""\
Usage: {PROG} [-f FILE | -n NAME [--rundir DIR]]
         [-w RANGE] [-c RANGE] [--min-up N] [-i] [-t SECONDS] [-v]
       {PROG} -h | -V
"""

HELP = f"""\
{PROG} v{__version__} (ldirectord for Python {__version__})
Checks the pulse file of ldirectord: its age (mtime) and, when it has schema-1
content, that the daemon's pid is alive and that every virtual service has a
real server up (or its fallback active).

{USAGE}
Options:
 -f, --file=FILE        pulse file to check
 -n, --name=NAME        instance name: the file is RUNDIR/ldirectord.NAME.pulse
                        (default name: ldirectord)
     --rundir=DIR       directory of the pid and pulse files (default /var/run)
 -w, --warning=RANGE    WARNING when the age in seconds alerts on RANGE
                        (default 120)
 -c, --critical=RANGE   CRITICAL when the age alerts on RANGE (default 300);
                        judged before the warning range
     --min-up=N         WARNING when a virtual service has fewer than N real
                        servers up
 -i, --ignore-missing   a missing pulse file is OK instead of CRITICAL
 -t, --timeout=SECONDS  give up with UNKNOWN after SECONDS (default 10)
 -v, --verbose          long output: one line per virtual service
 -V, --version          print the version and exit
 -h, --help             print this help and exit

RANGE is the Nagios range syntax [@][start:][end]: 120 alerts above 120,
120: below 120, ~:120 above 120 (no lower bound), 60:120 outside 60..120,
@60:120 inside 60..120 (both ends inclusive). Ages are whole seconds.

States: OK 0, WARNING 1, CRITICAL 2, UNKNOWN 3 (also for bad arguments,
an unreadable file, an invalid or unknown-schema pulse, and a timeout).
"""


class UsageError(Exception):
    """A bad command line: reported as UNKNOWN with a one-line reason and the usage."""


class Options:
    """The parsed command line."""

    __slots__ = (
        "critical",
        "file",
        "help",
        "ignore_missing",
        "min_up",
        "name",
        "rundir",
        "timeout",
        "verbose",
        "version",
        "warning",
    )

    def __init__(self) -> None:
        self.file: str | None = None
        self.name: str | None = None
        self.rundir: str | None = None
        self.warning: Range = parse_range(DEFAULT_WARNING)
        self.critical: Range = parse_range(DEFAULT_CRITICAL)
        self.min_up: int | None = None
        self.ignore_missing = False
        self.timeout = DEFAULT_TIMEOUT
        self.verbose = 0
        self.version = False
        self.help = False

    @property
    def path(self) -> str:
        if self.file is not None:
            return self.file
        name = self.name if self.name is not None else "ldirectord"
        rundir = self.rundir if self.rundir is not None else "/var/run"
        return os.path.join(rundir, f"ldirectord.{name}.pulse")


_SHORT = {"f": "file", "n": "name", "w": "warning", "c": "critical", "t": "timeout"}
_SHORT_FLAGS = {"i": "ignore-missing", "v": "verbose", "V": "version", "h": "help"}
_LONG_VALUES = {"file", "name", "rundir", "warning", "critical", "timeout", "min-up"}
_LONG_FLAGS = {"ignore-missing", "verbose", "version", "help"}


def parse_args(args: list[str]) -> Options:
    """Parse the arguments (without argv[0]); raise UsageError on anything wrong."""
    opts = Options()
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg.startswith("--") and len(arg) > 2:
            key, eq, value = arg[2:].partition("=")
            if key in _LONG_FLAGS:
                if eq:
                    raise UsageError(f"option --{key} takes no value")
                _set_flag(opts, key)
            elif key in _LONG_VALUES:
                if not eq:
                    if i >= len(args):
                        raise UsageError(f"option --{key} needs a value")
                    value, i = args[i], i + 1
                _set_value(opts, key, value, f"--{key}")
            else:
                raise UsageError(f"unknown option --{key}")
        elif arg.startswith("-") and len(arg) > 1 and arg != "--":
            i = _parse_short(opts, arg, args, i)
        else:
            raise UsageError(f"unexpected argument {arg!r} (this plugin takes options only)")
    if opts.file is not None and (opts.name is not None or opts.rundir is not None):
        raise UsageError("give either -f/--file or -n/--name and --rundir, not both")
    return opts


def _parse_short(opts: Options, arg: str, args: list[str], i: int) -> int:
    j = 1
    while j < len(arg):
        letter = arg[j]
        if letter in _SHORT_FLAGS:
            _set_flag(opts, _SHORT_FLAGS[letter])
            j += 1
        elif letter in _SHORT:
            value = arg[j + 1 :]
            if not value:
                if i >= len(args):
                    raise UsageError(f"option -{letter} needs a value")
                value, i = args[i], i + 1
            _set_value(opts, _SHORT[letter], value, f"-{letter}")
            break
        else:
            raise UsageError(f"unknown option -{letter}")
    return i


def _set_flag(opts: Options, key: str) -> None:
    if key == "verbose":
        opts.verbose += 1
    elif key == "ignore-missing":
        opts.ignore_missing = True
    elif key == "version":
        opts.version = True
    else:
        opts.help = True


def _set_value(opts: Options, key: str, value: str, shown: str) -> None:
    if key in ("warning", "critical"):
        try:
            setattr(opts, key, parse_range(value))
        except RangeError as exc:
            raise UsageError(f"{shown}: {exc}") from None
    elif key == "timeout":
        opts.timeout = _positive_seconds(value, shown)
    elif key == "min-up":
        if not (value.isascii() and value.isdigit()):
            raise UsageError(f"{shown} needs a whole number, not {value!r}")
        opts.min_up = int(value)
    elif not value:
        raise UsageError(f"{shown} needs a non-empty value")
    elif key == "name" and "/" in value:
        raise UsageError(f"{shown}: an instance name cannot contain '/' (use -f for a path)")
    else:
        setattr(opts, key, value)


def _positive_seconds(value: str, shown: str) -> float:
    try:
        seconds = float(value) if value.isascii() else -1.0
    except ValueError:
        seconds = -1.0
    if not (0 < seconds <= 86400):  # also refuses nan and inf
        raise UsageError(f"{shown} needs seconds between 0 and 86400, not {value!r}")
    return seconds
