"""Text → logical lines: column-0 global lines and indented virtual blocks, with positions.

Owns ldirectord's line rules (read_config) and nothing about what a directive means:
* lines are split on "\\n" only (a "\\r" stays part of the line, as in Perl);
* a column-0 ``virtual=``/``virtual6=`` line opens a block; each following line is skipped
  when its first non-blank character is ``#``; otherwise everything from the first ``#`` is
  deleted, every TAB becomes 4 spaces, and the line belongs to the block only while it then
  reads ``^ {4,}(.+)``. The first line that does not is dispatched again as a global line
  (so a blank line ends a block, and so does a 1–3 space indent);
* at global level, blank and full-line-comment lines are skipped and nothing else is stripped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

_VIRTUAL_HEADER = re.compile(r"^virtual(6)?\s*=\s*(.*)", re.ASCII)
_COMMENT_LINE = re.compile(r"^\s*#", re.ASCII)
_BLANK_LINE = re.compile(r"^\s*$", re.ASCII)
_BLOCK_LINE = re.compile(r"^ {4,}(.+)", re.ASCII)


@dataclass(frozen=True, slots=True)
class SourceLine:
    number: int  # 1-based
    raw: str  # the line as read, without its "\n"


@dataclass(frozen=True, slots=True)
class GlobalLine:
    line: SourceLine

    @property
    def text(self) -> str:
        return self.line.raw


@dataclass(frozen=True, slots=True)
class BlockLine:
    """One directive line of a virtual block after comment stripping and TAB expansion."""

    line: SourceLine
    text: str  # ldirectord's $rcmd: the line without its indent, "#..." and TABs
    body: str = ""  # the raw line up to its first "#" (TABs not yet expanded)
    start: int = 0  # index of ``text`` in the TAB-expanded body

    def col_of(self, index: int) -> int:
        """1-based column in the raw line of ``text[index]``."""
        target = self.start + max(index, 0)
        if "\t" not in self.body:
            return target + 1
        width = 0
        for position, char in enumerate(self.body):
            width += 4 if char == "\t" else 1
            if width > target:
                return position + 1
        return len(self.body) + 1


class BlockEnd(Enum):
    """Why a virtual block ended; used only to give better hints."""

    EOF = "end of file"
    BLANK = "blank line"
    SHORT_INDENT = "line indented by fewer than 4 spaces"
    COLUMN0 = "column-0 line"


@dataclass(slots=True)
class VirtualBlock:
    header: SourceLine
    family6: bool  # virtual6=
    value: str  # the text after "virtual=" / "virtual6="
    value_col: int  # 1-based column of ``value`` in the header line
    lines: list[BlockLine] = field(default_factory=list)
    ended_by: BlockEnd = BlockEnd.EOF
    end_line: int = 0  # number of the line that ended the block (0 at EOF)


LogicalItem = GlobalLine | VirtualBlock


def split_lines(text: str) -> list[SourceLine]:
    """Split as Perl's ``<FH>`` does: on "\\n" only, the last line may lack it."""
    parts = text.split("\n")
    if parts and parts[-1] == "":
        parts.pop()
    return [SourceLine(i + 1, raw) for i, raw in enumerate(parts)]


def _block_line(line: SourceLine) -> BlockLine | None:
    """ldirectord's in-block processing; None when the line does not belong to the block."""
    raw = line.raw
    hash_at = raw.find("#")
    body = raw if hash_at < 0 else raw[:hash_at]
    text = body.replace("\t", "    ")
    match = _BLOCK_LINE.match(text)
    if match is None:
        return None
    return BlockLine(line, match.group(1), body, match.start(1))


def _classify_end(raw: str) -> BlockEnd:
    if _BLANK_LINE.match(raw):
        return BlockEnd.BLANK
    if raw[:1] in (" ", "\t"):
        return BlockEnd.SHORT_INDENT
    return BlockEnd.COLUMN0


def lex(lines: list[SourceLine]) -> list[LogicalItem]:
    """Group source lines into global lines and virtual blocks, exactly as read_config."""
    items: list[LogicalItem] = []
    index = 0
    total = len(lines)
    while index < total:
        line = lines[index]
        index += 1
        header = _VIRTUAL_HEADER.match(line.raw)
        if header is None:
            if _BLANK_LINE.match(line.raw) or _COMMENT_LINE.match(line.raw):
                continue
            items.append(GlobalLine(line))
            continue
        block = VirtualBlock(
            line, header.group(1) is not None, header.group(2), header.start(2) + 1
        )
        items.append(block)
        while index < total:
            inner = lines[index]
            if _COMMENT_LINE.match(inner.raw):
                index += 1
                continue
            processed = _block_line(inner)
            if processed is None:
                block.ended_by = _classify_end(inner.raw)
                block.end_line = inner.number
                break  # re-dispatched as a global line by the outer loop
            block.lines.append(processed)
            index += 1
    return items
