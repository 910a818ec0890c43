"""The daemon commands: start, stop, restart, try-restart, reload, force-reload, status.

Owns ldirectord's command contract (reference §4.1–4.3, §8.1–8.2) and our fixes to it:
- the pid file ``<rundir>/ldirectord.<name>.pid`` is validated through /proc/<pid>/cmdline;
- ``status`` exits 0 running (stderr "ldirectord for <cfg> is running with pid: <pid>"), 1 for a
  stale pid file (stderr "ldirectord stale pid file <pidfile> for <cfg>"), 3 stopped, the last
  two printing "ldirectord is stopped for <cfg>" on stdout; then our live table and pulse age;
- a config error exits 2 but never touches a running daemon's pid file, and ``stop``/``status``
  do not read the config at all (they work with a broken one);
- ``stop`` sends TERM and waits (bounded) until the process is gone;
- ``start`` daemonises with two forks and no exec, so /proc/<pid>/cmdline keeps
  ``<path> <configfile> start`` (the OCF agent's ``pgrep -f`` fallback looks for it).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
from typing import TYPE_CHECKING, TextIO

from ldirectord.cli import CliOptions
from ldirectord.config.lookup import DEFAULT_CONFIG, SEARCH_DIRS, ConfigRef
from ldirectord.runtime import pidfile
from ldirectord.runtime.status_view import status_command

if TYPE_CHECKING:  # the daemon's modules are imported only by the commands that run it
    from ldirectord.config.model import Config
    from ldirectord.runtime.daemon import DaemonOptions
    from ldirectord.runtime.logsetup import Logger

STOP_WAIT = 30.0  # seconds `stop` waits for the daemon to go
START_WAIT = 10.0  # seconds `start` waits for the daemon's first reconcile before returning


def display_config(ref: ConfigRef) -> str:
    """$CONFIG as ldirectord prints it: the found path, else the argument as given."""
    if any(ref.path.startswith(d.rstrip("/") + "/") for d in SEARCH_DIRS):
        return ref.path
    return ref.as_given or DEFAULT_CONFIG


def child_options(opts: CliOptions) -> tuple[str, ...]:
    """The options further instances (execute=) inherit from this one."""
    options: tuple[str, ...] = ("--rundir", os.path.abspath(opts.rundir))
    if opts.backend != "auto":
        options += ("--backend", opts.backend)
    return options


def state_file(opts: CliOptions) -> str:
    return f"{opts.rundir}/ldirectord.{opts.config.name}.state"


def control(opts: CliOptions) -> int:
    command = opts.command
    if command == "status":
        code = status_command(opts, display_config(opts.config), state_file(opts))
        if code == 0 and not opts.json:
            children_status(opts)
        return code
    if command == "stop":
        return stop(opts)
    if command in ("reload", "force-reload"):
        return reload(opts)
    if command in ("restart", "try-restart"):
        return restart(opts, only_if_running=command == "try-restart")
    return start(opts)


def _err(text: str, stream: TextIO | None = None) -> None:
    out = stream or sys.stderr
    out.write(text if text.endswith("\n") else text + "\n")
    out.flush()


def read_config(opts: CliOptions) -> Config | int:
    """The validated config, or the exit code after printing why not (1 missing, 2 invalid)."""
    from ldirectord.errors import ConfigError
    from ldirectord.runtime.daemon import load_config

    path = opts.config.path
    if not os.path.isfile(path):
        _err(f"Config file {display_config(opts.config)} not found")
        return 1
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            _err(problem.render())
        return 2
    except (OSError, UnicodeDecodeError) as exc:
        _err(f"can not open file {path}: {exc}")
        return 1


def children_status(opts: CliOptions) -> None:
    """ldirectord's ld_cmd_children("status"): the execute= instances the daemon runs."""
    import json
    import subprocess

    from ldirectord.runtime.instances import self_command

    try:
        with open(state_file(opts), "rb") as handle:
            children = json.loads(handle.read()).get("execute") or []
    except (OSError, ValueError, AttributeError):
        return
    for child in children:
        argv = [*self_command(), *child_options(opts), str(child), "status"]
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(argv, timeout=10, check=False, stdin=subprocess.DEVNULL)


# --- stop / reload / restart ------------------------------------------------------------


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if pidfile.process_gone(pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def stop(opts: CliOptions) -> int:
    state = pidfile.probe(opts.pid_file)
    if not state.running or state.pid is None:
        return 0
    try:
        os.kill(state.pid, signal.SIGTERM)
    except ProcessLookupError:
        return 0
    if wait_gone(state.pid, STOP_WAIT):
        return 0
    _err(
        f"ldirectord for {display_config(opts.config)} (pid {state.pid}) did not stop "
        f"within {STOP_WAIT:g} s"
    )
    return 1


def reload(opts: CliOptions) -> int:
    config = read_config(opts)
    if isinstance(config, int):
        return config  # the running daemon is not told anything: it keeps its config
    state = pidfile.probe(opts.pid_file)
    if not state.running or state.pid is None:
        _err(f"ldirectord is stopped for {display_config(opts.config)}")
        return 1
    os.kill(state.pid, signal.SIGHUP)
    return 0


def restart(opts: CliOptions, *, only_if_running: bool) -> int:
    state = pidfile.probe(opts.pid_file)
    if not state.running:
        return 0 if only_if_running else start(opts)
    config = read_config(opts)
    if isinstance(config, int):
        return config  # a bad new config never stops the running daemon
    if stop(opts) != 0:
        return 1
    return start(opts, config)


# --- start -------------------------------------------------------------------------------


def start(opts: CliOptions, config: Config | None = None) -> int:
    from ldirectord.runtime.daemon import DaemonOptions, starting_line
    from ldirectord.runtime.instances import self_command
    from ldirectord.runtime.logsetup import Logger, choose_mode
    from ldirectord.runtime.pulse import check_writable

    if config is None:
        loaded = read_config(opts)
        if isinstance(loaded, int):
            return loaded
        config = loaded
    if pidfile.probe(opts.pid_file).running:
        return 0
    foreground = opts.debug or config.globals.supervised
    # Under systemd (Type=notify) the service manager supervises us: stay in the foreground
    # (no fork), but keep the pid file and the configured log, so the CLI contract holds.
    systemd = not foreground and bool(os.environ.get("NOTIFY_SOCKET"))
    checks = [(opts.pulse_file, "pulse file"), (state_file(opts), "state file")]
    if not foreground:
        checks.append((opts.pid_file, "pid file"))
    for path, what in checks:
        problem = check_writable(path, what)
        if problem is not None:
            _err(f"ldirectord: {problem}")
            return 1
    mode = choose_mode(
        debug=opts.debug, supervised=config.globals.supervised, logfile=config.globals.logfile
    )
    logger = Logger(
        mode,
        cfgname=opts.config.name,
        logfile=config.globals.logfile,
        debug_level=3 if opts.debug else 0,
    )
    log_problem = logger.test_open()
    if log_problem is not None:
        _err(f"ldirectord: {log_problem}; log lines go to stderr")
    logger.log(f"Invoking ldirectord invoked as: {sys.argv[0]} {' '.join(opts.argv)} ")
    options = DaemonOptions(
        config_path=os.path.abspath(opts.config.path),
        cfgname=opts.config.name,
        backend=opts.backend,
        pulse_file=os.path.abspath(opts.pulse_file),
        state_file=os.path.abspath(state_file(opts)),
        debug=opts.debug,
        program=self_command(),
        child_options=child_options(opts),
    )
    logger.log(starting_line(foreground or systemd))
    if foreground:
        return run_foreground(options, config, logger)
    if systemd:
        return run_foreground(options, config, logger, os.path.abspath(opts.pid_file))
    return daemonise(options, config, logger, os.path.abspath(opts.pid_file))


def run_foreground(
    options: DaemonOptions, config: Config, logger: Logger, pid_path: str | None = None
) -> int:
    import asyncio

    from ldirectord.runtime.daemon import Daemon

    if pid_path is None:
        return asyncio.run(Daemon(options, config, logger).run())
    lock = pidfile.instance_lock(pid_path)
    if lock is None:
        return 0  # another instance of this pid file is running (start when running → 0)
    try:
        pidfile.write_pid(pid_path)
    except OSError as exc:
        _err(f"ldirectord: can not write the pid file {pid_path}: {exc.strerror or exc}")
        return 1
    try:
        return asyncio.run(Daemon(options, config, logger).run())
    finally:
        pidfile.remove_if_ours(pid_path)
        lock.close()


def daemonise(options: DaemonOptions, config: Config, logger: Logger, pid_path: str) -> int:
    """Fork, setsid, fork again; the grandchild runs the daemon. The parent waits (bounded)
    for the daemon's first reconcile and reports a start-up failure with a non-zero exit."""
    sys.stdout.flush()
    sys.stderr.flush()
    rfd, wfd = os.pipe()
    first = os.fork()
    if first > 0:
        os.close(wfd)
        os.waitpid(first, 0)
        return _await_started(rfd)
    # first child
    os.close(rfd)
    try:
        os.setsid()
        if os.fork() > 0:
            os._exit(0)
        _become_daemon()
        code = _daemon_main(options, config, logger, pid_path, wfd)
    except BaseException as exc:  # never return into the CLI from a forked child
        with contextlib.suppress(Exception):
            logger.log(f"Exiting with exit_status 1: {exc!r}", error=True)
        code = 1
    os._exit(code)


def _become_daemon() -> None:
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)


def _daemon_main(
    options: DaemonOptions, config: Config, logger: Logger, pid_path: str, wfd: int
) -> int:
    import asyncio

    from ldirectord.runtime.daemon import Daemon

    reported = False

    def started(error: str | None) -> None:
        nonlocal reported
        if reported:
            return
        reported = True
        with contextlib.suppress(OSError):
            os.write(wfd, b"ok\n" if error is None else f"error: {error}\n".encode())
        os.close(wfd)

    def warning(text: str) -> None:
        if not reported:
            with contextlib.suppress(OSError):
                os.write(wfd, f"warn: {text}\n".encode())

    lock = pidfile.instance_lock(pid_path)
    if lock is None:  # another start won the race: that daemon is the one
        started(None)
        return 0
    try:
        pidfile.write_pid(pid_path)
    except OSError as exc:
        started(f"can not write the pid file {pid_path}: {exc.strerror or exc}")
        return 1
    try:
        daemon = Daemon(options, config, logger, on_started=started, on_warning=warning)
        return asyncio.run(daemon.run())
    finally:
        pidfile.remove_if_ours(pid_path)
        lock.close()
        started("the daemon exited during start-up")


def _await_started(rfd: int, timeout: float = START_WAIT) -> int:
    deadline = time.monotonic() + timeout
    data = b""
    try:
        while True:
            while data.startswith(b"warn: ") and b"\n" in data:
                warn, data = data.split(b"\n", 1)
                _err(f"ldirectord: {warn[6:].decode(errors='replace')}")
            if b"\n" in data:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                return 0  # still starting: as ldirectord, `start` does not wait for the checks
            ready, _, _ = select.select([rfd], [], [], left)
            if not ready:
                continue
            chunk = os.read(rfd, 4096)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(rfd)
    line = data.decode(errors="replace").strip()
    if line == "ok":
        return 0
    _err(f"ldirectord: {line or 'the daemon exited during start-up'} (see the log)")
    return 1
