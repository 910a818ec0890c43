"""check_ldirectord_pulse: the Nagios/Icinga plugin that watches ldirectord's pulse file.

Owns the plugin's command line, its judgement and its output; reads acquire → evaluate →
present and fails safe to UNKNOWN. It knows the pulse only through ``ldirectord.pulse_format``
and must not import anything else from the package: it runs for every service check, so only
the standard library (and cheap parts of it) may be on its import path. ``pulse_format`` (about
2 ms, no ``json`` or ``dataclasses``) is imported only when the pulse has content.

Exit codes are 0/1/2/3 and nothing else: bad arguments, ``--help`` and ``--version`` exit 3
(the Monitoring Plugins rule), and every exception becomes ``UNKNOWN: internal error``.
"""

from __future__ import annotations

import os
import stat
import sys
import time

from ldirectord import __version__
from ldirectord.nagios.options import HELP, PROG, USAGE, Options, UsageError, parse_args

TYPE_CHECKING = False
if TYPE_CHECKING:  # no ``typing`` import at run time: it costs milliseconds on every check
    from ldirectord.pulse_format import PulseDoc

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATE_NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
# Which state wins when several findings are combined: a judged problem beats "could not judge".
_RANK = {OK: 0, UNKNOWN: 1, WARNING: 2, CRITICAL: 3}

#: An mtime up to this far ahead of our clock is "now" (coarse file system clocks, NFS skew).
FUTURE_TOLERANCE = 1.0
#: A schema-1 pulse is a few hundred bytes per virtual; anything beyond this is not a pulse.
MAX_PULSE_BYTES = 4 * 1024 * 1024
#: How many virtual names one status line names before it says "and N more".
MAX_NAMED = 3

# ---------------------------------------------------------------------------------------------
# Acquire: the only part that does IO.


class Observation:
    """What acquire() saw: ``problem`` ("missing" or "unusable"), or the pulse's mtime."""

    __slots__ = ("data", "detail", "mtime", "now", "path", "pid_alive", "problem")

    def __init__(self, path: str) -> None:
        self.path = path
        self.problem: str | None = None
        self.detail = ""
        self.mtime = 0.0
        self.now = 0.0
        self.data = b""
        self.pid_alive: bool | None = None


def acquire(path: str, stage: list[str]) -> Observation:
    """Open, fstat and read the pulse; ``stage`` names the step for a timeout message."""
    obs = Observation(path)
    stage[0] = "opening"
    try:
        # Open first and fstat the descriptor: the answer describes what we read, even if the
        # daemon renames a new pulse into place meanwhile. A FIFO blocks here: the timeout's job.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        obs.problem = "missing"
        return obs
    except OSError as exc:
        obs.problem, obs.detail = "unusable", f"cannot open it: {exc.strerror}"
        return obs
    try:
        stage[0] = "reading"
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            obs.problem, obs.detail = "unusable", "it is a directory, not a file"
            return obs
        if not stat.S_ISREG(st.st_mode):
            obs.problem, obs.detail = "unusable", "it is not a regular file"
            return obs
        obs.mtime = st.st_mtime
        obs.now = time.time()
        obs.data = _read_all(fd)
    except OSError as exc:
        obs.problem, obs.detail = "unusable", f"cannot read it: {exc.strerror}"
        return obs
    finally:
        os.close(fd)
    if len(obs.data) > MAX_PULSE_BYTES:
        obs.problem, obs.detail = "unusable", f"it is larger than {MAX_PULSE_BYTES} bytes"
    return obs


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_PULSE_BYTES:  # bounded: at most MAX_PULSE_BYTES / 64 KiB + 1 reads
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def pid_alive(pid: int) -> bool:
    """Signal 0 probes existence; EPERM means the process exists but is not ours (nagios user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------------------------------------
# Evaluate: pure, from the observation and the options to (state, summary, long lines, perfdata).


class Verdict:
    """The plugin's answer, ready to print."""

    __slots__ = ("long", "perfdata", "state", "summary")

    def __init__(
        self, state: int, summary: str, long: list[str] | None = None, perfdata: str = ""
    ) -> None:
        self.state = state
        self.summary = summary
        self.long = long or []
        self.perfdata = perfdata

    def render(self) -> str:
        line = f"{STATE_NAMES[self.state]}: {_text(self.summary)}"
        if self.perfdata:
            line += f" | {self.perfdata}"
        return "\n".join([line, *(_text(x) for x in self.long)]) + "\n"


def evaluate(obs: Observation, opts: Options, doc: PulseDoc | None, doc_error: str) -> Verdict:
    """Judge the observation; ``doc``/``doc_error`` are the decoded content or why it failed."""
    path = _show(obs.path)
    if obs.problem == "missing":
        if opts.ignore_missing:
            return Verdict(OK, f"pulse file {path} does not exist (ignored by --ignore-missing)")
        return Verdict(
            CRITICAL, f"pulse file {path} does not exist: ldirectord is probably not running"
        )
    if obs.problem is not None:
        return Verdict(UNKNOWN, f"cannot use pulse file {path}: {obs.detail}")

    findings: list[tuple[int, str]] = []
    age_state, age_text, age = _judge_age(obs.now - obs.mtime, opts)
    findings.append((age_state, age_text))
    perf = [f"age={age}s;{opts.warning.text};{opts.critical.text};0;"]
    long = [f"pulse file {path}"]
    if doc_error:
        findings.append((UNKNOWN, f"pulse file {path} {doc_error}"))
    elif doc is None:
        long.append("the pulse file is empty: judged by its mtime only")
    else:
        findings.extend(_judge_content(doc, opts, obs.pid_alive, perf, long))
    state = max((s for s, _ in findings), key=_RANK.__getitem__)
    ordered = sorted(findings, key=lambda f: -_RANK[f[0]])  # stable: age first among equals
    summary = "; ".join(text for _, text in ordered)
    return Verdict(state, summary, long if opts.verbose else [], " ".join(perf))


def _judge_age(delta: float, opts: Options) -> tuple[int, str, int]:
    if delta < -FUTURE_TOLERANCE:
        ahead = round(-delta)
        return (
            WARNING,
            f"ldirectord pulse mtime is {_seconds(ahead)} in the future (clock step?)",
            -ahead,
        )
    age = max(0, int(delta))  # whole seconds, rounded down, as check_file_age does
    since = f"({_seconds(age)} since last beat)"
    for rng, state, past_end in (
        (opts.critical, CRITICAL, "has stopped"),
        (opts.warning, WARNING, "is late"),
    ):
        if rng.alerts(age):
            if rng.above(age):
                return state, f"ldirectord pulse {past_end} {since}", age
            kind = STATE_NAMES[state].lower()
            return state, f"ldirectord pulse age alerts on {kind} range {rng.text} {since}", age
    return OK, f"ldirectord pulse is regular {since}", age


def _judge_content(
    doc: PulseDoc, opts: Options, alive: bool | None, perf: list[str], long: list[str]
) -> list[tuple[int, str]]:
    findings: list[tuple[int, str]] = []
    if alive is False:
        findings.append((CRITICAL, f"ldirectord pid {doc.pid} is gone"))
    uptime = max(0, int(doc.beat - doc.started))
    long.append(
        f"pid {doc.pid} ({'alive' if alive else 'gone'}), config {_show(doc.config)}, "
        f"{doc.checks_completed} checks completed, up {_seconds(uptime)} at last beat"
    )
    down: list[str] = []
    few: list[str] = []
    warn = f"{opts.min_up}:" if opts.min_up is not None else ""
    for v in doc.virtuals:
        name = _show(v.name)
        perf.append(f"{_label(v.name)}={v.reals_up};{warn};;0;{v.reals_total}")
        fallback = ", fallback active" if v.fallback_active else ""
        long.append(
            f"{name} {_show(v.protocol)}: {v.reals_up} of {v.reals_total} real servers up{fallback}"
        )
        if v.reals_up == 0 and not v.fallback_active:
            down.append(f"{name} ({v.reals_up} of {v.reals_total})")
        elif opts.min_up is not None and v.reals_up < opts.min_up:
            few.append(f"{name} ({v.reals_up} of {v.reals_total})")
    if down:
        findings.append((CRITICAL, _virtuals_text(down, "no real server up and no fallback")))
    if few:
        findings.append((WARNING, _virtuals_text(few, f"fewer than {opts.min_up} real servers up")))
    return findings


def _virtuals_text(items: list[str], what: str) -> str:
    if len(items) == 1:
        return f"virtual {items[0]} has {what}"
    named = ", ".join(items[:MAX_NAMED])
    more = f" and {len(items) - MAX_NAMED} more" if len(items) > MAX_NAMED else ""
    return f"{len(items)} virtuals have {what}: {named}{more}"


def _seconds(n: int) -> str:
    return "1 second" if n == 1 else f"{n} seconds"


def _show(text: str) -> str:
    """A path or name made safe for one status line: no newlines, no control characters."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _text(text: str) -> str:
    # '|' starts perfdata in Nagios output: a '|' inside the text would be misparsed.
    return text.replace("|", "¦")


def _label(name: str) -> str:
    # Perfdata labels: quoted, no '=', a quote doubled, no control characters.
    return "'" + _show(name).replace("=", "_").replace("'", "''").replace("|", "_") + "'"


# ---------------------------------------------------------------------------------------------
# Present: run the check against the deadline, print, exit.


def check(opts: Options, stage: list[str]) -> Verdict:
    """Acquire, decode and evaluate (runs in the worker thread)."""
    obs = acquire(opts.path, stage)
    doc: PulseDoc | None = None
    doc_error = ""
    if obs.problem is None and obs.data.strip():
        stage[0] = "decoding"
        from ldirectord import pulse_format  # only for a pulse with content

        try:
            doc = pulse_format.decode(obs.data)
        except pulse_format.UnknownSchemaError as exc:
            doc_error = f"has schema {exc.version!r}; this plugin reads schema 1"
        except pulse_format.PulseFormatError as exc:
            doc_error = f"has invalid content: {exc}"
        if doc is not None:
            stage[0] = "checking the pid in"
            obs.pid_alive = pid_alive(doc.pid)
    stage[0] = "evaluating"
    return evaluate(obs, opts, doc, doc_error)


def run(opts: Options) -> Verdict | None:
    """Run check() in a worker thread and wait at most ``opts.timeout``; None on expiry.

    Why a thread and not SIGALRM: the real hang is open/stat/read on a dead NFS mount, a
    sleep a Python-level SIGALRM handler cannot interrupt (its handler only runs once the
    system call returns). The main thread instead waits on a lock with a timeout, prints
    UNKNOWN and leaves with os._exit(), which takes the stuck thread down with the process.
    ``_thread`` is the documented low-level API; ``threading`` would add ~2 ms of imports.
    """
    import _thread

    done = _thread.allocate_lock()
    done.acquire()
    result: list[Verdict] = []
    stage = ["starting to check"]

    def worker() -> None:
        try:
            result.append(check(opts, stage))
        except BaseException as exc:  # the worker must always release the lock
            result.append(
                Verdict(UNKNOWN, f"internal error while {stage[0]} the pulse file: {_oneline(exc)}")
            )
        finally:
            done.release()

    _thread.start_new_thread(worker, ())
    if not done.acquire(timeout=opts.timeout):
        _timed_out(opts, stage[0])
        return None
    return result[0]


def _timed_out(opts: Options, stage: str) -> None:
    unit = "second" if opts.timeout == 1 else "seconds"
    text = f"UNKNOWN: timed out after {opts.timeout:g} {unit} while {stage} pulse file {opts.path}"
    _emit(_text(_show(text)) + "\n")
    # Close our ends first: if the stuck thread cannot die at once, the reader still sees EOF.
    os.closerange(1, 3)  # ignores errors
    os._exit(UNKNOWN)


def _oneline(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _emit(text: str) -> None:
    try:
        out = sys.stdout
        if out is None:
            return
        out.flush()
        out.buffer.write(text.encode("utf-8", "backslashreplace"))
        out.buffer.flush()
    except (OSError, ValueError, AttributeError):
        pass  # no stdout (closed, broken pipe): the exit code still tells the state


def _main(argv: list[str]) -> tuple[int, str]:
    try:
        opts = parse_args(argv)
    except UsageError as exc:
        return UNKNOWN, f"UNKNOWN: {_text(_show(str(exc)))}\n{USAGE}"
    if opts.help:
        return UNKNOWN, HELP
    if opts.version:
        return UNKNOWN, f"{PROG} v{__version__} (ldirectord for Python {__version__})\n"
    verdict = run(opts)
    if verdict is None:  # pragma: no cover - _timed_out() exits
        return UNKNOWN, "UNKNOWN: timed out\n"
    return verdict.state, verdict.render()


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: print the result and return the exit code (0-3)."""
    try:
        code, text = _main(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:
        code, text = UNKNOWN, "UNKNOWN: interrupted\n"
    except BaseException as exc:  # never a traceback's exit 1 or a SystemExit's 2
        code, text = UNKNOWN, f"UNKNOWN: internal error: {_text(_show(_oneline(exc)))}\n"
    _emit(text)
    return code if code in STATE_NAMES else UNKNOWN


if __name__ == "__main__":
    sys.exit(main())
