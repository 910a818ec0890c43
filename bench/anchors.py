"""The anchors: how Perl ldirectord and keepalived are configured and started in the guest.

Owns the one description of each anchor daemon (binary, arguments, config text) for the
real-IPVS scenarios, so every daemon gets the same semantics: one TCP virtual service, the
given reals with NAT (masq) forwarding, checks every ``interval`` seconds with a ``timeout``
second deadline, a failed check removes the real at once (ldirectord ``quiescent=no``,
``failurecount=1``; keepalived ``retry 0``, no ``inhibit_on_failure``), and a real enters the
table only after a successful check (ldirectord's behaviour; keepalived's ``alpha``).

``check="http"`` is an HTTP GET of ``/`` expecting 200 (ldirectord ``checktype=negotiate``,
``service=http``; keepalived ``HTTP_GET``); ``check="on"`` means no probing at all (ldirectord
``checktype=on``; a keepalived real server without a checker), for the reload scenario.

Pure and stdlib only: it is imported inside the User-Mode Linux guest. Ours uses the same
ldirectord.cf (it is a drop-in); its recipe lives in bench_daemon.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

PERL_LDIRECTORD = "/usr/sbin/ldirectord"
KEEPALIVED = "/usr/sbin/keepalived"
VIRTUAL = "10.10.9.100:80"  # never routed: no traffic flows, the table is what we measure


@dataclass(frozen=True, slots=True)
class Recipe:
    """How to run one daemon for one scenario: write config_text to config_path, exec argv."""

    daemon: str
    argv: tuple[str, ...]
    config_path: str
    config_text: str
    cwd: str
    stop_signal: int = signal.SIGTERM
    reload_signal: int = signal.SIGHUP


def anchor_available(daemon: str) -> str | None:
    """None when the anchor can run, else why not (the row is then reported as missing)."""
    if daemon == "limit":
        return None if shutil.which("ipvsadm") else "ipvsadm not installed"
    path = PERL_LDIRECTORD if daemon == "perl" else KEEPALIVED
    if not os.access(path, os.X_OK):
        return f"{path} not installed"
    if daemon == "perl" and shutil.which("ipvsadm") is None:
        return "ipvsadm not installed"
    return None


def ldirectord_cf(
    reals: Sequence[str],
    *,
    check: str = "http",
    interval: int = 1,
    timeout: int = 2,
    weights: Mapping[str, int] | None = None,
    logfile: str = "/dev/null",
) -> str:
    """An ldirectord.cf that Perl ldirectord and ours both read with the same meaning."""
    weights = weights or {}
    lines = [
        f"checkinterval={interval}",
        f"checktimeout={timeout}",
        f"negotiatetimeout={timeout}",
        "failurecount=1",
        "quiescent=no",
        "autoreload=no",
        "fork=no",
        "supervised=yes",  # foreground without -d: no per-check debug logging
        f'logfile="{logfile}"',
        "",
        f"virtual={VIRTUAL}",
    ]
    lines += [f"\treal={r} masq {weights.get(r, 1)}" for r in reals]
    if check == "http":
        lines += ["\tservice=http", "\tchecktype=negotiate"]
        lines += ['\trequest="/"', '\treceive="ok"']
    else:
        lines += ["\tchecktype=on"]
    lines += ["\tscheduler=wrr", "\tprotocol=tcp", ""]
    return "\n".join(lines) + "\n"


def keepalived_conf(
    reals: Sequence[str],
    *,
    check: str = "http",
    interval: int = 1,
    timeout: int = 2,
    weights: Mapping[str, int] | None = None,
    alpha: bool = True,
) -> str:
    """The keepalived.conf with the same semantics as ldirectord_cf()."""
    weights = weights or {}
    vip, vport = VIRTUAL.rsplit(":", 1)
    out = [
        "global_defs {",
        "    router_id bench",
        "}",
        f"virtual_server {vip} {vport} {{",
        f"    delay_loop {interval}",
        "    lb_algo wrr",
        "    lb_kind NAT",
        "    protocol TCP",
    ]
    if alpha:
        out.append("    alpha")
    for real in reals:
        host, port = real.rsplit(":", 1)
        out += [f"    real_server {host} {port} {{", f"        weight {weights.get(real, 1)}"]
        if check == "http":
            out += [
                "        HTTP_GET {",
                "            url {",
                "                path /",
                "                status_code 200",
                "            }",
                f"            connect_timeout {timeout}",
                "            retry 0",
                "            delay_before_retry 1",
                "        }",
            ]
        out.append("    }")
    out.append("}")
    return "\n".join(out) + "\n"


def recipe(
    daemon: str,
    workdir: str,
    reals: Sequence[str],
    *,
    check: str = "http",
    interval: int = 1,
    timeout: int = 2,
    weights: Mapping[str, int] | None = None,
) -> Recipe:
    """The recipe for ``perl``, ``keepalived``, ``keepalived-default`` (no alpha) or ``limit``."""
    if daemon == "perl":
        path = os.path.join(workdir, "bench.cf")
        text = ldirectord_cf(
            reals,
            check=check,
            interval=interval,
            timeout=timeout,
            weights=weights,
            logfile=os.path.join(workdir, "perl.log"),
        )
        # supervised=yes keeps it in the foreground (logging to stdout) without -d's debug
        # output; -d would also run ./ipvsadm from its working directory if one existed.
        return Recipe(daemon, (PERL_LDIRECTORD, path, "start"), path, text, workdir)
    if daemon in ("keepalived", "keepalived-default"):
        path = os.path.join(workdir, "keepalived.conf")
        text = keepalived_conf(
            reals,
            check=check,
            interval=interval,
            timeout=timeout,
            weights=weights,
            alpha=daemon == "keepalived",
        )
        argv = (
            KEEPALIVED,
            "--dont-fork",
            "--log-console",
            "--log-detail",
            "--check",
            "--use-file",
            path,
            "--pid",
            os.path.join(workdir, "keepalived.pid"),
            "--checkers_pid",
            os.path.join(workdir, "checkers.pid"),
        )
        return Recipe(daemon, argv, path, text, workdir)
    if daemon == "limit":
        path = os.path.join(workdir, "bench.cf")
        text = ldirectord_cf(reals, check=check, interval=interval, timeout=timeout)
        limit_argv = (sys.executable, "-m", "bench.guest_limit", path)
        return Recipe(daemon, limit_argv, path, text, os.getcwd())  # cwd: where bench imports from
    raise ValueError(f"unknown anchor {daemon!r}")
