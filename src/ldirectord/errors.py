"""One exception tree for the whole package.

ConfigError carries every problem found in a config (never just the first); BackendError
carries the failed kernel operation and its errno.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ldirectord.config.location import Location


class LdirectordError(Exception):
    """Base of every error this package raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One error (or warning) in a config file, with where it is and an optional hint."""

    location: Location
    message: str
    hint: str | None = None

    def render(self) -> str:
        text = f"{self.location}: {self.message}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


class ConfigError(LdirectordError):
    """A config could not be read or is invalid. Holds every problem at once."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems: tuple[ConfigProblem, ...] = tuple(problems)
        super().__init__("\n".join(p.render() for p in self.problems))


class BackendError(LdirectordError):
    """A forwarding backend (IPVS netlink, dry-run) failed to dump or apply."""

    def __init__(self, message: str, *, op: object | None = None, errno: int | None = None) -> None:
        self.op = op
        self.errno = errno
        super().__init__(message if errno is None else f"{message} (errno {errno})")
