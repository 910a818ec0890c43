"""The pulse: a file beside the pid file whose mtime moves whenever the daemon makes progress.

Owns when the pulse beats (at most once a second, on check progress; the daemon also calls it
once per checkinterval when there is nothing to check), the systemd watchdog ping (sent from
the same call, on the event loop, never from a side thread) and the atomic writes of the pulse
and the richer state file that ``status`` reads.

No progress is left unpublished: a beat suppressed by the once-a-second throttle schedules one
trailing beat at ``last_beat + min_interval`` on the loop (at most one pending), and a check's
beat is taken once the engine has applied that check's outcome (``progress``), so the pulse's
"reals up" lags the engine's view by at most about a second. The content is rendered when the
beat happens, never when it is scheduled. ``close`` cancels what is pending (the daemon calls it
before it removes the pulse at stop).

The file contents are encoded by the caller (``ldirectord.pulse_format`` owns schema 1); this
module only decides when and writes. The write itself (temp file in the same directory, fsync,
rename) runs on one writer thread so a slow disk never blocks the event loop; when a write is
still in flight the newer content replaces the queued one (latest wins). A frozen loop stops
the beats, which is the point.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable

from ldirectord.runtime.sdnotify import Notifier

ERROR_EVERY = 60.0  # seconds between two log lines about a failing pulse write
#: The state file may cost at most 1/STATE_BUDGET of one CPU: after an encoding that took d
#: seconds the next one waits STATE_BUDGET * d (at 10,000 reals ~0.2 s of JSON, so every
#: ~2 s instead of every beat). The pulse itself is never held back; forced beats (start,
#: reload, stop) always write the state too.
STATE_BUDGET = 10.0

#: What a file's content is: bytes, or a function the writer thread calls to render them (so
#: encoding a large state file never runs on the event loop; the caller captures an immutable
#: snapshot on the loop and hands over the rendering).
Content = bytes | Callable[[], bytes]


def check_writable(path: str, what: str = "pulse file") -> str | None:
    """Prove at start-up that ``path`` can be written atomically; return the error otherwise."""
    directory = os.path.dirname(os.path.abspath(path)) or "/"
    if not os.path.isdir(directory):
        return f"cannot write the {what} {path}: directory {directory} does not exist"
    probe = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.probe")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return f"cannot write the {what} {path}: {exc.strerror or exc}"
    if os.path.isdir(path):
        return f"cannot write the {what} {path}: it is a directory"
    return None


def write_atomic(path: str, data: bytes, mode: int = 0o644) -> None:
    tmp = os.path.join(
        os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.{os.getpid()}.tmp"
    )
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _render(fn: Callable[[], bytes]) -> bytes:
    try:
        return fn()
    except Exception as exc:  # a rendering bug must reach the loud error path, not kill the thread
        raise OSError(f"cannot render the content: {exc!r}") from exc


class FileWriter:
    """One daemon thread that writes files atomically; the newest content per path wins."""

    def __init__(self, on_error: Callable[[str, OSError], None]) -> None:
        self._on_error = on_error
        self._pending: dict[str, Content] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._busy = False
        self.written = 0
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name="ldirectord-writer", daemon=True)

    def submit(self, path: str, data: Content) -> None:
        """Queue ``data`` for ``path`` (the thread starts with the first submit)."""
        with self._cond:
            if self._closed:
                return
            if not self._thread.is_alive() and self._thread.ident is None:
                self._thread.start()
            self._pending[path] = data
            self._cond.notify()

    def flush(self, timeout: float) -> bool:
        """Wait (bounded) until everything submitted so far is written."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float = 2.0) -> None:
        self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread.ident is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending and self._closed:
                    return
                path, data = next(iter(self._pending.items()))
                del self._pending[path]
                self._busy = True
            try:
                write_atomic(path, data if isinstance(data, bytes) else _render(data))
                self.written += 1
            except OSError as exc:
                self.failures += 1
                self._on_error(path, exc)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


class Pulse:
    """Decides when to beat and pings the watchdog; content comes from ``render``."""

    def __init__(
        self,
        path: str,
        *,
        writer: FileWriter,
        notifier: Notifier,
        render: Callable[[float], bytes],
        state_path: str | None = None,
        render_state: Callable[[float], Content] | None = None,
        min_interval: float = 1.0,
    ) -> None:
        self.path = path
        self.state_path = state_path
        self._writer = writer
        self._notifier = notifier
        self._render = render
        self._render_state = render_state
        self.min_interval = min_interval
        self.last_beat = 0.0  # monotonic time of the last beat
        self.beats = 0
        self.scheduled = 0  # beats sent from the loop (progress, or held back by the throttle)
        #: the one beat scheduled on the loop (trailing or after the current callback), if any
        self._pending: asyncio.Handle | None = None
        self._closed = False
        self.state_cost = 0.0  # seconds the last state encoding took (on the writer thread)
        self._state_next = 0.0  # monotonic time before which a state write is skipped
        self.state_skipped = 0

    def due(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return now - self.last_beat >= self.min_interval

    def beat(self, *, force: bool = False) -> bool:
        """Beat now unless one happened less than ``min_interval`` ago (``force``: always).

        A suppressed beat is not lost: one trailing beat is scheduled at ``last_beat +
        min_interval`` (when called on a running loop; at most one pending)."""
        now = time.monotonic()
        if not force and not self.due(now):
            self._schedule(now)
            return False
        self._beat(now, force=force)
        return True

    def progress(self) -> None:
        """A check completed: beat once the caller's callback has returned (the engine applies
        the outcome right after telling us), or at ``last_beat + min_interval`` when throttled.

        Cheap on the hot path: with a beat already pending it only returns."""
        if self._pending is None and not self._closed:
            self._schedule(time.monotonic())

    def close(self) -> None:
        """No beat after this one (the pulse is about to be removed): cancel what is pending."""
        self._closed = True
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    def _schedule(self, now: float) -> None:
        if self._pending is not None or self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on a loop (tools, tests): the next call beats
            return
        delay = self.last_beat + self.min_interval - now
        if delay <= 0:
            self._pending = loop.call_soon(self._fire)
        else:
            self._pending = loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        """The scheduled beat (any beat in between cancelled it, so it is always wanted)."""
        self._pending = None
        if not self._closed:
            self.scheduled += 1
            self._beat(time.monotonic())

    def _beat(self, now: float, *, force: bool = False) -> None:
        if self._pending is not None:  # this beat carries everything up to now
            self._pending.cancel()
            self._pending = None
        self.last_beat = now
        self.beats += 1
        wall = time.time()
        self._writer.submit(self.path, self._render(wall))
        if self.state_path is not None and self._render_state is not None:
            if force or now >= self._state_next:
                self._writer.submit(self.state_path, self._timed(self._render_state(wall)))
                # until this encoding ends and sets the real time, hold off by the last cost
                self._state_next = now + STATE_BUDGET * self.state_cost
            else:
                self.state_skipped += 1
        self._notifier.watchdog()

    def _timed(self, content: Content) -> Content:
        """content, measuring how long its encoding takes (for the state file's budget)."""
        if not callable(content):
            return content

        def render() -> bytes:
            began = time.perf_counter()
            try:
                return content()
            finally:
                self.state_cost = cost = time.perf_counter() - began
                # the next encoding starts STATE_BUDGET * cost after this one started
                self._state_next = max(
                    self._state_next, time.monotonic() + (STATE_BUDGET - 1) * cost
                )

        return render


class ErrorGate:
    """Rate-limits a loud, repeated error message (one line per ``every`` seconds per key)."""

    def __init__(self, log: Callable[[str], None], every: float = ERROR_EVERY) -> None:
        self._log = log
        self._every = every
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, key: str, message: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -1e18) < self._every:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return
            self._last[key] = now
            skipped = self._suppressed.pop(key, 0)
        suffix = f" ({skipped} more since the last report)" if skipped else ""
        self._log(message + suffix)
