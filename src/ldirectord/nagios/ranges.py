"""Nagios threshold ranges: ``[@][start:][end]``, parsed strictly and evaluated.

Owns the range syntax of the Monitoring Plugins guidelines (shared/docs/monitoring-conventions.md
§1.4) and nothing else; pure and stdlib-only (the plugin imports it on every run, so it avoids
``re``, ``dataclasses`` and ``enum``).

==========  ============================================
``10``      alert if x < 0 or x > 10
``10:``     alert if x < 10
``~:10``    alert if x > 10
``10:20``   alert if x < 10 or x > 20
``@10:20``  alert if 10 <= x <= 20 (inside, inverted)
==========  ============================================

Both ends are inclusive; an omitted start is 0, an omitted end is +infinity, ``~`` is
-infinity. Numbers are decimal (``-1``, ``2.5``, ``.5``); ``inf``, ``nan``, exponents and
whitespace are refused, as is an empty range and start > end.
"""

from __future__ import annotations

__all__ = ["Range", "RangeError", "parse_range"]

_INF = float("inf")


class RangeError(ValueError):
    """A threshold that is not a valid Nagios range."""


class Range:
    """A parsed range; ``alerts(x)`` says whether a value x raises the alert."""

    __slots__ = ("end", "inside", "start", "text")

    def __init__(self, start: float, end: float, inside: bool, text: str) -> None:
        self.start = start
        self.end = end
        self.inside = inside
        #: The range as the user wrote it: echoed verbatim in perfdata.
        self.text = text

    def alerts(self, value: float) -> bool:
        within = self.start <= value <= self.end
        return within if self.inside else not within

    def above(self, value: float) -> bool:
        """True when ``value`` alerts because it is past the end (the "too old" side)."""
        return not self.inside and value > self.end

    def __repr__(self) -> str:
        return f"Range({self.text!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Range):
            return NotImplemented
        return (self.start, self.end, self.inside) == (other.start, other.end, other.inside)

    def __hash__(self) -> int:
        return hash((self.start, self.end, self.inside))


def parse_range(text: str) -> Range:
    """Parse ``[@][start:][end]``; raise RangeError with a one-line reason."""
    body = text
    inside = body.startswith("@")
    if inside:
        body = body[1:]
    if not body:
        raise RangeError(f"empty range {text!r}")
    start_text, colon, end_text = body.partition(":")
    if not colon:
        start_text, end_text = "", body
    # An empty start (":10") is 0, as in the C plugins and Monitoring::Plugin.
    start = -_INF if start_text == "~" else _number(start_text, text, 0.0)
    end = _number(end_text, text, _INF)
    if start > end:
        raise RangeError(f"range {text!r} starts after it ends")
    return Range(start, end, inside, text)


def _number(part: str, text: str, default: float) -> float:
    if part == "":
        return default
    whole, _, fraction = (part[1:] if part[0] in "+-" else part).partition(".")
    if not (whole or fraction) or not (_digits(whole) and _digits(fraction)):
        raise RangeError(f"{part!r} in range {text!r} is not a number")
    return float(part)


def _digits(s: str) -> bool:
    return all("0" <= c <= "9" for c in s)
