"""The garbage-collector policy of a daemon that holds thousands of long-lived check tasks.

Owns two process-wide settings, applied only when the daemon asks (``Director(tune_gc=True)``;
tests and libraries never get them by accident):

- **Thresholds**: CPython's defaults (700, 10, 10) run a full collection about once a second
  with 10,000 reals checked every second, because every check leaves objects that live one
  interval (its timer and wake-up future) and so reach the oldest generation; each full pass
  walks every object of the daemon (~500,000 at 10,000 reals: 150–300 ms of CPU on the
  2-core test machine) and finds nothing to free. With ``THRESHOLDS`` a young collection comes
  about once a second at 10,000 checks/s (a few ms each), a middle one every ~10 s and a full
  one every few minutes, walking only what was created since the freeze.
- **Freeze** (``settle``): once start-up (or a reload) is done, one full collection, then
  ``gc.freeze()`` moves every surviving object (config, members, tasks, kernel mirror) out of
  the collector's sight; later full collections walk only what was created since. Frozen
  objects are still freed by reference counting; ``settle`` unfreezes first, so garbage of an
  old config is collected at the next reload.

Knows nothing about the engine; the Director calls ``apply``, ``settle`` and ``restore``.
"""

from __future__ import annotations

import gc

#: (young allocations, young collections per middle one, middle per full). See the module doc
#: and docs/engine.md (Performance) for the measurements behind them.
THRESHOLDS = (50_000, 10, 20)


class GcPolicy:
    """Apply the thresholds once, settle (collect + freeze) after start-up and each reload,
    restore the previous state on stop."""

    def __init__(self) -> None:
        self._saved: tuple[int, int, int] | None = None

    @property
    def active(self) -> bool:
        return self._saved is not None

    def apply(self) -> None:
        if self._saved is None:
            self._saved = gc.get_threshold()
            gc.set_threshold(*THRESHOLDS)

    def settle(self) -> None:
        """Full collection now (a pause of a fraction of a second at 10,000 reals, once), then
        freeze what survived."""
        if self._saved is None:
            return
        gc.unfreeze()
        gc.collect()
        gc.freeze()

    def restore(self) -> None:
        if self._saved is not None:
            gc.unfreeze()
            gc.set_threshold(*self._saved)
            self._saved = None
