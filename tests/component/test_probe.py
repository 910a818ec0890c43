"""The probe command: over Configs built directly, and end to end through the CLI."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from ldirectord import cli
from ldirectord.checks.probe import ProbeRow, probe_and_print, probe_config, render_table
from ldirectord.config.model import (
    CheckSpec,
    CheckType,
    Config,
    Family,
    GlobalConfig,
    Method,
    Protocol,
    RealServer,
    Service,
    VirtualService,
)
from tests.helpers import hostile
from tests.helpers.nginx import Nginx

pytestmark = [pytest.mark.component]


def virtual(port: int, check: CheckSpec, *reals: RealServer) -> VirtualService:
    return VirtualService(
        family=Family.INET, protocol=Protocol.TCP, address="192.0.2.80", port=port,
        fwmark=None, address_as_written=f"192.0.2.80:{port}", check=check, reals=reals,
    )  # fmt: skip


def real(port: int, host: str = "127.0.0.1") -> RealServer:
    return RealServer(address=host, port=port, method=Method.GATE)


def config(*virtuals: VirtualService) -> Config:
    return Config(path="<test>", globals=GlobalConfig(), virtuals=virtuals)


def http_spec(**kw: object) -> CheckSpec:
    base: dict[str, object] = {
        "service": Service.HTTP, "receive": "all is well", "checktimeout": 1.0,
        "negotiatetimeout": 1.0,
    }  # fmt: skip
    base.update(kw)
    return CheckSpec(**base)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_rows_in_config_order_with_results(nginx: Nginx) -> None:
    refused = hostile.free_port()
    cfg = config(
        virtual(80, http_spec(), real(nginx.http_port), real(refused)),
        virtual(81, http_spec(checktype=CheckType.CONNECT), real(nginx.http_port)),
        virtual(82, http_spec(checktype=CheckType.OFF), real(nginx.http_port)),
        virtual(83, http_spec(checktype=CheckType.COMBINED, combined_n=3), real(nginx.http_port)),
        virtual(84, http_spec(receive="absent"), real(nginx.http_port)),
    )
    rows = await probe_config(cfg)
    summary = [(r.virtual, r.check, r.result, r.reason) for r in rows]
    assert summary == [
        ("192.0.2.80:80", "negotiate:http", "up", "ok"),
        ("192.0.2.80:80", "negotiate:http", "down", "refused"),
        ("192.0.2.80:81", "connect", "up", "ok"),
        ("192.0.2.80:82", "off", "off", "off"),
        ("192.0.2.80:83", "negotiate:http", "up", "ok"),  # checktype=N probes negotiate
        ("192.0.2.80:84", "negotiate:http", "down", "no_match"),
    ]
    assert rows[1].real == f"127.0.0.1:{refused}"


@pytest.mark.asyncio
async def test_identical_targets_are_checked_once() -> None:
    with hostile.hang() as peer:
        spec = http_spec()
        cfg = config(virtual(80, spec, real(peer.port)), virtual(8080, spec, real(peer.port)))
        rows = await probe_config(cfg)
        assert peer.accepted == 1
    assert [r.reason for r in rows] == ["timeout", "timeout"]


@pytest.mark.asyncio
async def test_hung_reals_do_not_delay_the_others(nginx: Nginx) -> None:
    with hostile.hang() as peer:
        reals = [real(nginx.http_port)] + [
            RealServer("127.0.0.1", peer.port, Method.GATE, w) for w in range(1, 30)
        ]
        rows = await probe_config(config(virtual(80, http_spec(), *reals)))
    assert rows[0].result == "up"
    assert rows[0].ms < 500
    assert all(r.reason == "timeout" for r in rows[1:])
    assert max(r.ms for r in rows) < 1000 + 1000


def test_exit_codes_and_json(nginx: Nginx) -> None:
    good = config(virtual(80, http_spec(), real(nginx.http_port)))
    out = io.StringIO()
    assert probe_and_print(good, as_json=True, out=out) == 0
    data = json.loads(out.getvalue())
    assert data["up"] == 1 and data["down"] == 0
    assert data["results"][0]["result"] == "up"
    bad = config(virtual(80, http_spec(), real(hostile.free_port())))
    assert probe_and_print(bad, as_json=False, out=io.StringIO()) == 1
    only_off = config(virtual(80, http_spec(checktype=CheckType.OFF), real(1)))
    assert probe_and_print(only_off, as_json=False, out=io.StringIO()) == 0


def test_table_layout() -> None:
    rows = [
        ProbeRow("10.0.0.1:80", "127.0.0.1:8080", "negotiate:http", "up", "ok", "200 OK", 1.25),
        ProbeRow("10.0.0.1:80", "127.0.0.1:8081", "negotiate:http", "down", "refused", "x", 0.3),
    ]
    text = render_table(rows)
    lines = text.splitlines()
    assert lines[0].split() == ["virtual", "real", "check", "result", "reason", "ms", "detail"]
    assert lines[1].split()[:6] == [
        "10.0.0.1:80",
        "127.0.0.1:8080",
        "negotiate:http",
        "up",
        "ok",
        "1.2",
    ]
    assert lines[-1] == "2 real server(s): 1 up, 1 down, 0 off"


CONFIG = """\
checktimeout=2
negotiatetimeout=2

virtual=127.0.0.1:80
\treal=127.0.0.1:{port} gate
\tservice=http
\trequest="index.html"
\treceive="all is well"
\tchecktype=negotiate

virtual=127.0.0.1:81
\treal=127.0.0.1:{port} gate
\tchecktype=connect
"""


def test_cli_end_to_end(nginx: Nginx, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "probe.cf"
    cfg.write_text(CONFIG.format(port=nginx.http_port))
    assert cli.main([str(cfg), "probe"]) == 0
    out = capsys.readouterr().out
    assert "negotiate:http" in out and "2 up, 0 down" in out
    assert cli.main([str(cfg), "probe", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["up"] == 2


def test_cli_config_error_prints_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "bad.cf"
    cfg.write_text("checktimeout=2\nbogus=1\nalso_bogus=2\n")
    assert cli.main([str(cfg), "probe"]) == 2
    err = capsys.readouterr().err
    assert "bogus" in err and "also_bogus" in err
    assert "nothing probed" in err
