"""pulse_format: schema-1 round trip, the empty pulse, and strict decoding of bad content."""

from __future__ import annotations

import contextlib
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ldirectord import pulse_format as pf
from ldirectord.nagios.options import Options

DESIGN_EXAMPLE = (
    b'{"schema": 1, "pid": 4242, "config": "/etc/ha.d/ldirectord.cf",\n'
    b' "started": 1764106000.12, "beat": 1764106123.45, "checks_completed": 9876,\n'
    b' "virtuals": [{"name": "192.168.6.240:80", "protocol": "tcp",\n'
    b'               "reals_up": 2, "reals_total": 3, "fallback_active": false}]}\n'
)


def example() -> pf.PulseDoc:
    return pf.PulseDoc(
        pid=4242,
        config="/etc/ha.d/ldirectord.cf",
        started=1764106000.12,
        beat=1764106123.45,
        checks_completed=9876,
        virtuals=(
            pf.PulseVirtual(
                name="192.168.6.240:80",
                protocol="tcp",
                reals_up=2,
                reals_total=3,
                fallback_active=False,
            ),
        ),
    )


def test_decodes_the_design_example() -> None:
    assert pf.decode(DESIGN_EXAMPLE) == example()


def test_encode_is_one_line_of_json() -> None:
    data = pf.encode(example())
    assert data.endswith(b"\n")
    assert data.count(b"\n") == 1
    assert json.loads(data) == json.loads(DESIGN_EXAMPLE)


def test_round_trip() -> None:
    assert pf.decode(pf.encode(example())) == example()


def test_documents_are_frozen_and_keyword_only() -> None:
    doc = example()
    with pytest.raises(AttributeError, match="frozen"):
        doc.pid = 1  # type: ignore[misc]
    with pytest.raises(AttributeError, match="frozen"):
        del doc.config  # type: ignore[misc]
    assert doc._replace(pid=7).pid == 7 and doc.pid != 7
    assert doc == example() and hash(doc) == hash(example()) and doc != doc._replace(pid=7)
    assert repr(doc).startswith("PulseDoc(pid=")
    with pytest.raises(TypeError):
        doc._replace(nonsense=1)
    with pytest.raises(TypeError):
        pf.PulseVirtual("a", "tcp", 1, 1, False)  # type: ignore[call-arg]
    assert doc.schema == pf.SCHEMA == 1


@pytest.mark.parametrize("data", [b"", b"\n", b"  \n\t", b"\r\n"])
def test_empty_pulse_decodes_to_none(data: bytes) -> None:
    assert pf.decode(data) is None


def test_unknown_keys_are_ignored() -> None:
    obj = json.loads(DESIGN_EXAMPLE)
    obj["future_field"] = {"x": [1, 2]}
    obj["virtuals"][0]["weight"] = 3
    assert pf.decode(json.dumps(obj).encode()) == example()


@pytest.mark.parametrize("version", [0, 2, 99, -1, "1", 1.0, True, None, [1]])
def test_unknown_schema(version: object) -> None:
    data = json.dumps({"schema": version, "pid": 1}).encode()
    with pytest.raises(pf.UnknownSchemaError) as info:
        pf.decode(data)
    assert info.value.version == version
    assert isinstance(info.value, pf.PulseFormatError)


def _mutated(path: tuple[object, ...], value: object, delete: bool = False) -> bytes:
    obj = json.loads(DESIGN_EXAMPLE)
    target = obj
    for key in path[:-1]:
        target = target[key]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (DESIGN_EXAMPLE[:40], "truncated or invalid JSON"),
        (DESIGN_EXAMPLE[:-3], "truncated or invalid JSON"),
        (b"garbage", "truncated or invalid JSON"),
        (b"\xff\xfe", "not UTF-8 text"),
        (b"[1, 2]", "expected a JSON object, got a list"),
        (b'"text"', "expected a JSON object, got a string"),
        (b"{}", "no 'schema' key"),
        (b'{"schema": 1, "pid": NaN}', "NaN is not valid JSON"),
        (b'{"schema": 1, "pid": Infinity}', "Infinity is not valid JSON"),
        (b"[" * 100000 + b"]" * 100000, "JSON"),
        (_mutated(("pid",), 0), "'pid' must be a positive whole number, got 0"),
        (_mutated(("pid",), -1), "'pid' must be a positive whole number, got -1"),
        (_mutated(("pid",), 2**31), "'pid' must be a positive whole number, got 2147483648"),
        (_mutated(("pid",), True), "'pid' must be a positive whole number, got true"),
        (_mutated(("pid",), 4.5), "'pid' must be a positive whole number, got 4.5"),
        (_mutated(("pid",), None, delete=True), "no 'pid' key"),
        (_mutated(("config",), 3), "'config' must be a string, got 3"),
        (_mutated(("started",), "now"), "'started' must be a number of seconds, got a string"),
        (_mutated(("beat",), None), "'beat' must be a number of seconds, got null"),
        (_mutated(("checks_completed",), -5), "'checks_completed' must be a whole number"),
        (_mutated(("virtuals",), {}), "'virtuals' must be a list, got an object"),
        (_mutated(("virtuals", 0), 7), "virtuals[0]: expected a JSON object, got 7"),
        (_mutated(("virtuals", 0, "name"), None, delete=True), "virtuals[0]: no 'name' key"),
        (_mutated(("virtuals", 0, "reals_up"), 4), "reals_up 4 is more than reals_total 3"),
        (_mutated(("virtuals", 0, "reals_up"), False), "virtuals[0]: 'reals_up' must be"),
        (_mutated(("virtuals", 0, "fallback_active"), 0), "'fallback_active' must be true or"),
        (_mutated(("virtuals", 0, "protocol"), ["tcp"]), "'protocol' must be a string, got a list"),
    ],
)
def test_bad_content_is_a_format_error(data: bytes, message: str) -> None:
    with pytest.raises(pf.PulseFormatError) as info:
        pf.decode(data)
    assert message in str(info.value)
    assert not isinstance(info.value, pf.UnknownSchemaError)


def test_integer_times_become_floats() -> None:
    doc = pf.decode(_mutated(("started",), 1764106000))
    assert doc is not None
    assert isinstance(doc.started, float)


def test_encode_refuses_what_schema_1_cannot_carry() -> None:
    with pytest.raises(ValueError, match="schema"):
        pf.encode(example()._replace(schema=2))
    with pytest.raises(ValueError, match="finite"):
        pf.encode(example()._replace(beat=math.nan))
    with pytest.raises(ValueError, match="finite"):
        pf.encode(example()._replace(started=math.inf))


def test_encode_keeps_non_ascii_names_as_escapes() -> None:
    doc = example()._replace(config="/etc/ha.d/lé.cf")
    data = pf.encode(doc)
    assert data.isascii()
    assert pf.decode(data) == doc


@pytest.mark.parametrize(
    ("name", "rundir", "path"),
    [
        ("ldirectord", "/var/run", "/var/run/ldirectord.ldirectord.pulse"),
        ("ldirectord.cf", "/run/", "/run/ldirectord.ldirectord.cf.pulse"),
        ("web", "/", "/ldirectord.web.pulse"),
    ],
)
def test_pulse_path(name: str, rundir: str, path: str) -> None:
    assert pf.pulse_path(name, rundir) == path


def test_plugin_default_path_is_the_format_default() -> None:
    assert Options().path == pf.pulse_path() == "/var/run/ldirectord.ldirectord.pulse"
    opts = Options()
    opts.name, opts.rundir = "web", "/run"
    assert opts.path == pf.pulse_path("web", "/run")


@pytest.mark.parametrize(
    ("address", "port", "name"),
    [
        ("192.168.6.240", 80, "192.168.6.240:80"),
        ("2001:db8::1", 443, "[2001:db8::1]:443"),
        ("[2001:db8::1]", 443, "[2001:db8::1]:443"),
        ("7", None, "7"),
    ],
)
def test_virtual_name(address: str, port: int | None, name: str) -> None:
    assert pf.virtual_name(address, port) == name


names = st.text(min_size=0, max_size=30)
virtuals = st.builds(
    lambda name, proto, up, extra, fb: pf.PulseVirtual(
        name=name, protocol=proto, reals_up=up, reals_total=up + extra, fallback_active=fb
    ),
    names,
    st.sampled_from(["tcp", "udp", "fwm", "sctp"]),
    st.integers(0, 10_000),
    st.integers(0, 10_000),
    st.booleans(),
)


docs = st.builds(
    pf.PulseDoc,
    pid=st.integers(1, 2**22),
    config=names,
    started=st.floats(0, 4e9),
    beat=st.floats(0, 4e9),
    checks_completed=st.integers(0, 2**63),
    virtuals=st.lists(virtuals, max_size=8).map(tuple),
)


@given(docs)
def test_round_trip_property(doc: pf.PulseDoc) -> None:
    data = pf.encode(doc)
    assert data.count(b"\n") == 1
    assert pf.decode(data) == doc


@given(st.binary(max_size=200))
def test_decode_never_raises_anything_but_format_errors(data: bytes) -> None:
    with contextlib.suppress(pf.PulseFormatError):
        pf.decode(data)
