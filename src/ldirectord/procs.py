"""Run a child process with a hard deadline, without ever leaving anything behind.

Owns spawning for external checks, fallbackcommand, callback and sendmail. Every child runs in
its own session (so its process group is its own); at the deadline the whole group gets SIGTERM,
then SIGKILL after a short grace; the child is always reaped; its output is read without ever
blocking (bounded, the rest drained and dropped), and a grandchild that keeps the pipe open
cannot make us wait. Knows nothing about checks or configs.

Reaping is ours, not asyncio's child watcher: a pidfd (Linux >= 5.3) tells the loop when the
child has exited; at that moment the child is a zombie, so its pid (and thus its process group
id) cannot be reused yet, and ``killpg`` of the group is race-free. Then we reap with
``Popen.poll``. Nothing in the process may call ``waitpid(-1)`` (it would steal our reaps).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: Output kept from a child (stdout and stderr merged); the rest is read and dropped.
OUTPUT_LIMIT = 4096
#: Seconds between SIGTERM and SIGKILL of a group that overran its deadline.
TERM_GRACE = 0.2
#: Seconds we wait for a SIGKILLed child to be reapable before handing it to a late reaper.
KILL_WAIT = 1.0
_READ_CHUNK = 65536


@dataclass(frozen=True, slots=True)
class ProcessResult:
    #: Exit status (negative = killed by that signal, as subprocess reports it); None if the
    #: child could not be reaped in time (it is then reaped later in the background).
    returncode: int | None
    timed_out: bool
    duration: float  # seconds from spawn to reaped (or given up)
    output: bytes  # the first OUTPUT_LIMIT bytes of stdout+stderr
    #: Why it could not run at all (exec failure); returncode is then 127, as a shell reports.
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


async def run_process(
    argv: str | Sequence[str],
    timeout: float,  # noqa: ASYNC109 - the deadline is the process's, not an await's
    *,
    shell: bool = False,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    output_limit: int = OUTPUT_LIMIT,
    kill_group_on_exit: bool = True,
) -> ProcessResult:
    """Run ``argv`` for at most ``timeout`` seconds; never raises for the child's failures.

    ``shell=True`` runs ``/bin/sh -c`` with ``argv`` (a string, or a sequence joined by spaces),
    as Perl's ``system`` does with a command line. ``kill_group_on_exit`` (default) also kills
    whatever the child left running in its process group after it exited normally; pass False
    for a command whose job is to start a daemon (it should detach with setsid anyway).
    Cancellation is honoured: the group is killed and the child reaped in the background.
    """
    args = _argv(argv, shell)
    start = time.monotonic()
    run = _Run(output_limit)
    try:
        popen = run.spawn(args, env, stdin)
    except OSError as exc:
        return ProcessResult(
            127, False, time.monotonic() - start, b"", f"{args[0]}: {exc.strerror or exc}"
        )
    timed_out = False
    try:
        timed_out = not await run.wait_exit(popen, timeout)
        if timed_out:
            _killpg(popen.pid, signal.SIGTERM)
            exited = await run.wait_exit(popen, TERM_GRACE)
            # Always: the leader may obey SIGTERM while its children ignore it. Until we reap
            # the leader (a zombie at worst), its pid and so the group id cannot be reused.
            _killpg(popen.pid, signal.SIGKILL)
            if not exited:
                await run.wait_exit(popen, KILL_WAIT)
        elif kill_group_on_exit:
            _killpg(popen.pid, signal.SIGKILL)  # the child is a zombie: its pgid is still ours
        returncode = popen.poll()
    except BaseException:
        _killpg(popen.pid, signal.SIGKILL)
        run.finish(popen)
        raise
    run.finish(popen)
    return ProcessResult(returncode, timed_out, time.monotonic() - start, run.output)


def _argv(argv: str | Sequence[str], shell: bool) -> list[str]:
    if shell:
        return ["/bin/sh", "-c", argv if isinstance(argv, str) else " ".join(argv)]
    if isinstance(argv, str):
        return [argv]
    if not argv:
        raise ValueError("run_process needs a command")
    return list(argv)


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class _Run:
    """The plumbing of one child: its pidfd, output pipe and stdin pipe on the running loop."""

    def __init__(self, output_limit: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.limit = output_limit
        self.chunks: list[bytes] = []
        self.kept = 0
        self.out_fd = -1
        self.in_fd = -1
        self.pending_in = b""
        self.pidfd = -1
        self.exited: asyncio.Event = asyncio.Event()

    @property
    def output(self) -> bytes:
        return b"".join(self.chunks)

    def spawn(
        self, args: list[str], env: Mapping[str, str] | None, stdin: bytes | None
    ) -> subprocess.Popen[bytes]:
        out_r, out_w = os.pipe()
        in_r, in_w = os.pipe() if stdin is not None else (subprocess.DEVNULL, -1)
        try:
            popen = subprocess.Popen(
                args,
                stdin=in_r,
                stdout=out_w,
                stderr=out_w,
                env=dict(env) if env is not None else None,
                start_new_session=True,
                close_fds=True,
            )
        except BaseException:
            for fd in (out_r, in_w):
                if fd >= 0:
                    os.close(fd)
            raise
        finally:
            os.close(out_w)
            if in_r != subprocess.DEVNULL:
                os.close(in_r)
        self.out_fd = out_r
        os.set_blocking(out_r, False)
        self.loop.add_reader(out_r, self._on_output)
        if stdin is not None:
            self.in_fd, self.pending_in = in_w, stdin
            os.set_blocking(in_w, False)
            self._on_writable()
        self._watch_exit(popen)
        return popen

    def _watch_exit(self, popen: subprocess.Popen[bytes]) -> None:
        try:
            self.pidfd = os.pidfd_open(popen.pid)
        except (AttributeError, OSError):  # no pidfd: poll instead (old kernel)
            self.pidfd = -1
            self.loop.create_task(self._poll_exit(popen))
            return
        self.loop.add_reader(self.pidfd, self._on_exit)

    def _on_exit(self) -> None:
        self.loop.remove_reader(self.pidfd)  # level-triggered: stop the wake-ups now
        self.exited.set()

    async def _poll_exit(self, popen: subprocess.Popen[bytes]) -> None:
        while not self.exited.is_set():
            # Peek without reaping (WNOWAIT): reaping must happen after killpg.
            try:
                info = os.waitid(os.P_PID, popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)  # noqa: ASYNC222
            except ChildProcessError:
                info = None
                self.exited.set()
            if info is not None:
                self.exited.set()
            await asyncio.sleep(0.01)

    async def wait_exit(self, popen: subprocess.Popen[bytes], timeout: float) -> bool:  # noqa: ASYNC109
        if self.exited.is_set():
            return True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, timeout)):
                await self.exited.wait()
        return self.exited.is_set()

    def _on_output(self) -> None:
        for _ in range(16):  # bounded per wake-up; the loop calls again while data remains
            try:
                data = os.read(self.out_fd, _READ_CHUNK)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._close_output()
                return
            room = self.limit - self.kept
            if room > 0:
                self.chunks.append(data[:room])
                self.kept += min(room, len(data))

    def _on_writable(self) -> None:
        try:
            written = os.write(self.in_fd, self.pending_in[:_READ_CHUNK])
        except BlockingIOError:
            written = 0
        except OSError as exc:  # EPIPE: the child does not read its input
            if exc.errno not in (errno.EPIPE, errno.EBADF):
                raise
            self._close_input()
            return
        self.pending_in = self.pending_in[written:]
        if not self.pending_in:
            self._close_input()
        else:
            self.loop.add_writer(self.in_fd, self._on_writable)

    def _close_input(self) -> None:
        if self.in_fd >= 0:
            self.loop.remove_writer(self.in_fd)
            os.close(self.in_fd)
            self.in_fd = -1

    def _close_output(self) -> None:
        if self.out_fd >= 0:
            self.loop.remove_reader(self.out_fd)
            os.close(self.out_fd)
            self.out_fd = -1

    def finish(self, popen: subprocess.Popen[bytes]) -> None:
        """Collect what is left in the pipe, close every fd, make sure the child is reaped."""
        if self.out_fd >= 0:
            self._on_output()  # what the child wrote just before exiting
        self._close_output()  # a grandchild holding the pipe open cannot keep us waiting
        self._close_input()
        if popen.returncode is None and popen.poll() is None:
            self._reap_later(popen)
        elif self.pidfd >= 0:
            self.loop.remove_reader(self.pidfd)
            os.close(self.pidfd)
            self.pidfd = -1

    def _reap_later(self, popen: subprocess.Popen[bytes]) -> None:
        """A child not reapable yet (killed but stuck in the kernel): reap it when it exits."""
        pidfd = self.pidfd
        if pidfd < 0:
            self.loop.create_task(_reap_polling(popen))
            return
        self.pidfd = -1

        def reap() -> None:
            if popen.poll() is not None:
                self.loop.remove_reader(pidfd)
                os.close(pidfd)

        self.loop.remove_reader(pidfd)
        self.loop.add_reader(pidfd, reap)


async def _reap_polling(popen: subprocess.Popen[bytes]) -> None:
    for _ in range(36000):  # an hour at most, then subprocess's own cleanup takes over
        if popen.poll() is not None:
            return
        await asyncio.sleep(0.1)
