"""Run a command inside a throwaway User-Mode Linux guest that has real IPVS.

Owns booting Debian's ``/usr/bin/linux.uml`` (package user-mode-linux) with the host root
read-only, throwaway writable layers over it, the working tree writable, and the command's
output, exit code and timeout carried back. Stdlib only: the kernel tests and ``uml-run`` use
it, and it must work before the project's own dependencies are installed.

How a run goes (see ../shared/docs/real-ipvs.md for the facts behind each step):
- an exchange directory under /dev/shm holds ``cmd`` (a sh script: cwd, environment, argv),
  ``mounts`` (host directories mounted writable in the guest) and, afterwards, ``rc``;
- UML starts pinned to one host CPU, in its own process group, with ``guest-init`` as PID 1
  and its consoles on pipes: tty1 = the command's stdout, tty2 = its stderr, con0 = the guest
  kernel console (kept for diagnostics, like UML's own chatter on its stdout);
- the guest runs the command under setsid, kills every process left when it exits (a
  background child holding the tty cannot hang the run), writes ``rc``, syncs, powers off;
- at the timeout the whole UML process group is killed and GuestTimeoutError raised.

Each guest has its own network and IPVS state, so parallel runs do not interfere. The host's
/tmp is not the guest's /tmp: share files through the working tree (mounted writable).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
GUEST_INIT = HERE / "guest-init"
UML_KERNEL = Path(os.environ.get("UML_KERNEL", "/usr/bin/linux.uml"))
UML_MODULES = Path("/usr/lib/uml/modules")
INSTALL_HINT = "apt-get install -y --no-install-recommends user-mode-linux kmod ipvsadm"

#: Boot arguments that cut ~1.3 s off a boot (measured, real-ipvs.md).
FAST_BOOT = ("quiet", "lpj=10000000", "pty.legacy_count=0", "initcall_blacklist=raid6_select_algo")
_KILL_GRACE = 5.0  # seconds to wait for UML and the output pipes after a kill


@dataclass(frozen=True, slots=True)
class GuestResult:
    returncode: int
    stdout: str
    stderr: str
    duration: float  # seconds, boot to power-off, as seen from the host
    console: str = ""  # guest kernel console and UML's own output, for diagnosis


class GuestError(RuntimeError):
    """The guest could not run the command (no harness, a boot failure, no exit code)."""

    def __init__(self, message: str, *, stdout: str = "", stderr: str = "", console: str = ""):
        self.stdout, self.stderr, self.console = stdout, stderr, console
        tail = console.strip()[-2000:]
        super().__init__(f"{message}\n--- guest console ---\n{tail}" if tail else message)


class GuestTimeoutError(GuestError):
    """The command did not finish within its timeout; UML was killed."""


def available() -> str | None:
    """None when guests can be started here, else why not (with the command that fixes it)."""
    if sys.platform != "linux":
        return "User-Mode Linux guests need a Linux host"
    missing = []
    if not os.access(UML_KERNEL, os.X_OK):
        missing.append(str(UML_KERNEL))
    elif _kernel_version() is None:
        missing.append(f"{UML_MODULES}/<version>")
    missing += [tool for tool in ("insmod", "modprobe", "ipvsadm") if _which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)}; install with: {INSTALL_HINT}"
    if shutil.which("taskset") is None:
        return "missing taskset (util-linux)"
    if not os.access("/dev/shm", os.W_OK):
        return "/dev/shm is not writable (the guest exchange directory lives there)"
    return None


def guest_python() -> str:
    """The interpreter to run inside the guest: this venv's python, never a pyenv shim.

    A venv's ``bin/python`` is a symlink to a real interpreter; running it by its venv path
    keeps the venv's site-packages. A pyenv shim is a shell script costing ~2 s per start.
    """
    venv_python = REPO_ROOT / ".venv" / "bin" / "python"
    for candidate in (venv_python, Path(sys.executable)):
        if candidate.exists() and _is_binary(candidate.resolve()):
            return str(candidate)
    return sys.executable


def run_in_guest(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    writable: Iterable[str | os.PathLike[str]] = (REPO_ROOT,),
    echo: bool = False,
    mem: str = "768M",
) -> GuestResult:
    """Boot a guest, run argv in it, return its exit code and output.

    env defaults to this process's environment, cwd to this process's cwd (both must exist in
    the guest: the host root is visible read-only). ``writable`` host directories are mounted
    read-write at the same path. ``echo`` copies the output to our stdout/stderr as it comes.
    Raises GuestTimeoutError after ``timeout`` seconds, GuestError when the harness fails.
    """
    reason = available()
    if reason is not None:
        raise GuestError(f"cannot start a User-Mode Linux guest: {reason}")
    if not argv:
        raise ValueError("empty argv")
    xchg = Path(tempfile.mkdtemp(prefix="uml-", dir="/dev/shm"))
    try:
        _write_exchange(xchg, argv, env, cwd, writable)
        return _boot(xchg, timeout=timeout, echo=echo, mem=mem)
    finally:
        shutil.rmtree(xchg, ignore_errors=True)


# --- internals -------------------------------------------------------------------------------


def _which(tool: str) -> str | None:
    return shutil.which(tool, path="/usr/sbin:/sbin:/usr/bin:/bin")


def _is_binary(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def _kernel_version() -> str | None:
    """The UML kernel's module directory name (one per installed user-mode-linux)."""
    try:
        versions = sorted(p.name for p in UML_MODULES.iterdir() if (p / "modules.dep").exists())
    except OSError:
        return None
    return versions[-1] if versions else None


def _check_path(path: str, what: str) -> str:
    # Paths travel through the guest's sh and mount options: keep them plain.
    if not path.startswith("/") or any(c.isspace() or c in ",\\'\"" for c in path):
        raise ValueError(f"{what} must be an absolute path without spaces or commas: {path!r}")
    return path


def _write_exchange(
    xchg: Path,
    argv: Sequence[str],
    env: Mapping[str, str] | None,
    cwd: str | os.PathLike[str] | None,
    writable: Iterable[str | os.PathLike[str]],
) -> None:
    environment = dict(os.environ if env is None else env)
    environment.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    environment.setdefault("HOME", "/root")
    workdir = os.fspath(cwd) if cwd is not None else os.getcwd()
    lines = [
        f"cd {shlex.quote(workdir)} || exit 126",
        "exec env -i \\",
        *(
            f"  {shlex.quote(f'{k}={v}')} \\"
            for k, v in sorted(environment.items())
            if "=" not in k
        ),
        "  " + " ".join(shlex.quote(a) for a in argv),
        "",
    ]
    (xchg / "cmd").write_text("\n".join(lines))
    mounts = [_check_path(str(Path(p).resolve()), "writable dir") for p in writable]
    (xchg / "mounts").write_text("".join(f"{m}\n" for m in mounts))


def _boot(xchg: Path, *, timeout: float, echo: bool, mem: str) -> GuestResult:
    umldir = xchg / "umldir"
    umldir.mkdir()
    (out_r, out_w), (err_r, err_w), (con_r, con_w) = os.pipe(), os.pipe(), os.pipe()
    cmdline = [
        "taskset", "-c", str(_pick_cpu()),
        str(UML_KERNEL), f"mem={mem}",
        "root=/dev/root", "rootfstype=hostfs", "rootflags=/", "ro",
        f"init={_check_path(str(GUEST_INIT), 'guest init')}",
        *FAST_BOOT,
        f"uml_dir={umldir}",
        "con=null", f"con0=null,fd:{con_w}", f"con1=null,fd:{out_w}", f"con2=null,fd:{err_w}",
        f"uml_xchg={_check_path(str(xchg), 'exchange dir')}",
    ]  # fmt: skip
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            cmdline,
            stdin=subprocess.DEVNULL,
            stdout=con_w,
            stderr=subprocess.STDOUT,
            pass_fds=(out_w, err_w, con_w),
            start_new_session=True,
        )
    finally:
        for fd in (out_w, err_w, con_w):
            os.close(fd)
    sinks = (sys.stdout.buffer, sys.stderr.buffer) if echo else (None, None)
    readers = [
        _Reader(out_r, sinks[0]),
        _Reader(err_r, sinks[1]),
        _Reader(con_r, sys.stderr.buffer if os.environ.get("UML_VERBOSE") else None),
    ]
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        _kill_group(proc)
    duration = time.monotonic() - started
    stdout, stderr, console = (r.finish() for r in readers)
    if timed_out:
        raise GuestTimeoutError(
            f"guest command timed out after {timeout} s",
            stdout=stdout, stderr=stderr, console=console,
        )  # fmt: skip
    rc_file = xchg / "rc"
    init_log = xchg / "init.log"
    if init_log.exists() and init_log.stat().st_size:
        console += "\n--- guest-init errors ---\n" + init_log.read_text(errors="replace")
    try:
        returncode = int(rc_file.read_text().strip())
    except (OSError, ValueError):
        raise GuestError(
            f"the guest reported no exit code (UML exited with {proc.returncode})",
            stdout=stdout, stderr=stderr, console=console,
        ) from None  # fmt: skip
    return GuestResult(returncode, stdout, stderr, duration, console)


def _pick_cpu() -> int:
    """One host CPU for the whole guest (unpinned UML is 5-7x slower). UML_CPU overrides."""
    cpus = sorted(os.sched_getaffinity(0))
    wanted = os.environ.get("UML_CPU")
    if wanted is not None and int(wanted) in cpus:
        return int(wanted)
    return cpus[os.getpid() % len(cpus)]


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):  # a SIGKILLed process always dies
        proc.wait(timeout=_KILL_GRACE)


class _Reader:
    """Drains one pipe on a thread, optionally copying it through as it arrives."""

    def __init__(self, fd: int, sink: BinaryIO | None) -> None:
        self._fd, self._sink = fd, sink
        self._chunks: list[bytes] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while chunk := os.read(self._fd, 65536):
            self._chunks.append(chunk)
            if self._sink is not None:
                self._sink.write(chunk)
                self._sink.flush()

    def finish(self) -> str:
        # Every writer is gone once UML's process group is dead; bounded anyway.
        self._thread.join(timeout=_KILL_GRACE)
        if not self._thread.is_alive():
            os.close(self._fd)
        return b"".join(self._chunks).decode(errors="replace")
