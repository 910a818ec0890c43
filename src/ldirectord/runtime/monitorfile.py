"""``monitorfile=``: one line per completed check, in Perl ldirectord's format (reference §4.2).

``[<localtime>] [<pid>] <real id> [up|down] <message>`` where the real id is ldirectord's
get_real_id_str with runs of ``:`` squeezed to one space and backslashes removed, and ``%``,
``|``, CR and LF in the message are %-escaped (lowercase hex). The file is opened and closed per
line, as ldirectord does. ldirectord dies when the write fails; we log it (rate-limited) and
keep checking.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable

from ldirectord.config.model import CheckType, Family, RealServer, VirtualService
from ldirectord.runtime.logsetup import ctime_now

_ESCAPE = re.compile(r"[%|\r\n]")


def escape_message(message: str) -> str:
    return _ESCAPE.sub(lambda m: f"%{ord(m.group()):02x}", message)


def real_id(virtual: VirtualService, real: RealServer) -> str:
    """ldirectord's get_real_id_str for ``real`` in ``virtual`` (before quotemeta)."""
    spec = virtual.check
    kind = spec.checktype
    if kind in (CheckType.NEGOTIATE, CheckType.COMBINED):
        check = f"{kind}:{spec.service}"
    elif kind in (CheckType.EXTERNAL, CheckType.EXTERNAL_PERL):
        check = f"{kind}:{spec.checkcommand}"
    else:
        check = str(kind)
    server = f"[{real.address}]" if virtual.family is Family.INET6 else real.address
    port = real.port if real.port else virtual.port
    request = real.request if real.request is not None else spec.request
    receive = real.receive if real.receive is not None else spec.receive
    parts = (
        check,
        str(virtual.protocol),
        server,
        str(port),
        spec.virtualhost or "",
        str(spec.checkport) if spec.checkport else "",
        str(real.weight),
        str(real.method),
        request,
        receive,
    )
    return ":".join(parts)


def format_line(
    virtual: VirtualService,
    real: RealServer,
    up: bool,
    message: str,
    *,
    now: float | None = None,
    pid: int | None = None,
) -> str:
    squeezed = re.sub(":+", " ", real_id(virtual, real)).replace("\\", "")
    state = "up" if up else "down"
    text = escape_message(message or "-")
    return (
        f"[{ctime_now(now)}] [{os.getpid() if pid is None else pid}] {squeezed} [{state}] {text}\n"
    )


class MonitorFile:
    """Appends check lines; reports write failures through ``on_error`` at most once a minute."""

    def __init__(self, on_error: Callable[[str], None]) -> None:
        self._on_error = on_error
        self._last_error: dict[str, float] = {}

    def write(self, path: str, line: str) -> bool:
        try:
            with open(path, "a", encoding="utf-8", errors="replace") as handle:
                handle.write(line)
        except OSError as exc:
            now = time.monotonic()
            if now - self._last_error.get(path, -1e9) >= 60:
                self._last_error[path] = now
                self._on_error(f"Error writing to monitorfile '{path}': {exc.strerror or exc}")
            return False
        return True
