"""Shared test configuration: repository paths. Fixtures live beside the tests that use them."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Real-world ldirectord.cf files with what Perl ldirectord makes of them (expected.json), copied
#: byte for byte from the team's shared folder so a clean clone tests them too.
SHARED = ROOT / "tests" / "data" / "shared"
