"""The Director: config + checks + health + kernel, kept in agreement. The daemon's engine.

Owns the engine's lifecycle (start, reload, stop), the members' health (engine/members.py,
fed by the scheduler through the pure state machine), and the one path every kernel change
takes: desired table (engine/desired.py) diffed against our mirror of the kernel
(engine/reconcile.py), run by the one Applier (engine/applier.py: deadline per backend call,
re-dump and re-plan on errors) under one lock, from start(), reload(), stop() and the
background apply loop, which coalesces health changes and never lets an error end it.

Start-up (reference §3.6, with one deliberate change): the kernel table is read; reals of
configured services found there with weight > 0 are taken as up (ldirectord's forced up);
every other real is left exactly as the kernel holds it until its own first check (a restart
never flaps a working table, and a real enters the table only after a successful check); the
services are added or edited (only when different), unknown reals of configured services are
purged. Reload is the same path, plus: health and check tasks survive for reals whose check is
unchanged, services dropped from the config are drained and deleted.

fallbackcommand is run by the engine (engine/fallback.py), not left to an event.

Knows nothing about pid files, signals, logging setup or the pulse: those hang off EventSink.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable

from ldirectord.checks.base import CheckTarget, Outcome
from ldirectord.config.model import (
    CheckType,
    Config,
    DaemonStatus,
    Method,
    RealServer,
    VirtualService,
)
from ldirectord.engine.applier import Applier
from ldirectord.engine.desired import (
    DesiredService,
    MemberKey,
    desired_service,
    member_key,
    service_key,
)
from ldirectord.engine.events import EventSink
from ldirectord.engine.fallback import FallbackCommands, fallback_command_line
from ldirectord.engine.gcpolicy import GcPolicy
from ldirectord.engine.maintenance import MaintenanceDir
from ldirectord.engine.members import Member, members_of, policy_for, probe_for
from ldirectord.engine.reconcile import Planned, Tag, diff_service, drain_service
from ldirectord.engine.scheduler import ProbeKey, Scheduler, ensure_fd_limit, fd_weight
from ldirectord.engine.snapshot import DirectorSnapshot, RealSnapshot, VirtualSnapshot
from ldirectord.forwarding.base import AddDest, Backend, Dest, EditDest, KernelTable, ServiceKey
from ldirectord.forwarding.dryrun import DryRunBackend
from ldirectord.health.machine import (
    Event,
    RecheckSoon,
    ResetSoftFailures,
    SoftFailure,
    State,
    WentDown,
    WentUp,
    step,
)

#: Seconds before the applier retries a reconcile that kept failing.
RETRY_DELAY = 2.0
#: The kernel table is re-read every 5 checkintervals, at least 10 s and at most 60 s apart,
#: and what someone else changed in a service we manage is put back by the reconciler.
VERIFY_FACTOR, VERIFY_MIN, VERIFY_MAX = 5.0, 10.0, 60.0


def verify_interval(config: Config) -> float:
    """Seconds between two re-reads of the kernel table (a pure function of the config)."""
    return min(VERIFY_MAX, max(VERIFY_MIN, VERIFY_FACTOR * config.globals.checkinterval))


CheckFn = Callable[[CheckTarget], Awaitable[Outcome]]


class Director:
    def __init__(
        self,
        config: Config,
        backend: Backend,
        events: EventSink,
        *,
        check: CheckFn | None = None,
        clock: Callable[[], float] = time.monotonic,
        raise_fd_limit: bool = True,
        tune_gc: bool = False,
    ) -> None:
        from ldirectord.checks import run

        trusted = check is None or check is run  # run() already enforces the deadline
        if check is None:
            check = run
        self.status = DaemonStatus.STARTING
        self._config = config
        self._events = events
        self._clock = clock
        self._raise_fd_limit = raise_fd_limit
        self._members: dict[MemberKey, Member] = {}
        #: the members each check feeds (objects, not keys: looked up once per check)
        self._by_probe: dict[ProbeKey, list[Member]] = {}
        self._desired: dict[ServiceKey, DesiredService] = {}
        self._dirty: set[ServiceKey] = set()
        #: services whose desired entry _install just computed, with no health change since:
        #: the plan right after (start-up, reload) uses it once instead of computing it again
        self._just_installed: set[ServiceKey] = set()
        self._reconciling = False
        self._virtuals: dict[ServiceKey, VirtualService] = {}
        self._layout: list[tuple[VirtualService, ServiceKey, tuple[Member | None, ...]]] = []
        self._by_service: dict[ServiceKey, list[MemberKey]] = {}
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._reload_lock = asyncio.Lock()
        self._apply_task: asyncio.Task[None] | None = None
        self._verify_task: asyncio.Task[None] | None = None
        #: times the kernel table was found changed behind our back (and put back)
        self.foreign_changes = 0
        self._awaiting_first: set[ProbeKey] = set()
        self._first_done = asyncio.Event()
        self._fallback = FallbackCommands(self._log)
        self._applier = Applier(backend, on_applied=self._applied, log=self._log)
        self.sink_errors = 0
        #: the daemon's garbage-collector policy (engine/gcpolicy.py); off for tests and tools
        self._gc = GcPolicy() if tune_gc else None
        maint = config.globals.maintenancedir
        self._maintenance = MaintenanceDir(maint) if maint else None
        self._scheduler = Scheduler(
            check,
            self._deliver,
            maintenance=self._maintenance,
            on_error=self._log,
            guard=not trusted,
        )

    # --- public API ----------------------------------------------------------------------

    @property
    def config(self) -> Config:
        return self._config

    @property
    def scheduler(self) -> Scheduler:
        return self._scheduler

    async def start(self) -> None:
        """Dump the kernel, reconcile (status STARTING), start one task per unique check.

        Returns after the initial reconcile. Raises BackendError (or TimeoutError) only when
        the table cannot be read at all; a change the kernel refuses is retried later.
        """
        self.status = DaemonStatus.STARTING
        if self._gc is not None:
            self._gc.apply()
        actual = await self._applier.dump()
        self._install(self._config, members_of(self._config), actual)
        async with self._lock:
            await self._reconcile(set(self._desired), (), Tag.START)
        self._start_probes()
        self._apply_task = asyncio.create_task(self._apply_loop(), name="ldirectord applier")
        self._verify_task = asyncio.create_task(self._verify_loop(), name="ldirectord verifier")
        self._wake.set()  # whatever the initial reconcile could not do is retried at once

    async def wait_first_checks(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """True once every check has had its first outcome and the result is in the kernel."""
        try:
            async with asyncio.timeout(timeout):
                await self._first_done.wait()
        except TimeoutError:
            return False
        return True

    async def reload(self, config: Config) -> None:
        """Swap to ``config``: unchanged checks keep health and tasks; only the difference
        reaches the kernel; services dropped from the config are drained and deleted."""
        async with self._reload_lock:
            await self._reload(config)

    async def _reload(self, config: Config) -> None:
        previous = self.status
        self.status = DaemonStatus.RELOADING
        try:
            self._set_maintenance(config)
            actual = await self._applier.dump()
            old_services = list(self._desired)  # config order
            new_members = members_of(config, self._members)
            for key, member in new_members.items():
                old = self._members.get(key)
                if old is not None and old.probe == member.probe and old.policy == member.policy:
                    member.health, member.last_outcome = old.health, old.last_outcome
                    member.last_change = old.last_change
            self._install(config, new_members, actual, keep=True)
            managed = [k for k in old_services if k not in self._desired]
            async with self._lock:
                await self._reconcile(set(self._desired), managed, Tag.START)
            self._start_probes()
            self._wake.set()
        finally:
            starting = previous is DaemonStatus.STARTING and not self._first_done.is_set()
            self.status = DaemonStatus.STARTING if starting else DaemonStatus.RUNNING

    async def stop(self) -> None:
        """Cancel checks; purge what cleanstop=yes virtuals hold; leave the rest."""
        self.status = DaemonStatus.STOPPING
        await self._scheduler.close()
        for task in (self._verify_task, self._apply_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._apply_task = self._verify_task = None
        cleanstop = list(
            dict.fromkeys(service_key(v) for v in self._config.virtuals if v.cleanstop)
        )
        async with self._lock:
            for key in cleanstop:
                self._desired.pop(key, None)
            await self._reconcile(set(), cleanstop, Tag.STOP)
        await self._fallback.finish()
        if self._maintenance is not None:
            self._maintenance.close()
        if self._gc is not None:
            self._gc.restore()

    @property
    def backend_errors(self) -> int:
        """Backend calls that failed (each followed by a fresh dump and a new plan)."""
        return self._applier.errors

    @property
    def settled(self) -> bool:
        """No health change is waiting for the kernel and no reconcile is running."""
        return not self._dirty and not self._reconciling

    def snapshot(self) -> DirectorSnapshot:
        mirror = self._applier.table()
        virtuals = []
        for virtual, skey, members in self._layout:
            entry = mirror.services.get(skey)
            reals = []
            for real, m in zip(virtual.reals, members, strict=True):
                if m is None:
                    continue
                dest = entry.dests.get(m.key[1]) if entry is not None else None
                reals.append(
                    RealSnapshot(
                        real.address,
                        real.port,
                        dest.weight if dest is not None else None,
                        m.health.up,
                        m.health.state.value,
                        m.last_outcome,
                        m.last_change,
                    )
                )
            want = self._desired.get(skey)
            virtuals.append(
                VirtualSnapshot(
                    virtual.name,
                    virtual.protocol.value,
                    sum(r.up for r in reals),
                    len(reals),
                    bool(want and want.fallback_active),
                    tuple(reals),
                )
            )
        return DirectorSnapshot(self.status, self._scheduler.stats.completed, tuple(virtuals))

    # --- state ----------------------------------------------------------------------------

    def _set_maintenance(self, config: Config) -> None:
        path = config.globals.maintenancedir
        current = self._maintenance.path if self._maintenance is not None else None
        if path != current:
            if self._maintenance is not None:
                self._maintenance.close()
            self._maintenance = MaintenanceDir(path) if path else None
            self._scheduler.maintenance = self._maintenance

    def _install(
        self,
        config: Config,
        members: dict[MemberKey, Member],
        actual: KernelTable,
        keep: bool = False,
    ) -> None:
        """Make ``config`` current (synchronously: no await, so the swap is atomic)."""
        for key, member in members.items():
            if keep and member.health.state is not State.UNKNOWN:
                continue
            entry = actual.services.get(key[0])
            dest = entry.dests.get(key[1]) if entry is not None else None
            off = member.virtual.check.checktype is CheckType.OFF
            if dest is not None and dest.weight > 0 and not off:
                member.health, _ = step(member.health, Event.FORCE_UP, member.policy)
        self._config = config
        self._members = members
        self._by_probe = {}
        for member in members.values():
            self._by_probe.setdefault(member.probe, []).append(member)
        self._virtuals = {service_key(v): v for v in config.virtuals}
        #: per virtual, in config order: its service key and its reals' members (the pulse
        #: takes a snapshot every second; looking members up by key was most of its cost)
        self._layout = [
            (v, service_key(v), tuple(members.get(member_key(v, r)) for r in v.reals))
            for v in config.virtuals
        ]
        self._by_service = {}
        for key in members:
            self._by_service.setdefault(key[0], []).append(key)
        self._desired = {}
        for virtual in config.virtuals:
            self._refresh_desired(virtual)
        self._just_installed = set(self._desired)

    def _refresh_desired(self, virtual: VirtualService) -> DesiredService:
        skey = service_key(virtual)
        health = {}
        fresh = []
        for key in self._by_service.get(skey, ()):
            m = self._members[key]
            health[key] = m.health
            if m.fresh_down:
                fresh.append(key)
        want = desired_service(self._config, virtual, health, fresh)
        self._desired[skey] = want
        return want

    def _start_probes(self) -> None:
        wanted = set(self._by_probe)
        new = wanted - self._scheduler.keys
        self._awaiting_first = (self._awaiting_first & wanted) | {
            k for k in new if k.target.kind is not CheckType.OFF
        }
        if new - {k for k in new if k.target.kind is CheckType.OFF}:
            self._first_done.clear()
        need = sum(fd_weight(k) for k in wanted)
        if fds := ensure_fd_limit(need) if self._raise_fd_limit else None:
            self._log(f"Warning: {fds}")
        self._scheduler.sync(wanted)
        self._check_first_done()

    def _check_first_done(self) -> None:
        if not self._awaiting_first and not self._dirty and not self._reconciling:
            if not self._first_done.is_set():
                if self.status is DaemonStatus.STARTING:
                    self.status = DaemonStatus.RUNNING
                if self._gc is not None:  # start-up (or a reload's new checks) done
                    self._gc.settle()
            self._first_done.set()

    # --- results --------------------------------------------------------------------------

    def _deliver(self, probe: ProbeKey, outcome: Outcome, forced: bool) -> bool:
        """A check finished: feed every real sharing it; return whether to re-check soon."""
        self._safe(self._events.check_done, probe.target, outcome)
        fed = self._by_probe.get(probe)
        if fed is None:
            return False  # a reload removed it
        event = (
            (Event.UP if outcome.up else Event.DOWN)
            if not forced
            else (Event.FORCE_UP if outcome.up else Event.FORCE_DOWN)
        )
        recheck = False
        changed = False
        for m in fed:
            before = m.health.state
            m.health, effects = step(m.health, event, m.policy)
            if m.health.state is not before:
                self._just_installed.clear()
            m.last_outcome = outcome
            for effect in effects:
                if isinstance(effect, RecheckSoon):
                    recheck = True
                elif isinstance(effect, SoftFailure):
                    self._log(
                        f"Soft failure real server: {m.real.address}:{m.real.port} "
                        f"({m.virtual.vid}) failure {effect.count}/{effect.limit}"
                    )
                elif isinstance(effect, ResetSoftFailures):
                    self._log(
                        f"Resetting soft failure count: {m.real.address}:{m.real.port} "
                        f"({m.virtual.vid})"
                    )
                elif isinstance(effect, WentUp | WentDown):
                    m.last_change = self._clock()
                    m.fresh_down = isinstance(effect, WentDown) and before is State.UNKNOWN
                    self._dirty.add(m.key[0])
                    changed = True
        if changed:
            self._wake.set()
        if self._awaiting_first and probe in self._awaiting_first:
            self._awaiting_first.discard(probe)
            if not self._awaiting_first:
                self._wake.set()
                self._check_first_done()
        return recheck

    # --- the applier ----------------------------------------------------------------------

    async def _apply_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                async with self._lock:
                    ok = await self._reconcile(set(self._dirty), (), Tag.START)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the loop must survive anything
                self._log(f"Error reconciling the IPVS table: {exc!r}")
                ok = False
            if ok:
                self._check_first_done()
            else:
                await asyncio.sleep(RETRY_DELAY)
                self._wake.set()

    async def _verify_loop(self) -> None:
        """Re-read the kernel now and then; a managed service changed by someone else (an
        admin's ipvsadm, another tool, a kernel that lost entries) is re-planned, so the table
        converges even when no health changes. ldirectord only ever looked at the kernel when
        a real changed state; entries it must leave alone (KEEP, quiesced reals deleted by
        hand with readdquiescent=no, services it never managed) are still left alone."""
        while True:
            await asyncio.sleep(verify_interval(self._config))
            try:
                await self.verify()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the loop must survive anything
                self._log(f"Error re-reading the IPVS table: {exc!r}")

    async def verify(self) -> bool:
        """Dump the kernel; when a managed service differs from our mirror, re-plan them all.
        True when something had changed behind our back."""
        async with self._lock:
            before = self._applier.table().services
            actual = (await self._applier.dump()).services
            changed = [k for k in self._desired if before.get(k) != actual.get(k)]
            if not changed:
                return False
            self.foreign_changes += 1
            self._log(
                f"IPVS table changed outside ldirectord for {', '.join(map(str, changed[:5]))}"
                f"{' ...' if len(changed) > 5 else ''}; reconciling"
            )
            self._dirty |= set(changed)
        self._wake.set()
        return True

    def _plan(
        self,
        keys: set[ServiceKey],
        managed: tuple[ServiceKey, ...],
        tag: Tag,
        mirror: DryRunBackend,
    ) -> list[Planned]:
        """The ops for ``keys`` against the mirror (health changes from now on are new work)."""
        self._dirty -= keys
        just_installed, self._just_installed = self._just_installed, set()
        plan: list[Planned] = []
        for key, cached in list(self._desired.items()):
            if key in keys:
                virtual = self._virtuals.get(key)
                if virtual is None or key in just_installed:
                    want = cached
                else:
                    want = self._refresh_desired(virtual)
                plan.extend(diff_service(want, mirror.entry(key), tag))
        for key in managed:
            have = mirror.entry(key)
            if key not in self._desired and have is not None:
                plan.extend(drain_service(have, tag))
        return plan

    async def _reconcile(
        self, keys: set[ServiceKey], managed: Iterable[ServiceKey], tag: Tag
    ) -> bool:
        """Bring ``keys`` (and the ``managed`` ones to drop) in line; True when done."""
        managed = tuple(managed)
        self._reconciling = True
        done = False
        try:
            done = await self._applier.run(lambda mirror: self._plan(keys, managed, tag, mirror))
            if done:
                self._after_reconcile(keys)
            return done
        finally:
            self._reconciling = False
            if not done:  # retried later by the applier, whatever went wrong
                self._dirty |= keys & set(self._desired)

    def _applied(self, planned: Planned, before: Dest | None) -> None:
        """Log an applied op; tell the sink about every real-level change (ldirectord sends
        an alert for each: reals, fallback servers, purged strangers)."""
        self._log(planned.message)
        if planned.dest is None:
            return
        m = self._members.get((planned.service, planned.dest))
        op = planned.op
        up = isinstance(op, AddDest | EditDest) and op.dest.weight > 0
        if m is not None:
            self._safe(
                self._events.real_changed, m.virtual, m.real, up, planned.message, m.last_outcome
            )
            return
        virtual = self._virtuals.get(planned.service)
        if virtual is None:
            return  # a service dropped from the config: its purge is only logged
        dest = op.dest if isinstance(op, AddDest | EditDest) else before
        method = dest.method if dest is not None else Method.GATE
        weight = dest.weight if dest is not None else 0
        real = RealServer(planned.dest.address, planned.dest.port, method, weight)
        self._safe(self._events.real_changed, virtual, real, up, planned.message, None)

    def _after_reconcile(self, keys: set[ServiceKey]) -> None:
        self._just_installed.clear()  # fresh_down changes below
        for key in (k for skey in keys for k in self._by_service.get(skey, ())):
            self._members[key].fresh_down = False
        for skey in keys:
            virtual = self._virtuals.get(skey)
            if virtual is None or virtual.check.checktype is CheckType.OFF:
                continue
            any_up = any(self._members[k].health.up for k in self._by_service.get(skey, ()))
            command = virtual.fallbackcommand or self._config.globals.fallbackcommand
            self._fallback.edge(virtual, any_up, command)

    # --- helpers ---------------------------------------------------------------------------

    def _log(self, message: str) -> None:
        self._safe(self._events.log, message)

    def _safe(self, fn: Callable[..., None], *args: object) -> None:
        try:
            fn(*args)
        except Exception:
            self.sink_errors += 1


__all__ = [
    "Director",
    "DirectorSnapshot",
    "RealSnapshot",
    "VirtualSnapshot",
    "fallback_command_line",
    "policy_for",
    "probe_for",
]
