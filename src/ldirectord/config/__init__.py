"""ldirectord.cf → Config: ``load(path)`` and ``parse_text(text)`` (implemented in loader.py).

Both raise ConfigError carrying every problem (``file:line:col: message``), never anything
else. The package itself imports nothing: ``load``, ``parse_text`` and the rest are fetched
from loader.py on first use, so commands that never parse a config (``status``, ``stop``,
which only need config.lookup) do not pay for the lexer, parser and resolver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ldirectord.config.loader import MAX_BYTES, decode, load, parse_text, read_bytes
    from ldirectord.errors import ConfigError

__all__ = ["MAX_BYTES", "ConfigError", "decode", "load", "parse_text", "read_bytes"]

_LAZY = frozenset(__all__)

if not TYPE_CHECKING:  # hidden from mypy, so a misspelt name stays a type error

    def __getattr__(name: str) -> object:
        """``from ldirectord.config import load`` (PEP 562): import loader.py on first use."""
        if name not in _LAZY:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from ldirectord.config import loader

        value: object = getattr(loader, name)
        globals()[name] = value  # later look-ups skip this function
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
