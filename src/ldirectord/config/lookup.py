"""Find the config file and its <name> exactly as ldirectord does (reference §4.1).

One argument (the command only) means ``ldirectord.cf`` with name ``ldirectord``; an explicit
config argument gives name = its basename. Lookup order: ``/etc/ha.d/<cfg>`` if it is a file,
else ``/etc/ha.d/conf/<cfg>``, else the argument as given.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_CONFIG = "ldirectord.cf"
DEFAULT_NAME = "ldirectord"
SEARCH_DIRS: tuple[str, ...] = ("/etc/ha.d", "/etc/ha.d/conf")


@dataclass(frozen=True, slots=True)
class ConfigRef:
    path: str  # the file to read (absolute when found through a search directory)
    name: str  # CFGNAME: pid file /var/run/ldirectord.<name>.pid
    as_given: str | None  # the argument as the user wrote it (None when defaulted)


def find_config(arg: str | None, search_dirs: tuple[str, ...] = SEARCH_DIRS) -> ConfigRef:
    cfg = arg if arg is not None else DEFAULT_CONFIG
    name = os.path.basename(cfg) if arg is not None else DEFAULT_NAME
    for directory in search_dirs:
        candidate = os.path.join(directory, cfg)
        if os.path.isfile(candidate):
            return ConfigRef(candidate, name, arg)
    return ConfigRef(os.path.abspath(cfg), name, arg)
