"""ldirectord.cf → Config: ``load(path)`` and ``parse_text(text)`` (re-exported, lazily, by
the ``ldirectord.config`` package).

Both raise ConfigError carrying every problem (``file:line:col: message``), never anything
else. Reading bytes is done here; lexing, parsing and validation are pure; host names are
resolved by resolve.SystemEnvironment with a deadline (or by the Environment passed in).
"""

from __future__ import annotations

import os
import stat

from ldirectord.config.environment import Environment
from ldirectord.config.location import Location
from ldirectord.config.model import Config
from ldirectord.config.parser import parse
from ldirectord.config.resolve import DEFAULT_DEADLINE, SystemEnvironment
from ldirectord.config.validate import validate
from ldirectord.errors import ConfigError, ConfigProblem

MAX_BYTES = 64 * 1024 * 1024

__all__ = ["MAX_BYTES", "ConfigError", "decode", "load", "parse_text", "read_bytes"]


def _fail(filename: str, message: str, hint: str | None = None, line: int = 0) -> ConfigError:
    return ConfigError(
        [ConfigProblem(Location(filename, line, 0 if line == 0 else 1), message, hint)]
    )


def decode(data: bytes, filename: str) -> str:
    """Bytes → text. Perl reads bytes; undecodable bytes are kept (surrogateescape)."""
    nul = data.find(b"\0")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise _fail(
            filename, "not a text file (contains NUL bytes)", "is this the right file?", line
        )
    return data.decode("utf-8", errors="surrogateescape")


def parse_text(
    text: str,
    filename: str = "<text>",
    *,
    env: Environment | None = None,
    check_files: bool = True,
    resolve_deadline: float = DEFAULT_DEADLINE,
) -> Config:
    """Parse config text. ``check_files=False`` skips the logfile/monitorfile/maintenancedir checks."""
    if "\0" in text:
        raise _fail(
            filename, "not a text file (contains NUL characters)", "is this the right file?"
        )
    raw = parse(text, filename)
    system = env is None
    environment: Environment = env or SystemEnvironment(resolve_deadline, check_files)
    config, problems = validate(raw, environment, filename)
    for _ in range(3):  # names are looked up together, then validation runs again with them
        if not (system and isinstance(environment, SystemEnvironment)):
            break
        if not environment.resolve_pending():
            break
        config, problems = validate(raw, environment, filename)
    if config is None:
        raise ConfigError(problems.errors)
    return config


def read_bytes(path: str) -> bytes:
    """The file's bytes, or ConfigError for a missing, unreadable, special or huge file."""
    try:
        mode = os.stat(path).st_mode  # before open(): opening a FIFO would block
        if stat.S_ISDIR(mode):
            raise _fail(path, "is a directory, not a config file")
        if not stat.S_ISREG(mode):
            raise _fail(path, "not a regular file")
        with open(path, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except IsADirectoryError:
        raise _fail(path, "is a directory, not a config file") from None
    except FileNotFoundError:
        raise _fail(path, "can not open file: no such file") from None
    except PermissionError:
        raise _fail(path, "can not open file: permission denied") from None
    except (OSError, ValueError) as exc:
        raise _fail(path, f"can not open file: {exc}") from None
    if len(data) > MAX_BYTES:
        raise _fail(path, f"file is larger than {MAX_BYTES // (1024 * 1024)} MiB")
    return data


def load(
    path: str,
    *,
    env: Environment | None = None,
    check_files: bool = True,
    resolve_deadline: float = DEFAULT_DEADLINE,
) -> Config:
    """Read and parse a config file; every problem at once in a ConfigError."""
    text = decode(read_bytes(path), path)
    return parse_text(
        text, path, env=env, check_files=check_files, resolve_deadline=resolve_deadline
    )
