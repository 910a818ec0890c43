"""The running daemon: start-up, the command loop, reload, stop. One asyncio loop, no blocking.

Owns the lifecycle around the engine's Director: choose the backend, start the Director (first
reconcile + first checks), then serve queued commands (signals, the autoreload poll) until
stopped. A reload validates the whole new config first (on a worker thread, under a deadline);
on ANY error the running config stays untouched and every problem is logged as file:line:col.
Side effects of progress — the pulse and watchdog, monitorfile lines, e-mail alerts, the state
file for ``status`` — hang off the engine's events here.

Knows nothing about the command line (control.py) or daemonising (control.py does the forks).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ldirectord import LEGACY_VERSION_LINE
from ldirectord.checks.base import CheckTarget, Outcome
from ldirectord.config import load as config_load
from ldirectord.config.model import Config, DaemonStatus, RealServer, VirtualService
from ldirectord.engine.director import Director, DirectorSnapshot, probe_for
from ldirectord.errors import ConfigError
from ldirectord.pulse_format import encode as encode_pulse
from ldirectord.runtime import backends, monitorfile, signals
from ldirectord.runtime.alerts import EmailAlerts
from ldirectord.runtime.instances import Instances
from ldirectord.runtime.logsetup import Logger
from ldirectord.runtime.pulse import ErrorGate, FileWriter, Pulse
from ldirectord.runtime.sdnotify import Notifier, scrub_environment
from ldirectord.runtime.stall import StallDetector, install_test_stall_hook
from ldirectord.runtime.state import STATE_SCHEMA, encode_state, pulse_document, state_virtuals
from ldirectord.runtime.watch import ConfigWatcher, run_callback

CONFIG_LOAD_TIMEOUT = 30.0  # reading + validating (names resolved) a config on reload
STOP_TIMEOUT = 20.0  # the Director's stop (cleanstop purge) must fit inside control's wait
STALL_THRESHOLD = 5.0


@dataclass(frozen=True, slots=True)
class DaemonOptions:
    config_path: str  # absolute
    cfgname: str
    backend: str  # auto | ipvs | dryrun
    pulse_file: str
    state_file: str
    debug: bool = False
    #: how to run further instances (execute=): this program and the options they inherit
    program: tuple[str, ...] = ("ldirectord",)
    child_options: tuple[str, ...] = ()


def load_config(path: str) -> Config:
    """``ldirectord.config.load``; raises ConfigError (every problem) or OSError."""
    return config_load(path)


@dataclass
class Counters:
    checks_completed: int = 0
    reloads: int = 0
    failed_reloads: int = 0
    started: float = field(default_factory=time.time)


class Events:
    """The engine's EventSink: log lines, check progress, real-server changes."""

    def __init__(self, daemon: Daemon) -> None:
        self._d = daemon

    def log(self, message: str) -> None:
        self._d.logger.log(message)

    def check_done(self, target: CheckTarget, outcome: Outcome) -> None:
        self._d.on_check_done(target, outcome)

    def real_changed(
        self,
        virtual: VirtualService,
        real: RealServer | Any,
        up: bool,
        message: str,
        outcome: Outcome | None = None,
    ) -> None:
        self._d.on_real_changed(virtual, real, up, message)


class Daemon:
    def __init__(
        self,
        options: DaemonOptions,
        config: Config,
        logger: Logger,
        *,
        notifier: Notifier | None = None,
        on_started: Callable[[str | None], None] | None = None,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        self.options = options
        self.config = config
        self.logger = logger
        self.notifier = notifier or Notifier()
        self.status = DaemonStatus.STARTING
        self.counters = Counters()
        self.backend_name = "?"
        self._on_started = on_started
        self._on_warning = on_warning
        self._queue: asyncio.Queue[signals.Request] = asyncio.Queue()
        self._stop_requested = asyncio.Event()
        self._director: Director | None = None
        self._loud = ErrorGate(lambda m: self.logger.log(m, error=True))
        self._writer = FileWriter(
            lambda path, exc: self._loud(
                path, f"ERROR: cannot write {path}: {exc.strerror or exc} (the pulse has stopped)"
            )
        )
        self.pulse = Pulse(
            options.pulse_file,
            writer=self._writer,
            notifier=self.notifier,
            render=self.render_pulse,
            state_path=options.state_file,
            render_state=self.render_state,
        )
        self.alerts = EmailAlerts(config, self.logger.log, status=lambda: self.status)
        self.instances = Instances(options.program, options.child_options, self.logger.log)
        self._monitor = monitorfile.MonitorFile(lambda m: self.logger.log(m, error=True))
        self._monitor_index: dict[CheckTarget, list[tuple[VirtualService, RealServer]]] = {}
        self._index_monitorfiles()
        self._watch = ConfigWatcher(options.config_path, lambda m: self.logger.log(m, error=True))
        self.stop_reason = "?"
        self._wall_offset = time.time() - time.monotonic()
        self._snap_cache: tuple[float, DirectorSnapshot | None] | None = None

    # --- events ------------------------------------------------------------------------

    def on_check_done(self, target: CheckTarget, outcome: Outcome) -> None:
        self.counters.checks_completed += 1
        self.pulse.progress()  # beats once the engine has applied this outcome
        if self.logger.debug_level >= 2:
            verdict = "up" if outcome.up else "down"
            detail = f" {outcome.detail}" if outcome.detail else ""
            self.logger.debug(
                2,
                f"Checked {target.kind}:{target.service} {target.host_for_url}:{target.port}: "
                f"{verdict} ({outcome.reason}{detail}, {outcome.duration * 1000:.0f} ms)",
            )
        for virtual, real in self._monitor_index.get(target, ()):
            assert virtual.monitorfile is not None
            line = monitorfile.format_line(virtual, real, outcome.up, outcome.detail or "-")
            self._monitor.write(virtual.monitorfile, line)

    def on_real_changed(self, virtual: VirtualService, real: Any, up: bool, message: str) -> None:
        if isinstance(real, RealServer):
            self.alerts.real_changed(virtual, real, up, message)

    def _index_monitorfiles(self) -> None:
        """Check target (as the engine reports it) → the (virtual, real) pairs that log it."""
        index: dict[CheckTarget, list[tuple[VirtualService, RealServer]]] = {}
        for virtual in self.config.virtuals:
            if not virtual.monitorfile:
                continue
            for real in virtual.reals:
                index.setdefault(probe_for(virtual, real).target, []).append((virtual, real))
        self._monitor_index = index

    # --- snapshots ---------------------------------------------------------------------

    def snapshot(self) -> DirectorSnapshot | None:
        if self._director is None:
            return None
        try:
            return self._director.snapshot()
        except Exception as exc:  # a snapshot must never take the daemon down
            self._loud("snapshot", f"ERROR: engine snapshot failed: {exc!r}")
            return None

    def _beat_snapshot(self, wall: float) -> DirectorSnapshot | None:
        """One snapshot per beat, shared by the pulse and the state file (same ``wall``)."""
        cached = self._snap_cache
        if cached is not None and cached[0] == wall:
            return cached[1]
        snap = self.snapshot()
        self._snap_cache = (wall, snap)
        return snap

    def render_pulse(self, wall: float) -> bytes:
        snap = self._beat_snapshot(wall)
        return encode_pulse(
            pulse_document(
                snap,
                pid=os.getpid(),
                config=self.options.config_path,
                started=self.counters.started,
                beat=wall,
                checks_completed=self.checks_completed(snap),
            )
        )

    def checks_completed(self, snap: DirectorSnapshot | None) -> int:
        return max(self.counters.checks_completed, snap.checks_completed if snap else 0)

    def render_state(self, wall: float) -> Callable[[], bytes]:
        """Capture the state on the loop; the writer thread encodes it (at 10,000 reals the
        encoding took ~220 ms, which must not stall the loop once a second)."""
        snap = self._beat_snapshot(wall)
        head = {
            "schema": STATE_SCHEMA,
            "pid": os.getpid(),
            "config": self.options.config_path,
            "started": self.counters.started,
            "written": wall,
            "status": str(self.status),
            "backend": self.backend_name,
            "checks_completed": self.checks_completed(snap),
            "reloads": self.counters.reloads,
            "failed_reloads": self.counters.failed_reloads,
            "execute": list(self.config.globals.execute),
        }
        offset = self._wall_offset
        return lambda: encode_state({**head, "virtuals": state_virtuals(snap, offset)})

    def summary(self) -> str:
        snap = self.snapshot()
        rows = snap.virtuals if snap is not None else ()
        up = sum(v.reals_up for v in rows)
        total = sum(v.reals_total for v in rows)
        return (
            f"{self.status}: {len(rows)} virtual services, {up}/{total} real servers up, "
            f"{self.checks_completed(snap)} checks, backend {self.backend_name}"
        )

    # --- lifecycle ---------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        scrub_environment()
        signals.install(loop, self.submit)
        stall = StallDetector(loop, self.logger.log, threshold=STALL_THRESHOLD)
        stall.start()
        install_test_stall_hook(loop, self.logger.log)
        try:
            try:
                await self._start()
            except Exception as exc:
                self.logger.log(f"Exiting with exit_status 1: start-up failed: {exc}", error=True)
                if self._on_started is not None:
                    self._on_started(str(exc))
                await self._shutdown(purge=False)
                return 1
            await self._serve()
            await self._shutdown(purge=True)
            self.logger.log(f"Linux Director Daemon terminated on signal: {self.stop_reason}")
            return 0
        finally:
            stall.stop()
            signals.uninstall(loop)
            self._writer.close()
            self.notifier.close()

    def submit(self, request: signals.Request) -> None:
        """Queue a command (signal handlers call this and nothing else)."""
        if request.command is signals.Command.STOP:
            self._stop_requested.set()
        self._queue.put_nowait(request)

    async def _start(self) -> None:
        choice = await backends.choose(self.options.backend, self.logger.log)
        self.backend_name = choice.name
        if choice.warning:
            self.logger.log(choice.warning, error=True)
            if self._on_warning is not None:
                self._on_warning(choice.warning)
        self._director = Director(self.config, choice.backend, Events(self), tune_gc=True)
        self._watch.remember()
        await self._director.start()
        self.pulse.beat(force=True)
        if self._on_started is not None:
            self._on_started(None)
        # a stop request must not wait for slow first checks
        first = asyncio.ensure_future(self._director.wait_first_checks(self.first_check_timeout()))
        stop = asyncio.ensure_future(self._stop_requested.wait())
        await asyncio.wait({first, stop}, return_when=asyncio.FIRST_COMPLETED)
        for task in (first, stop):
            task.cancel()
        if not self._stop_requested.is_set():
            await self.instances.command(self.config.globals.execute, "start")
        self.status = DaemonStatus.RUNNING
        self.pulse.beat(force=True)
        self.notifier.ready(self.summary())

    def first_check_timeout(self) -> float:
        longest = max(
            (max(v.check.checktimeout, v.check.negotiatetimeout) for v in self.config.virtuals),
            default=0.0,
        )
        return longest + 2.0

    def has_checks(self) -> bool:
        return any(v.reals for v in self.config.virtuals)

    async def _serve(self) -> None:
        next_housekeeping = time.monotonic()
        while True:
            timeout = max(0.0, next_housekeeping - time.monotonic())
            try:
                async with asyncio.timeout(timeout):
                    request = await self._queue.get()
            except TimeoutError:
                try:
                    await self._housekeeping()
                except Exception as exc:  # a bug here must not stop the director
                    self._loud("housekeeping", f"ERROR: housekeeping failed: {exc!r}")
                next_housekeeping = time.monotonic() + self.config.globals.checkinterval
                continue
            if request.command is signals.Command.STOP:
                self.stop_reason = request.reason
                return
            if request.command is signals.Command.RELOAD:
                self.logger.log("Reloading Linux Director Daemon config on signal")
                if self._coalesce_reloads():
                    continue  # a stop is queued: it wins over the reload
                await self.reload()

    def _coalesce_reloads(self) -> bool:
        """Drop reload requests queued behind this one (one reload reads the newest file);
        True when a stop is queued, which is then served first."""
        kept: list[signals.Request] = []
        while not self._queue.empty():
            request = self._queue.get_nowait()
            if request.command is not signals.Command.RELOAD:
                kept.append(request)
        for request in kept:
            self._queue.put_nowait(request)
        return any(r.command is signals.Command.STOP for r in kept)

    async def _housekeeping(self) -> None:
        """Once per checkinterval: idle beat, config change poll, e-mail reminders, STATUS=."""
        if not self.has_checks():  # nothing to check: the idle beat says we are alive
            self.pulse.beat(force=True)
        await self._poll_config()
        self.alerts.resend_due()
        self.notifier.status(self.summary())

    # --- reload --------------------------------------------------------------------------

    async def _poll_config(self) -> None:
        """ldirectord's check_cfgfile: a changed file is reread (autoreload) or ignored, then
        the callback runs."""
        if not await self._watch.changed():
            return
        path = self.options.config_path
        self.logger.log(f"Configuration file '{path}' has changed on disk")
        if self.config.globals.autoreload:
            self.logger.log(" - reread new configuration")
            await self.reload()
        else:
            self.logger.log(" - ignore new configuration")
        await run_callback(self.config.globals.callback, path, self.logger.log)

    async def reload(self) -> bool:
        """Validate the whole new config, then hand it to the Director; else keep the old one."""
        path = self.options.config_path
        began = time.monotonic()
        try:
            new = await asyncio.wait_for(asyncio.to_thread(load_config, path), CONFIG_LOAD_TIMEOUT)
        except ConfigError as exc:
            self.counters.failed_reloads += 1
            for problem in exc.problems:
                self.logger.log(f"Error reading file {path}: {problem.render()}", error=True)
            self.logger.log(
                f"Reload abandoned: {len(exc.problems)} error(s) in {path}; "
                "the running configuration is unchanged",
                error=True,
            )
            return False
        except (OSError, UnicodeDecodeError, TimeoutError) as exc:
            self.counters.failed_reloads += 1
            self.logger.log(
                f"Reload abandoned: can not read {path} ({type(exc).__name__}: {exc}); "
                "the running configuration is unchanged",
                error=True,
            )
            return False
        self.status = DaemonStatus.RELOADING
        self.notifier.reloading()
        assert self._director is not None
        read = time.monotonic()
        try:
            await self._director.reload(new)
        except Exception as exc:
            self.counters.failed_reloads += 1
            self.logger.log(f"Reload failed in the engine: {exc!r}", error=True)
            self.status = DaemonStatus.RUNNING
            self.notifier.ready(self.summary())
            return False
        done = time.monotonic()
        self.logger.log(
            f"Reloaded {path} in {done - began:.2f} s "
            f"(reading {read - began:.2f} s, kernel table {done - read:.2f} s)"
        )
        old, self.config = self.config, new
        await self.instances.reload(old.globals.execute, new.globals.execute)
        self.counters.reloads += 1
        self.alerts.set_config(new)
        self.logger.reconfigure(logfile=new.globals.logfile, supervised=new.globals.supervised)
        self._index_monitorfiles()
        self._watch.remember()
        self.status = DaemonStatus.RUNNING
        self.pulse.beat(force=True)
        self.notifier.ready(self.summary())
        return True

    # --- stop ------------------------------------------------------------------------------

    async def _shutdown(self, *, purge: bool) -> None:
        self.status = DaemonStatus.STOPPING
        self.notifier.stopping(f"stopping ({self.stop_reason})")
        if purge:
            await self.instances.command(self.config.globals.execute, "stop")
        if self._director is not None:
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await self._director.stop()
            except TimeoutError:
                self.logger.log(
                    f"ERROR: the engine did not stop within {STOP_TIMEOUT:g} s", error=True
                )
            except Exception as exc:
                self.logger.log(f"ERROR: stopping the engine failed: {exc!r}", error=True)
        with contextlib.suppress(Exception):
            await self.alerts.drain(5.0)
        self.pulse.close()  # no trailing beat after this
        self._writer.close(2.0)  # flush (bounded); nothing is written after this
        # A clean stop removes the pulse and the state file: a stopped director (the passive
        # node of a pair) has no pulse, which check_ldirectord_pulse -i accepts; a crashed or
        # killed one leaves a pulse whose pid is dead, which the plugin reports as CRITICAL.
        for path in (self.options.state_file, self.options.pulse_file):
            with contextlib.suppress(OSError):
                os.unlink(path)


def starting_line(foreground: bool) -> str:
    if foreground:
        return f"Starting {LEGACY_VERSION_LINE} with pid: {os.getpid()}"
    return f"Starting {LEGACY_VERSION_LINE} as daemon"
