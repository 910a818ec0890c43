"""The ``ldirectord`` command line: parse, then hand over. No logic of its own.

Grammar (as Perl ldirectord, options first): ``ldirectord [options] [configfile] command``,
plus our trailing ``--json`` for configtest/probe/status. Usage errors exit 255 as ldirectord's
pod2usage does; each command returns its own exit code.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ldirectord import LEGACY_VERSION_LINE, __version__
from ldirectord.config.lookup import ConfigRef, find_config

DAEMON_COMMANDS = frozenset(
    {"start", "stop", "restart", "try-restart", "reload", "force-reload", "status"}
)
OUR_COMMANDS = frozenset({"configtest", "probe"})
EXIT_USAGE = 255

USAGE = """\
Usage: ldirectord [options] [configfile] {start|stop|restart|try-restart|reload|force-reload|status|configtest|probe}

Options (before the config file and the command):
  -d, --debug          stay in the foreground, debug logging to stderr, no pid file
  -t                   same as the configtest command
  -h, --help           this text
  -v, --version        print the version
  --dry-run            same as --backend dryrun
  --backend NAME       auto (default), ipvs or dryrun
  --rundir DIR         where the pid and pulse files go (default /var/run)
  --pulse FILE         the pulse file (default <rundir>/ldirectord.<name>.pulse)
  --json               machine-readable output (configtest, probe, status)

configfile: a bare name is looked up in /etc/ha.d/ then /etc/ha.d/conf/, then as given;
the default is ldirectord.cf (name "ldirectord"; pid file <rundir>/ldirectord.<name>.pid).
"""


@dataclass(frozen=True, slots=True)
class CliOptions:
    command: str
    config: ConfigRef
    debug: bool = False
    json: bool = False
    backend: str = "auto"
    rundir: str = "/var/run"
    pulse: str | None = None
    argv: tuple[str, ...] = ()  # the original arguments, for "invoked as" logging

    @property
    def pid_file(self) -> str:
        return f"{self.rundir}/ldirectord.{self.config.name}.pid"

    @property
    def pulse_file(self) -> str:
        return self.pulse or f"{self.rundir}/ldirectord.{self.config.name}.pulse"


class UsageError(Exception):
    pass


def parse(argv: Sequence[str]) -> CliOptions | str:
    """Return options, or a string to print and exit 0 with (help, version)."""
    debug = json = False
    backend, rundir, pulse = "auto", "/var/run", None
    configtest = False
    args = list(argv)
    positional: list[str] = []
    while args:
        arg = args.pop(0)
        if positional and arg != "--json":
            positional.append(arg)
            continue
        if arg in ("-h", "-?", "--help"):
            return USAGE
        if arg in ("-v", "--version"):
            return f"{LEGACY_VERSION_LINE} (ldirectord for Python {__version__})\n"
        if arg in ("-d", "--debug"):
            debug = True
        elif arg == "-t":
            configtest = True
        elif arg == "--json":
            json = True
        elif arg == "--dry-run":
            backend = "dryrun"
        elif arg in ("--backend", "--rundir", "--pulse"):
            if not args:
                raise UsageError(f"{arg} needs a value")
            value = args.pop(0)
            if arg == "--backend":
                if value not in ("auto", "ipvs", "dryrun"):
                    raise UsageError(f"--backend must be auto, ipvs or dryrun, not {value!r}")
                backend = value
            elif arg == "--rundir":
                rundir = value.rstrip("/") or "/"
            else:
                pulse = value
        elif arg == "--":
            positional.extend(args)
            args = []
        elif arg.startswith("-") and arg != "-":
            raise UsageError(f"unknown option {arg}")
        else:
            positional.append(arg)
    if configtest:
        positional.append("configtest")
    if len(positional) == 1:
        config_arg, command = None, positional[0]
    elif len(positional) == 2:
        config_arg, command = positional
    else:
        raise UsageError("expected [configfile] command")
    if command not in DAEMON_COMMANDS | OUR_COMMANDS:
        raise UsageError(f"unknown command {command!r}")
    return CliOptions(
        command=command,
        config=find_config(config_arg),
        debug=debug,
        json=json,
        backend=backend,
        rundir=rundir,
        pulse=pulse,
        argv=tuple(argv),
    )


def _handler(command: str) -> Callable[[CliOptions], int]:
    # Imported lazily: `status` and `configtest` must not pay for the check libraries.
    if command == "configtest":
        from ldirectord.config.report import configtest

        return configtest
    if command == "probe":
        from ldirectord.checks.probe import probe

        return probe
    from ldirectord.runtime.control import control

    return control


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parsed = parse(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        sys.stderr.write(f"ldirectord: {exc}\n{USAGE}")
        return EXIT_USAGE
    if isinstance(parsed, str):
        sys.stdout.write(parsed)
        return 0
    return _handler(parsed.command)(parsed)
