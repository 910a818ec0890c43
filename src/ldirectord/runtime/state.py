"""The pulse document and the richer state file that ``status`` reads, built from a snapshot.

Owns the translation of the engine's snapshot into (a) the schema-1 pulse (encoded by
``ldirectord.pulse_format``) and (b) ``<rundir>/ldirectord.<name>.state``: versioned JSON with
the daemon phase, backend and, per virtual service, every real server with its weight, health,
last check result and last change. Readers ignore unknown keys; an incompatible shape bumps
``schema``. Pure apart from the wall clock the caller passes in.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from enum import Enum
from typing import Any

from ldirectord.pulse_format import PulseDoc, PulseVirtual

STATE_SCHEMA = 1


def pulse_document(
    snap: Any, *, pid: int, config: str, started: float, beat: float, checks_completed: int
) -> PulseDoc:
    """The schema-1 pulse for a DirectorSnapshot (None before the engine runs: no virtuals)."""
    virtuals = tuple(
        PulseVirtual(
            name=v.name,
            protocol=v.protocol,
            reals_up=v.reals_up,
            reals_total=v.reals_total,
            fallback_active=v.fallback_active,
        )
        for v in (snap.virtuals if snap is not None else ())
    )
    return PulseDoc(
        pid=pid,
        config=config,
        started=started,
        beat=beat,
        checks_completed=checks_completed,
        virtuals=virtuals,
    )


def as_mapping(obj: Any) -> Mapping[str, Any]:
    """A snapshot node as a mapping (the engine may hand out dataclasses or dicts)."""
    if isinstance(obj, Mapping):
        return obj
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f: getattr(obj, f) for f in obj.__dataclass_fields__}
    return {k: getattr(obj, k) for k in dir(obj) if not k.startswith("_")}


def plain(obj: Any) -> Any:
    """JSON-able copy of a snapshot value (enums to their value, dataclasses to dicts)."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return plain(asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [plain(v) for v in obj]
    if isinstance(obj, Enum):
        return plain(obj.value)
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    return str(obj)


def encode_state(doc: Mapping[str, Any]) -> bytes:
    return (json.dumps(plain(doc), sort_keys=True, indent=1) + "\n").encode()


def decode_state(data: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or doc.get("schema") != STATE_SCHEMA:
        return None
    return doc


def state_virtuals(snap: Any, wall_offset: float) -> list[dict[str, Any]]:
    """The state file's per-virtual rows from a DirectorSnapshot; monotonic times become wall
    times with one fixed ``wall_offset`` (time.time() - time.monotonic() at start-up), so an
    unchanged real keeps exactly the same last_change."""
    rows: list[dict[str, Any]] = []
    if snap is None:
        return rows
    for v in snap.virtuals:
        reals = []
        for r in v.reals:
            host = f"[{r.address}]" if ":" in r.address else r.address
            out = r.last_outcome
            reals.append(
                {
                    "name": f"{host}:{r.port}",
                    "address": r.address,
                    "port": r.port,
                    "weight": r.weight,
                    "up": r.up,
                    "health": r.state,
                    "last_result": None if out is None else plain(out.reason),
                    "last_detail": None if out is None else out.detail,
                    "last_duration": None if out is None else round(out.duration, 4),
                    "last_change": None
                    if r.last_change is None
                    else round(r.last_change + wall_offset, 3),
                }
            )
        rows.append(
            {
                "name": v.name,
                "protocol": v.protocol,
                "reals_up": v.reals_up,
                "reals_total": v.reals_total,
                "fallback_active": v.fallback_active,
                "reals": reals,
            }
        )
    return rows
