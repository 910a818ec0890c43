"""Bad input never gives a traceback: a clear ConfigError or a correct result."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ldirectord.config import decode, load, parse_text
from ldirectord.errors import ConfigError
from tests.unit.test_config_support import FakeEnv


def _error(path: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(path)
    return str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.cf")
    assert _error(path) == f"{path}:0:0: can not open file: no such file"


def test_directory(tmp_path: Path) -> None:
    assert _error(str(tmp_path)).endswith("is a directory, not a config file")


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert _error(str(fifo)).endswith("not a regular file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "x.cf"
    path.write_text("checktimeout=3\n")
    path.chmod(0)
    assert _error(str(path)).endswith("can not open file: permission denied")


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "bin.cf"
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\n" + bytes(range(256)))
    assert "not a text file (contains NUL bytes)" in _error(str(path))


def test_latin1_and_invalid_utf8_bytes_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "l1.cf"
    path.write_bytes(
        b"# caf\xe9\nvirtual=10.0.0.1:80\n    real=10.0.0.2:80 gate\n    servicename=caf\xe9\n"
    )
    config = load(str(path))
    assert config.virtuals[0].servicename == "caf\udce9"


def test_crlf_file_is_rejected_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "crlf.cf"
    path.write_bytes(b"autoreload=yes\r\nvirtual=10.0.0.1:80\r\n    real=10.0.0.2:80 gate\r\n")
    assert "dos2unix" in _error(str(path))


def test_empty_file_is_a_valid_empty_config(tmp_path: Path) -> None:
    path = tmp_path / "empty.cf"
    path.write_bytes(b"")
    assert load(str(path)).virtuals == ()


def test_a_100000_line_config(tmp_path: Path) -> None:
    body = []
    for i in range(10_000):
        body += [
            f"virtual=10.{i // 250}.{i % 250}.1:80",
            f"    real=10.200.{i // 250}.{i % 250}:80 gate",
        ]
        body += ['    request="/x"', '    receive="ok"', "    scheduler=wlc", "    # comment"]
        body += ["    checktype=negotiate", "    service=http", "    protocol=tcp", ""]
    path = tmp_path / "big.cf"
    path.write_text("\n".join(body))
    assert len(body) == 100_000
    config = load(str(path), check_files=False)
    assert len(config.virtuals) == 10_000


def test_every_line_wrong_in_a_large_file_reports_every_error() -> None:
    text = "nonsense\n" * 5000
    with pytest.raises(ConfigError) as caught:
        parse_text(text, env=FakeEnv())
    assert len(caught.value.problems) == 5000


_ALPHABET = st.sampled_from(
    [
        *list("virtual6=real:->[]{}.#\"' \t\r\n0123456789abcdeglmnopqstuwxyz/“,"),
        "virtual=",
        "    real=",
        "\n    ",
        "gate",
        "10.0.0.1",
        "::",
        "fwm",
        "\x00",
        "é",
        "�",
    ]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_ALPHABET, max_size=80).map("".join))
def test_the_parser_only_ever_raises_config_error(text: str) -> None:
    try:
        parse_text(text, "fuzz.cf", env=FakeEnv())
    except ConfigError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.render()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_ever_raise_config_error(data: bytes) -> None:
    with contextlib.suppress(ConfigError):
        parse_text(decode(data, "b.cf"), "b.cf", env=FakeEnv())


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_only_ever_raises_config_error(text: str) -> None:
    with contextlib.suppress(ConfigError):
        parse_text(text, "t.cf", env=FakeEnv())


def _huge_number_configs() -> list[tuple[str, str]]:
    from ldirectord.config.values import EXTENSIONS, KNOWN

    out: list[tuple[str, str]] = []
    block = "virtual=10.0.0.1:80\n    real=10.0.0.2:80 gate\n"
    for digits in ("9" * 400, "9" * 5000):  # beyond float(), then beyond int()'s 4300 digits
        n = len(digits)
        for name in sorted(KNOWN | EXTENSIONS):
            out.append((f"global {name} {n}", f"{name}={digits}\n{block}\n"))
            out.append((f"virtual {name} {n}", f"{block}    {name}={digits}\n\n"))
        out += [
            (f"fwmark {n}", f"virtual={digits}\n    real=10.0.0.2:80 gate\n\n"),
            (f"virtual port {n}", f"virtual=10.0.0.1:{digits}\n    real=10.0.0.2:80 gate\n\n"),
            (f"real port {n}", f"virtual=10.0.0.1:80\n    real=10.0.0.2:{digits} gate\n\n"),
            (f"weight {n}", f"virtual=10.0.0.1:80\n    real=10.0.0.2 gate {digits}\n\n"),
            (f"thresholds {n}", f"{block}    real=10.0.0.3 gate 1 l:{digits} u:{digits}\n\n"),
            (
                f"netmask6 {n}",
                f"virtual6=[::1]:80\n    real6=[::2]:80 gate\n    netmask={digits}\n",
            ),
            (f"fallback {n}", f"fallback=127.0.0.1:{digits}\n{block}\n"),
            (f"fork {n}", f"fork=yes\n{block}    checkinterval={digits}\n\n"),
        ]
    return out


@pytest.mark.parametrize(("label", "text"), _huge_number_configs(), ids=lambda x: str(x)[:40])
def test_huge_numbers_only_ever_raise_config_error(label: str, text: str) -> None:
    with contextlib.suppress(ConfigError):
        parse_text(text, "t.cf", env=FakeEnv())


def test_a_huge_number_saturates_as_perl_keeps_it_huge() -> None:
    from ldirectord.config.values import NUMBER_CAP

    config = parse_text(f"checkinterval={'9' * 400}\n", "t.cf", env=FakeEnv())
    assert config.globals.checkinterval == float(NUMBER_CAP)
    with pytest.raises(ConfigError, match=r"checkport must be in range 1\.\.65535"):
        parse_text(
            f"virtual=10.0.0.1:80\n    real=10.0.0.2 gate\n    checkport={'1' * 5000}\n",
            "t.cf",
            env=FakeEnv(),
        )
