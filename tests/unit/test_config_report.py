"""``ldirectord FILE configtest`` / ``-t`` / ``--json``: summary, every error, exit codes, JSON shape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ldirectord.cli import main
from tests.conftest import SHARED

CONFIGS = SHARED / "configs"


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "ld.cf"
    path.write_text(text)
    return str(path)


def test_valid_config_prints_a_summary_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(CONFIGS / "01-upstream-resource-agents-sample.cf")
    assert main([path, "configtest"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{path}: configuration OK: 1 virtual service")
    assert "with 3 real servers" in out and "0 warnings" in out
    assert out.count("\n") == 1


def test_dash_t_is_configtest(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-t", str(CONFIGS / "20-cn-grep-output-tabs-trailing-tab-line.cf")]) == 0
    assert "configuration OK" in capsys.readouterr().out


def test_invalid_config_prints_every_error_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(CONFIGS / "16-cn-fwmark-two-space-indent.cf")
    assert main([path, "configtest"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.splitlines()
    assert err[0] == (
        f"{path}:5:10: forward method must be gate, masq or ipip "
        "(hint: global lines keep trailing comments: remove '# ...')"
    )
    assert err[1].startswith(f"{path}:6:12: autoreload must be 'yes' or 'no'")
    assert err[-1] == "10 error(s): configuration not valid"


def test_warnings_go_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, "supervised\nvirtual=10.0.0.1:80\n    real=10.0.0.2:80 gate\n")
    assert main([path, "configtest"]) == 0
    captured = capsys.readouterr()
    assert "1 warning." in captured.out
    assert (
        captured.err
        == f"warning: {path}:1:1: please update your config not to use a bare supervised directive\n"
    )


def test_json_errors(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(CONFIGS / "14-cn-dr-inline-comments.cf")
    assert main([path, "configtest", "--json"]) == 2
    data = json.loads(capsys.readouterr().out)
    assert data == {
        "errors": [
            {
                "file": path,
                "line": 5,
                "col": 11,
                "message": "quiescent must be 'yes' or 'no'",
                "hint": "global lines keep trailing comments: remove '# ...'",
            }
        ]
    }


def test_json_model_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(
        tmp_path,
        "checktimeout=3\nfallback=127.0.0.1\n"
        'virtual=10.0.0.1:http\n    real=10.0.0.2 gate 2 l:1 u:9\n    request="x"\n    persistent=60\n'
        "    netmask=255.255.255.0\n"
        "virtual6=[2001:db8::1]:53\n    real6=[2001:db8::2]:53 masq\n"
        "virtual=7\n    real=10.0.0.3:80 ipip\n    checktype=3\n",
    )
    assert main([path, "configtest", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    g = data["globals"]
    assert (g["checktimeout"], g["negotiatetimeout"], g["quiescent"], g["checkinterval"]) == (
        3,
        3,
        "no",
        10,
    )
    assert g["fallback"] == {"address": "127.0.0.1", "port": None, "method": "gate"}
    v4, v6, fwm = data["virtuals"]
    required = {"address", "fwmark", "family", "protocol", "scheduler", "checktype", "service"}
    required |= {
        "checkport",
        "request",
        "receive",
        "virtualhost",
        "persistent",
        "netmask",
        "fallback",
        "reals",
    }
    assert required <= set(v4)
    assert (v4["address"], v4["fwmark"], v4["family"], v4["protocol"]) == (
        "10.0.0.1:80",
        None,
        "inet",
        "tcp",
    )
    assert (v4["request"], v4["persistent"], v4["netmask"], v4["service"]) == (
        "/x",
        60,
        "255.255.255.0",
        "http",
    )
    assert v4["fallback"] == {"address": "127.0.0.1", "port": 80, "method": "gate"}
    real = v4["reals"][0]
    assert (real["address"], real["port"], real["method"], real["weight"]) == (
        "10.0.0.2",
        0,
        "gate",
        2,
    )
    assert (real["lower"], real["upper"]) == (1, 9)
    assert (v6["address"], v6["family"], v6["protocol"], v6["service"]) == (
        "[2001:db8::1]:53",
        "inet6",
        "udp",
        "dns",
    )
    assert v6["reals"][0]["address"] == "2001:db8::2"
    assert (
        fwm["address"],
        fwm["fwmark"],
        fwm["protocol"],
        fwm["checktype"],
        fwm["combined_n"],
    ) == (
        None,
        7,
        "fwm",
        "combined",
        3,
    )
    assert fwm["checktimeout"] == 3 and fwm["negotiatetimeout"] == 3


def test_missing_file_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "none.cf")
    assert main([path, "configtest"]) == 2
    assert capsys.readouterr().err.startswith(f"{path}:0:0: can not open file: no such file")


def test_the_installed_command(tmp_path: Path) -> None:
    """The console script, as an operator runs it (stdout/stderr, exit code)."""
    exe = Path(sys.executable).with_name("ldirectord")
    done = subprocess.run(
        [str(exe), str(CONFIGS / "03-populis-production-80vips.cf"), "configtest"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "70 virtual services" in done.stdout


def test_missing_oracle_driver_is_a_configtest_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("ldirectord.checks.sql")
    try:
        import oracledb  # noqa: F401

        pytest.skip("python-oracledb is installed here: no warning expected")
    except ImportError:
        pass
    path = _write(
        tmp_path,
        'virtual=127.0.0.1:1521\n\treal=127.0.0.1:1521 gate\n\tlogin="a"\n\trequest="select 1"\n',
    )
    assert main([path, "configtest"]) == 0
    err = capsys.readouterr().err
    assert f"{path}:1:1: the oracle check needs the python-oracledb driver" in err
    assert "pip install 'ldirectord[oracle]'" in err
