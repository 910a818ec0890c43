"""Shared test configuration: repository paths. Fixtures live beside the tests that use them."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
