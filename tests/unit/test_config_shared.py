"""The sample configs in shared/configs give exactly what expected.json says ldirectord makes of them."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from typing import Any

import pytest

from ldirectord.config import load, parse_text
from ldirectord.config.model import Config, GlobalConfig
from ldirectord.config.report import fallback_json, virtual_json
from ldirectord.errors import ConfigError
from tests.conftest import SHARED

CONFIGS = SHARED / "configs"
EXPECTED: list[dict[str, Any]] = json.loads((CONFIGS / "expected.json").read_text())
BY_NAME = {entry["file"]: entry for entry in EXPECTED}

#: Per-virtual keys of expected.json and the value when a key is absent there.
VIRTUAL_DEFAULTS: dict[str, Any] = {
    "request": "/",
    "receive": "",
    "checkport": None,
    "virtualhost": None,
    "servicename": None,
    "comment": None,
    "fallback": None,
    "persistent": None,
    "login": "",
    "passwd": "",
    "database": "",
}
ALWAYS: tuple[str, ...] = ("address", "fwmark", "address_as_written", "family", "protocol")
ALWAYS += ("scheduler", "checktype", "service")


def _globals_changed(config: Config) -> dict[str, Any]:
    """Global values as written that differ from ldirectord's defaults, in expected.json's shape."""
    defaults = GlobalConfig()
    out: dict[str, Any] = {}
    for f in fields(GlobalConfig):
        value = getattr(config.globals, f.name)
        if value == getattr(defaults, f.name):
            continue
        if isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, float) and value.is_integer():
            value = int(value)
        elif f.name in ("fallback", "fallback6"):
            value = fallback_json(value)
        out[f.name] = value
    return out


def _as_stored(request: str) -> str:
    return request if request.startswith("/") else "/" + request


def _check_virtuals(config: Config, expected: dict[str, Any]) -> None:
    assert len(config.virtuals) == expected["virtual_count"]
    for ours_v, want in zip(config.virtuals, expected["virtuals"], strict=True):
        ours = virtual_json(ours_v)
        for key in ALWAYS:
            assert ours[key] == want[key], (key, ours_v.location)
        for key, default in VIRTUAL_DEFAULTS.items():
            wanted = want.get(key, default)
            if key == "request" and key in want:
                wanted = _as_stored(wanted)
            assert ours[key] == wanted, (key, ours_v.location)
        reals = [{k: r[k] for k in ("address", "port", "method", "weight")} for r in ours["reals"]]
        assert reals == want["reals"], ours_v.location


ACCEPTED = [e["file"] for e in EXPECTED if e["ldirectord_accepts"]]
REJECTED = [e["file"] for e in EXPECTED if not e["ldirectord_accepts"]]


@pytest.mark.parametrize("name", ACCEPTED)
def test_accepted_configs_match_expected(name: str) -> None:
    expected = BY_NAME[name]
    config = load(str(CONFIGS / name), check_files=False)
    assert list(config.warnings) == expected["warnings"]
    assert _globals_changed(config) == expected["globals"]
    _check_virtuals(config, expected)


@pytest.mark.parametrize("name", REJECTED)
def test_rejected_configs_fail_at_ldirectords_line(name: str) -> None:
    expected = BY_NAME[name]
    with pytest.raises(ConfigError) as caught:
        load(str(CONFIGS / name), check_files=False)
    problems = caught.value.problems
    first = problems[0]
    assert first.location.line == expected["ldirectord_error"]["line"]
    assert first.message == expected["ldirectord_error"]["message"]
    lines = {p.location.line for p in problems}
    blank_hints = " ".join(p.hint or "" for p in problems)
    for step in expected["error_chain"]:
        number = int(re.match(r"line (\d+)", step).group(1))  # type: ignore[union-attr]
        # an error at the line, or (for a blank line that ends a block) a hint naming it
        assert number in lines or f"blank line {number} " in blank_hints, step


def _sed(text: str, script: str) -> str:
    """The few sed -E forms expected.json uses: [N[,M]]s/re/rep/ and /re/d."""
    lines = text.split("\n")
    if m := re.fullmatch(r"/(.*)/d", script):
        return "\n".join(line for line in lines if not re.search(m.group(1), line))
    m = re.fullmatch(r"(?:(\d+)(?:,(\d+))?)?s/(.*)/(.*)/", script)
    assert m is not None, script
    first = int(m.group(1)) if m.group(1) else 1
    last = int(m.group(2)) if m.group(2) else (first if m.group(1) else len(lines))
    out = []
    for number, line in enumerate(lines, 1):
        fixed = re.sub(m.group(3), m.group(4), line, count=1) if first <= number <= last else line
        out.append(fixed)
    return "\n".join(out)


@pytest.mark.parametrize("name", REJECTED)
def test_rejected_configs_once_fixed_mean_what_was_intended(name: str) -> None:
    expected = BY_NAME[name]
    intended = expected["intended"]
    text = (CONFIGS / name).read_text()
    for script in intended["fixes_applied_sed"]:
        text = _sed(text, script)
    config = parse_text(text, name, check_files=False)
    assert _globals_changed(config) == intended["globals"]
    _check_virtuals(config, intended)


def test_every_shared_config_is_covered() -> None:
    on_disk = {p.name for p in CONFIGS.glob("*.cf")}
    assert on_disk == set(BY_NAME)
