"""Ours end to end against real IPVS, beside the anchors (host side, plus ours' recipe).

Owns ours_recipe() (how our daemon is started in the guest; stdlib only, imported there).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from bench.anchors import Recipe, ldirectord_cf


def ours_recipe(
    workdir: str,
    reals: Sequence[str],
    *,
    check: str = "http",
    interval: int = 1,
    timeout: int = 2,
    weights: Mapping[str, int] | None = None,
) -> Recipe:
    """Our daemon in the foreground on the IPVS backend, reading the same ldirectord.cf."""
    path = os.path.join(workdir, "bench.cf")
    text = ldirectord_cf(
        reals,
        check=check,
        interval=interval,
        timeout=timeout,
        weights=weights,
        logfile=os.path.join(workdir, "ours.log"),
    )
    script = os.path.join(os.path.dirname(sys.executable), "ldirectord")
    head = (script,) if os.access(script, os.X_OK) else (sys.executable, "-m", "ldirectord")
    argv = (*head, "--backend", "ipvs", "-d", "--rundir", workdir, path, "start")
    return Recipe("ours", argv, path, text, workdir)
