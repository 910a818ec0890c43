"""Logical lines → a raw directive tree: ``name = value`` pairs with positions, nothing more.

Owns the split of a line into a directive name and its value (``name\\s*=\\s*value``, as every
ldirectord regex reads it) and the grouping into globals and virtual blocks. It applies no
defaults and gives no meaning: quoting, numbers and names are validate.py's business.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ldirectord.config.lexer import (
    BlockEnd,
    BlockLine,
    GlobalLine,
    LogicalItem,
    VirtualBlock,
    lex,
    split_lines,
)
from ldirectord.config.location import Location

_NAME_VALUE = re.compile(r"^([A-Za-z0-9_]+)\s*=\s*(.*)", re.ASCII)


@dataclass(frozen=True, slots=True)
class Directive:
    """One ``name=value`` line. ``name`` is None when the line has no such shape."""

    name: str | None
    value: str  # after "=" and the blanks around it; the whole text when name is None
    loc: Location  # where the line's text starts
    value_loc: Location  # where the value starts
    text: str  # the logical line (a global's raw line, or a block line's $rcmd)
    raw: str  # the source line as read
    in_block: bool


@dataclass(slots=True)
class RawVirtual:
    family6: bool
    value: str  # text after "virtual=" / "virtual6="
    loc: Location  # the header line
    value_loc: Location
    raw: str
    directives: list[Directive] = field(default_factory=list)
    ended_by: BlockEnd = BlockEnd.EOF
    end_line: int = 0


@dataclass(slots=True)
class RawConfig:
    filename: str
    globals: list[Directive] = field(default_factory=list)
    virtuals: list[RawVirtual] = field(default_factory=list)
    #: Numbers of the blank lines, for hints ("a blank line ends a virtual block").
    blank_lines: frozenset[int] = frozenset()
    line_count: int = 0


def _global(item: GlobalLine, filename: str) -> Directive:
    text = item.text
    number = item.line.number
    match = _NAME_VALUE.match(text)
    name: str | None
    if match is not None:
        name, value, value_col = match.group(1), match.group(2), match.start(2) + 1
    else:
        name, value, value_col = None, text, 1
    if text.startswith("supervised") and name != "supervised":
        name = "supervised"  # ldirectord matches ^supervised and sorts it out itself
        value, value_col = text[len("supervised") :], len("supervised") + 1
    return Directive(
        name,
        value,
        Location(filename, number, len(text) - len(text.lstrip(" \t")) + 1),
        Location(filename, number, value_col),
        text,
        text,
        in_block=False,
    )


def _block(item: BlockLine, filename: str) -> Directive:
    text = item.text
    number = item.line.number
    match = _NAME_VALUE.match(text)
    if match is not None:
        name: str | None = match.group(1)
        value, value_index = match.group(2), match.start(2)
    else:
        name, value, value_index = None, text, 0
    return Directive(
        name,
        value,
        Location(filename, number, item.col_of(0)),
        Location(filename, number, item.col_of(value_index)),
        text,
        item.line.raw,
        in_block=True,
    )


def _virtual(block: VirtualBlock, filename: str) -> RawVirtual:
    number = block.header.number
    virtual = RawVirtual(
        block.family6,
        block.value,
        Location(filename, number, 1),
        Location(filename, number, block.value_col),
        block.header.raw,
        [_block(line, filename) for line in block.lines],
        block.ended_by,
        block.end_line,
    )
    return virtual


def parse_items(items: list[LogicalItem], filename: str) -> RawConfig:
    raw = RawConfig(filename)
    for item in items:
        if isinstance(item, GlobalLine):
            raw.globals.append(_global(item, filename))
        else:
            raw.virtuals.append(_virtual(item, filename))
    return raw


def parse(text: str, filename: str) -> RawConfig:
    """Text → raw tree. Never raises for any str input."""
    lines = split_lines(text)
    raw = parse_items(lex(lines), filename)
    raw.blank_lines = frozenset(line.number for line in lines if not line.raw.strip())
    raw.line_count = len(lines)
    return raw
