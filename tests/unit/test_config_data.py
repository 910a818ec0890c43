"""Golden files in tests/data/configs: every directive at once, and one mistake per line.

Regenerate after a deliberate change with ``LDIRECTORD_REGOLD=1 pytest tests/unit/test_config_data.py``
and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ldirectord.config import load
from ldirectord.config.report import config_json
from ldirectord.errors import ConfigError
from tests.conftest import ROOT
from tests.unit.test_config_support import FakeEnv

DATA = ROOT / "tests" / "data" / "configs"
REGOLD = os.environ.get("LDIRECTORD_REGOLD") == "1"


def _env() -> FakeEnv:
    return FakeEnv(hosts={"localhost": "127.0.0.1"}, dirs={"/tmp"}, hostname="director1")


def _relative(value: Any, prefix: str) -> Any:
    if isinstance(value, dict):
        return {k: _relative(v, prefix) for k, v in value.items()}
    if isinstance(value, list):
        return [_relative(v, prefix) for v in value]
    if isinstance(value, str):
        return value.replace(prefix, "")
    return value


def _golden(path: Path, actual: str) -> None:
    if REGOLD:
        path.write_text(actual)
    assert actual == path.read_text()


def test_every_directive() -> None:
    source = DATA / "every-directive.cf"
    config = load(str(source), env=_env())
    actual = json.dumps(_relative(config_json(config), f"{DATA}/"), indent=1) + "\n"
    _golden(DATA / "every-directive.json", actual)


def test_every_directive_is_used() -> None:
    from ldirectord.config.values import KNOWN

    text = (DATA / "every-directive.cf").read_text()
    written = {line.strip().split("=")[0].strip() for line in text.splitlines() if "=" in line}
    assert KNOWN - written == set()


def test_one_mistake_per_line() -> None:
    source = DATA / "many-errors.cf"
    with pytest.raises(ConfigError) as caught:
        load(str(source), env=_env())
    rendered = "".join(p.render().replace(f"{DATA}/", "") + "\n" for p in caught.value.problems)
    _golden(DATA / "many-errors.txt", rendered)
    lines_with_errors = {p.location.line for p in caught.value.problems}
    mistakes = [
        n
        for n, line in enumerate(source.read_text().splitlines(), 1)
        if line.strip()
        and not line.startswith(("#", "virtual=192.0.2.1:80", "    real=192.0.2.10"))
    ]
    assert set(mistakes) - lines_with_errors == set()
