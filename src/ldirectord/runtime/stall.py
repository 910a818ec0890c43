"""Loop-stall detector: a daemon thread that notices the event loop has stopped turning.

The loop re-arms a ``call_later`` tick that stores ``time.monotonic()``; the thread wakes a few
times per threshold and, when the last tick is older than ``threshold`` seconds, logs the stack
of the main thread (``sys._current_frames()``), once per stall, and a line when the loop turns
again. This is diagnosis only: the pulse (which stops beating) is the alarm.

Test-only hook: when the environment variable ``LDIRECTORD_TEST_STALL`` holds a number of
seconds, SIGUSR2 makes the loop block in ``time.sleep`` for that long, so the fault suite can
prove that the detector and the pulse react. Without the variable SIGUSR2 is left alone.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable

TEST_STALL_ENV = "LDIRECTORD_TEST_STALL"


class StallDetector:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        log: Callable[[str], None],
        *,
        threshold: float = 5.0,
        main_thread_id: int | None = None,
    ) -> None:
        self._loop = loop
        self._log = log
        self.threshold = threshold
        self._tick_every = max(0.05, threshold / 5)
        self._main_id = main_thread_id if main_thread_id is not None else threading.get_ident()
        self.last_tick = time.monotonic()
        self.stalls = 0
        self._reported = False
        self._stop = threading.Event()
        self._handle: asyncio.TimerHandle | None = None
        self._thread = threading.Thread(target=self._watch, name="ldirectord-stall", daemon=True)

    def start(self) -> None:
        self._tick()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._handle is not None:
            self._handle.cancel()
        self._thread.join(1.0)

    def _tick(self) -> None:
        self.last_tick = time.monotonic()
        self._handle = self._loop.call_later(self._tick_every, self._tick)

    def _watch(self) -> None:
        while not self._stop.wait(self._tick_every):
            age = time.monotonic() - self.last_tick
            if age >= self.threshold and not self._reported:
                self._reported = True
                self.stalls += 1
                self._log(
                    f"Event loop stalled: it has not run for {age:.1f} s; "
                    f"main thread stack:\n{self.main_stack()}"
                )
            elif age < self.threshold and self._reported:
                self._reported = False
                self._log("Event loop running again after a stall")

    def main_stack(self) -> str:
        frame = sys._current_frames().get(self._main_id)
        if frame is None:
            return "  (main thread not found)"
        return "".join(traceback.format_stack(frame)).rstrip()


def install_test_stall_hook(
    loop: asyncio.AbstractEventLoop, log: Callable[[str], None], env: dict[str, str] | None = None
) -> bool:
    """Test only: SIGUSR2 blocks the loop for ``$LDIRECTORD_TEST_STALL`` seconds."""
    value = (os.environ if env is None else env).get(TEST_STALL_ENV, "")
    try:
        seconds = float(value)
    except ValueError:
        return False
    if seconds <= 0:
        return False

    def block() -> None:
        log(f"TEST HOOK: blocking the event loop for {seconds:g} s ({TEST_STALL_ENV})")
        time.sleep(seconds)  # deliberately blocking: this is the fault being injected

    loop.add_signal_handler(signal.SIGUSR2, block)
    return True
