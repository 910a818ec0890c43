"""The applier: the one way a change reaches the kernel.

Owns how ops are applied: in the order the reconciler gave, in batches (the IPVS backend sends
a batch in few netlink datagrams), each backend call under a deadline; a mirror of the kernel
table (an in-memory DryRunBackend) that follows every op we apply, so plans are computed without dumping the kernel each time; and what happens when
the kernel refuses something (someone changed the table behind our back, netlink hiccups):
the table is dumped again and the plan recomputed, a bounded number of times. It never raises
for a backend failure; it returns False and the caller retries later.

It knows nothing about health or configs: the caller passes a function that plans against the
mirror.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ldirectord.engine.reconcile import Planned
from ldirectord.errors import BackendError
from ldirectord.forwarding.base import Backend, Dest, KernelTable
from ldirectord.forwarding.dryrun import DryRunBackend

#: Deadline of one backend apply (plus PER_OP_S per op of a batch), and of one dump (seconds).
BACKEND_DEADLINE = 5.0
PER_OP_S = 0.01  # above the IPVS backend's own allowance (forwarding/ipvs.py)
#: Ops per backend call: a 10,000-real fill is 20 batches, each under its own deadline.
BATCH = 512
DUMP_DEADLINE = 40.0  # above the IPVS backend's own (30 s): a 10,000-real dump in a slow guest
#: Plans tried (each but the first after a fresh dump) before giving up for now.
APPLY_ATTEMPTS = 3

#: plan(mirror) -> the ops to run, computed against the mirror of the kernel
Plan = Callable[[DryRunBackend], list[Planned]]
#: on_applied(planned, dest before the op or None)
OnApplied = Callable[[Planned, Dest | None], None]


class Applier:
    def __init__(
        self, backend: Backend, *, on_applied: OnApplied, log: Callable[[str], None]
    ) -> None:
        self._backend = backend
        self._on_applied = on_applied
        self._log = log
        self.mirror: DryRunBackend | None = None
        self.errors = 0

    def table(self) -> KernelTable:
        """Our mirror of the kernel table (empty before the first dump)."""
        return self.mirror.table if self.mirror is not None else KernelTable()

    async def dump(self) -> KernelTable:
        """Read the kernel table (with a deadline) and reset the mirror to it."""
        async with asyncio.timeout(DUMP_DEADLINE):
            actual = await self._backend.dump()
        self.mirror = DryRunBackend(actual)
        return actual

    async def run(self, plan: Plan) -> bool:
        """Apply ``plan(mirror)``; on a failure dump again and re-plan. True when all done."""
        for attempt in range(APPLY_ATTEMPTS):
            try:
                if self.mirror is None or attempt > 0:
                    await self.dump()
                mirror = self.mirror
                assert mirror is not None
                planned = plan(mirror)
                for start in range(0, len(planned), BATCH):
                    await self._apply_batch(mirror, planned[start : start + BATCH])
            except (BackendError, TimeoutError, OSError) as exc:
                self.errors += 1
                why = str(exc) or type(exc).__name__
                self._log(
                    f"IPVS update failed ({why}); re-reading the table (attempt {attempt + 1})"
                )
                continue
            return True
        return False

    async def _apply_batch(self, mirror: DryRunBackend, batch: list[Planned]) -> None:
        """One batch to the backend; what it applied follows into the mirror (in order), then
        its first failure is raised."""
        async with asyncio.timeout(BACKEND_DEADLINE + PER_OP_S * len(batch)):
            results = await self._backend.apply_batch([p.op for p in batch])
        failure: BackendError | None = None
        for planned, result in zip(batch, results, strict=True):
            if result is not None:
                failure = failure or result
                continue
            before = (
                mirror.dest(planned.service, planned.dest) if planned.dest is not None else None
            )
            mirror.apply_sync(planned.op)
            self._on_applied(planned, before)
        if failure is not None:
            raise failure
