"""status rendering, config display names, backend choice, the state file shape."""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
from pathlib import Path

import pytest

from ldirectord.checks.base import Outcome, Reason
from ldirectord.cli import parse
from ldirectord.config.lookup import ConfigRef
from ldirectord.config.model import DaemonStatus
from ldirectord.engine.director import DirectorSnapshot, RealSnapshot, VirtualSnapshot
from ldirectord.errors import BackendError
from ldirectord.runtime import backends
from ldirectord.runtime.control import display_config, state_file
from ldirectord.runtime.state import STATE_SCHEMA, decode_state, encode_state, state_virtuals
from ldirectord.runtime.status_view import render_table, status_command


def test_display_config_is_ldirectords_config_string() -> None:
    assert display_config(ConfigRef("/etc/ha.d/ldirectord.cf", "ldirectord", None)) == (
        "/etc/ha.d/ldirectord.cf"
    )
    assert display_config(ConfigRef("/etc/ha.d/conf/x.cf", "x.cf", "x.cf")) == (
        "/etc/ha.d/conf/x.cf"
    )
    assert display_config(ConfigRef("/home/me/x.cf", "x.cf", "x.cf")) == "x.cf"
    assert display_config(ConfigRef("/home/me/ldirectord.cf", "ldirectord", None)) == (
        "ldirectord.cf"
    )


def _snapshot() -> DirectorSnapshot:
    up = RealSnapshot("10.0.0.2", 80, 1, True, "up", Outcome(True, Reason.OK, "200 OK", 0.003), 5.0)
    down = RealSnapshot(
        "10.0.0.3", 80, None, False, "down", Outcome(False, Reason.TIMEOUT, "no answer", 2.0), 7.0
    )
    virtual = VirtualSnapshot("10.0.0.1:80", "tcp", 1, 2, False, (up, down))
    return DirectorSnapshot(DaemonStatus.RUNNING, 42, (virtual,))


def test_state_rows_and_table() -> None:
    rows = state_virtuals(_snapshot(), wall_offset=1000.0)
    assert rows[0]["reals"][1] == {
        "name": "10.0.0.3:80",
        "address": "10.0.0.3",
        "port": 80,
        "weight": None,
        "up": False,
        "health": "down",
        "last_result": "timeout",
        "last_detail": "no answer",
        "last_duration": 2.0,
        "last_change": 1007.0,
    }
    doc = {"schema": STATE_SCHEMA, "pid": 1, "virtuals": rows}
    assert decode_state(encode_state(doc)) == json.loads(json.dumps(doc))
    assert decode_state(b"{") is None and decode_state(b'{"schema": 99}') is None
    lines = render_table(doc, now=1010.0)
    assert lines[0].split() == [
        "VIRTUAL",
        "REAL",
        "WEIGHT",
        "HEALTH",
        "LAST",
        "CHECK",
        "LAST",
        "CHANGE",
    ]
    assert lines[1].startswith("tcp 10.0.0.1:80 (1/2 up)  10.0.0.2:80")
    assert "ok: 200 OK (3 ms)" in lines[1] and lines[1].endswith("5 s ago")
    assert "timeout: no answer (2000 ms)" in lines[2] and "  -  " in lines[2]


def test_status_of_a_foreground_instance(tmp_path: Path) -> None:
    opts = parse(["--rundir", str(tmp_path), str(tmp_path / "fg.cf"), "status"])
    assert not isinstance(opts, str)
    rows = state_virtuals(_snapshot(), wall_offset=time.time() - time.monotonic())
    doc = {"schema": STATE_SCHEMA, "pid": os.getpid(), "status": "running", "virtuals": rows}
    Path(state_file(opts)).write_bytes(encode_state(doc))
    out, err = io.StringIO(), io.StringIO()
    code = status_command(opts, "fg.cf", state_file(opts), out=out, err=err)
    # this pytest process counts as "ldirectord" only if its cmdline says so; either way the
    # pid-file contract holds: no pid file → 3 and the stopped line first
    assert code == 3 and err.getvalue() == ""
    assert out.getvalue().startswith("ldirectord is stopped for fg.cf\n")


def test_backend_choice() -> None:
    logs: list[str] = []
    dry = asyncio.run(backends.choose("dryrun", logs.append))
    assert dry.name == "dryrun" and dry.warning is None
    auto = asyncio.run(backends.choose("auto", logs.append))
    if auto.name == "dryrun":  # no usable IPVS here: a loud warning says so
        assert auto.warning is not None and "NO kernel IPVS table is changed" in auto.warning
        with pytest.raises(BackendError):
            asyncio.run(backends.choose("ipvs", logs.append))
    else:
        asyncio.run(auto.backend.close())
