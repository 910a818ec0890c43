"""``ldirectord.config`` is cheap to import: status/stop (config.lookup only) never load the parser."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import ldirectord.config as config_pkg

HEAVY = (
    "ldirectord.config.loader",
    "ldirectord.config.parser",
    "ldirectord.config.lexer",
    "ldirectord.config.validate",
    "ldirectord.config.resolve",
)


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys\nprint('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return set(out.split())


def test_importing_the_package_or_lookup_loads_no_parser() -> None:
    loaded = _modules_after("import ldirectord.config.lookup")
    assert "ldirectord.config" in loaded
    assert loaded.isdisjoint(HEAVY)


def test_status_command_loads_no_parser(tmp_path: Path) -> None:
    argv = ["-X", "importtime", "-m", "ldirectord", "--rundir", str(tmp_path), "status"]
    proc = subprocess.run(
        [sys.executable, *argv], check=False, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 3, proc.stderr[-2000:]  # "stopped", as ldirectord says
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert "ldirectord.config.lookup" in imported
    assert imported.isdisjoint(HEAVY)


def test_public_names_still_import() -> None:
    from ldirectord.config import (
        MAX_BYTES,
        ConfigError,
        decode,
        load,
        loader,
        parse_text,
        read_bytes,
    )

    assert (load, parse_text, decode, read_bytes) == (
        loader.load,
        loader.parse_text,
        loader.decode,
        loader.read_bytes,
    )
    assert MAX_BYTES == 64 * 1024 * 1024 and ConfigError is loader.ConfigError
    assert {"load", "parse_text"} <= set(dir(config_pkg))


def test_unknown_names_are_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        config_pkg.nope  # type: ignore[attr-defined]  # noqa: B018
    with pytest.raises(ImportError):
        from ldirectord.config import nope  # type: ignore[attr-defined]  # noqa: F401
