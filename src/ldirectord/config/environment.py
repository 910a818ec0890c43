"""What validation needs to know about the machine, as a narrow interface.

Validation is pure: names, ports, files and the host name come through an Environment.
resolve.SystemEnvironment is the real one (resolver with a deadline, /etc/services, file
checks); tests pass a fake. Owns only the interface.
"""

from __future__ import annotations

from typing import Protocol

from ldirectord.config.model import Family


class Environment(Protocol):
    #: The name ldirectord puts in ftp/sip default logins (ldirectord@HOSTNAME).
    hostname: str

    def host(self, name: str, family: Family) -> str | None:
        """The first address ``name`` resolves to in ``family`` (no brackets), else None."""
        ...

    def host_failure(self, name: str, family: Family) -> str:
        """Why ``name`` did not resolve, e.g. "does not resolve" or "timed out after 5 s"."""
        ...

    def port(self, name: str, protocol: str) -> int | None:
        """A port number or service name (getservbyname with ``protocol``, "" = any)."""
        ...

    def unwritable(self, path: str) -> str | None:
        """Why ``path`` cannot be opened for append, or None when it can (nothing is created)."""
        ...

    def is_dir(self, path: str) -> bool: ...
