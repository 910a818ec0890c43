"""Where a piece of configuration came from: file, line and column (1-based).

Owns only the position type and its rendering; knows nothing about directives.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class Location:
    file: str
    line: int
    col: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


NOWHERE = Location("<none>", 0, 0)
