"""ldirectord's ``receive`` patterns: Perl regular expressions, matched with Python's ``re``.

Owns compiling ``receive`` once per pattern and turning an invalid one into a CONFIG failure.
The constructs health checks use (literals, classes, anchors, ``.*``, alternation, groups)
mean the same in both dialects; Perl-only spellings are rewritten by ``_net.perl_regex``
as for the HTTP and simpletcp checks. Pure: no IO.
"""

from __future__ import annotations

import functools
import re

from ldirectord.checks._net import perl_regex
from ldirectord.checks.base import CheckFailed, Reason


@functools.lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(perl_regex(pattern))


def receive_regex(pattern: str) -> re.Pattern[str]:
    """The compiled ``receive``; CheckFailed(CONFIG) when Python cannot compile it."""
    try:
        return _compile(pattern)
    except re.error as exc:
        raise CheckFailed(
            Reason.CONFIG, f"receive {pattern!r} is not a valid regex: {exc}"
        ) from None


def matches(pattern: str, text: str) -> bool:
    """Perl's ``$text =~ /$pattern/``; an empty pattern matches everything."""
    return not pattern or receive_regex(pattern).search(text) is not None
