"""The Nagios range parser: syntax, evaluation at every edge, and strict refusals."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ldirectord.nagios.ranges import Range, RangeError, parse_range

INF = math.inf


@pytest.mark.parametrize(
    ("text", "start", "end", "inside"),
    [
        ("10", 0, 10, False),
        ("10:", 10, INF, False),
        ("~:10", -INF, 10, False),
        ("10:20", 10, 20, False),
        ("@10:20", 10, 20, True),
        (":10", 0, 10, False),  # an empty start is 0, as in the C plugins
        ("~:", -INF, INF, False),
        ("@~:0", -INF, 0, True),
        ("0", 0, 0, False),
        ("1.5", 0, 1.5, False),
        (".5", 0, 0.5, False),
        ("5.", 0, 5, False),
        ("-5:-1", -5, -1, False),
        ("+3:+4", 3, 4, False),
        ("10:10", 10, 10, False),
    ],
)
def test_parse(text: str, start: float, end: float, inside: bool) -> None:
    r = parse_range(text)
    assert (r.start, r.end, r.inside, r.text) == (start, end, inside, text)


@pytest.mark.parametrize(
    ("text", "alerting", "quiet"),
    [
        ("10", [-1, -0.1, 10.1, 11, 1e9], [0, 5, 10]),
        ("10:", [-1, 0, 9, 9.99], [10, 11, 1e9]),
        ("~:10", [10.01, 11, 1e9], [-1e9, -1, 0, 10]),
        ("10:20", [9, 9.99, 20.01, 21], [10, 15, 20]),
        ("@10:20", [10, 15, 20], [9, 9.99, 20.01, 21]),
        ("~:", [], [-1e18, 0, 1e18]),
        ("@~:", [-1e18, 0, 1e18], []),
    ],
)
def test_alerts(text: str, alerting: list[float], quiet: list[float]) -> None:
    r = parse_range(text)
    assert [x for x in alerting if not r.alerts(x)] == []
    assert [x for x in quiet if r.alerts(x)] == []


def test_above_is_only_the_past_the_end_side() -> None:
    assert parse_range("120").above(121)
    assert not parse_range("120").above(-1)
    assert not parse_range("10:").above(5)
    assert not parse_range("@10:20").above(30)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "@",
        "20:10",
        "-5",  # 0:-5 starts after it ends
        "a",
        "1e3",
        "inf",
        "nan",
        "-inf:0",
        "10:20:30",
        "~",
        "10:~",
        "1.2.3",
        ".",
        " 10",
        "10 ",
        "+",
        "-",
        "\u00b2",
        "\u0661",  # Arabic-Indic one: a digit to str.isdigit, not to us
        "@@10",
        "0x10",
        "1_000",
    ],
)
def test_refused(text: str) -> None:
    with pytest.raises(RangeError):
        parse_range(text)


def test_range_error_is_a_value_error() -> None:
    assert issubclass(RangeError, ValueError)


def test_equality_and_repr() -> None:
    assert parse_range("10") == parse_range("0:10")
    assert parse_range("10") != parse_range("@0:10")
    assert len({parse_range("10"), parse_range(":10")}) == 1
    assert repr(parse_range("~:5")) == "Range('~:5')"
    assert parse_range("10").__eq__(object()) is NotImplemented


@given(
    st.integers(-1000, 1000),
    st.integers(0, 1000),
    st.booleans(),
    st.integers(-3000, 3000),
)
def test_alerts_matches_the_definition(start: int, width: int, inside: bool, x: int) -> None:
    end = start + width
    r = parse_range(f"{'@' if inside else ''}{start}:{end}")
    assert isinstance(r, Range)
    assert r.alerts(x) == ((start <= x <= end) if inside else not (start <= x <= end))
