"""The pulse file format: schema-1 documents, their encoding and their strict decoding.

This module owns the bytes of the pulse file that sits beside the pid file
(``<rundir>/ldirectord.<name>.pulse``) and nothing else: it does no IO, never imports asyncio,
and knows neither the daemon nor the plugin. The daemon (writer) and ``check_ldirectord_pulse``
and ``ldirectord status`` (readers) share it, so the shape is defined in exactly one place.

The pulse's *signal* is the file's mtime (moved on every beat); the content is extra detail.

API
---
``PulseDoc`` / ``PulseVirtual``
    Frozen, slotted, keyword-only dataclasses mirroring schema 1 (design.md, "The pulse")::

        PulseDoc(pid=4242, config="/etc/ha.d/ldirectord.cf", started=1764106000.12,
                 beat=1764106123.45, checks_completed=9876,
                 virtuals=(PulseVirtual(name="192.168.6.240:80", protocol="tcp",
                                        reals_up=2, reals_total=3, fallback_active=False),))

    ``schema`` defaults to ``SCHEMA`` (1). Times are Unix seconds (floats); ``name`` is
    ``ip:port``, ``[ip6]:port`` or the fwmark number as a string (see ``virtual_name``).

``encode(doc) -> bytes``
    One line of JSON plus ``\\n``. Raises ``ValueError`` for a document that schema 1 cannot
    carry (wrong schema number, NaN/infinite times). The writer must publish it atomically:
    write a temp file in the same directory, fsync, rename over the pulse (readers take no lock).

``decode(data) -> PulseDoc | None``
    ``None`` for an empty (or whitespace-only) file: the mtime-only pulse of a patched Perl
    ldirectord. Raises ``UnknownSchemaError`` (``.version``) for a well-formed document of
    another schema, ``PulseFormatError`` for anything truncated, garbled or mistyped. Unknown
    keys are ignored at every level, so a writer may add fields without bumping the schema;
    an incompatible change bumps ``schema``.

``pulse_path(name, rundir)`` and ``virtual_name(address, port)``
    The file-name and virtual-name rules, shared by writer and readers.

The plugin starts for every check, so ``json`` is imported only when ``encode``/``decode``
have non-empty data to work on (the plugin does not import this module at all for an empty
pulse). ``dataclasses`` is the one heavier import left, about 9 ms of CPU at start-up.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

__all__ = [
    "DEFAULT_NAME",
    "DEFAULT_RUNDIR",
    "SCHEMA",
    "PulseDoc",
    "PulseFormatError",
    "PulseVirtual",
    "UnknownSchemaError",
    "decode",
    "encode",
    "pulse_path",
    "virtual_name",
]

#: The schema version this module writes and the only one it reads.
SCHEMA = 1
DEFAULT_RUNDIR = "/var/run"
#: ``ldirectord start`` with the default config ``ldirectord.cf`` uses the name ``ldirectord``.
DEFAULT_NAME = "ldirectord"
_PID_MAX = 2**31 - 1  # pid_t; a larger number is not a pid (and would overflow os.kill)


class PulseFormatError(ValueError):
    """The pulse content is not a valid document: truncated, not JSON, or wrongly typed."""


class UnknownSchemaError(PulseFormatError):
    """A well-formed pulse document of a schema version this reader does not understand."""

    def __init__(self, version: object) -> None:
        super().__init__(f"unknown pulse schema {version!r} (this reader understands {SCHEMA})")
        self.version = version


@dataclass(frozen=True, slots=True, kw_only=True)
class PulseVirtual:
    """One virtual service as the daemon last saw it."""

    name: str
    protocol: str
    reals_up: int
    reals_total: int
    fallback_active: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class PulseDoc:
    """The whole pulse document (schema 1)."""

    pid: int
    config: str
    started: float
    beat: float
    checks_completed: int
    virtuals: tuple[PulseVirtual, ...] = ()
    schema: int = SCHEMA


def pulse_path(name: str = DEFAULT_NAME, rundir: str = DEFAULT_RUNDIR) -> str:
    """``<rundir>/ldirectord.<name>.pulse``, the same ``<name>`` rule as the pid file."""
    return os.path.join(rundir, f"ldirectord.{name}.pulse")


def virtual_name(address: str, port: int | None) -> str:
    """``ip:port``, ``[ip6]:port``, or (``port`` None) the address alone, e.g. a fwmark."""
    if port is None:
        return address
    if ":" in address and not address.startswith("["):
        return f"[{address}]:{port}"
    return f"{address}:{port}"


def encode(doc: PulseDoc) -> bytes:
    """Serialise ``doc`` as one line of JSON followed by a newline."""
    import json

    if doc.schema != SCHEMA:
        raise ValueError(f"encode writes schema {SCHEMA}, not {doc.schema!r}")
    for label, value in (("started", doc.started), ("beat", doc.beat)):
        if not math.isfinite(value):
            raise ValueError(f"pulse {label} time must be finite, not {value!r}")
    obj = {
        "schema": SCHEMA,
        "pid": doc.pid,
        "config": doc.config,
        "started": doc.started,
        "beat": doc.beat,
        "checks_completed": doc.checks_completed,
        "virtuals": [
            {
                "name": v.name,
                "protocol": v.protocol,
                "reals_up": v.reals_up,
                "reals_total": v.reals_total,
                "fallback_active": v.fallback_active,
            }
            for v in doc.virtuals
        ],
    }
    return json.dumps(obj, allow_nan=False, ensure_ascii=True).encode("ascii") + b"\n"


def decode(data: bytes) -> PulseDoc | None:
    """Parse pulse file content; ``None`` for an empty (mtime-only) pulse."""
    if not data.strip():
        return None
    import json

    try:
        text = data.decode("utf-8")
        obj = json.loads(text, parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise PulseFormatError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except ValueError as exc:  # json.JSONDecodeError and _reject_constant
        raise PulseFormatError(f"truncated or invalid JSON ({exc})") from None
    except RecursionError:
        raise PulseFormatError("invalid JSON (nested too deeply)") from None
    if not isinstance(obj, dict):
        raise PulseFormatError(f"expected a JSON object, got {_kind(obj)}")
    if "schema" not in obj:
        raise PulseFormatError("no 'schema' key")
    schema = obj["schema"]
    if type(schema) is not int or schema != SCHEMA:
        raise UnknownSchemaError(schema)
    pid, config = _pid(obj), _str(obj, "config")
    started, beat = _time(obj, "started"), _time(obj, "beat")
    checks_completed = _count(obj, "checks_completed")
    raw_virtuals = _field(obj, "virtuals", "")
    if not isinstance(raw_virtuals, list):
        raise _wrong("virtuals", "a list", raw_virtuals, "")
    return PulseDoc(
        schema=SCHEMA,
        pid=pid,
        config=config,
        started=started,
        beat=beat,
        checks_completed=checks_completed,
        virtuals=tuple(_virtual(i, v) for i, v in enumerate(raw_virtuals)),
    )


def _virtual(index: int, obj: object) -> PulseVirtual:
    where = f"virtuals[{index}]: "
    if not isinstance(obj, dict):
        raise PulseFormatError(f"{where}expected a JSON object, got {_kind(obj)}")
    up = _count(obj, "reals_up", where)
    total = _count(obj, "reals_total", where)
    if up > total:
        raise PulseFormatError(f"{where}reals_up {up} is more than reals_total {total}")
    return PulseVirtual(
        name=_str(obj, "name", where),
        protocol=_str(obj, "protocol", where),
        reals_up=up,
        reals_total=total,
        fallback_active=_bool(obj, "fallback_active", where),
    )


def _field(obj: dict[str, object], key: str, where: str) -> object:
    if key not in obj:
        raise PulseFormatError(f"{where}no {key!r} key")
    return obj[key]


def _wrong(key: str, what: str, value: object, where: str) -> PulseFormatError:
    return PulseFormatError(f"{where}{key!r} must be {what}, got {_kind(value)}")


def _str(obj: dict[str, object], key: str, where: str = "") -> str:
    value = _field(obj, key, where)
    if not isinstance(value, str):
        raise _wrong(key, "a string", value, where)
    return value


def _bool(obj: dict[str, object], key: str, where: str = "") -> bool:
    value = _field(obj, key, where)
    if not isinstance(value, bool):
        raise _wrong(key, "true or false", value, where)
    return value


def _count(obj: dict[str, object], key: str, where: str = "") -> int:
    value = _field(obj, key, where)
    # bool is an int subclass: a count given as true/false is a type error.
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _wrong(key, "a whole number, 0 or more", value, where)
    return value


def _pid(obj: dict[str, object]) -> int:
    # A pid of 0 or below would make os.kill(pid, 0) probe a process group: refuse it here.
    value = _field(obj, "pid", "")
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= _PID_MAX:
        raise _wrong("pid", "a positive whole number", value, "")
    return value


def _time(obj: dict[str, object], key: str) -> float:
    value = _field(obj, key, "")
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _wrong(key, "a number of seconds", value, "")
    return float(value)


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"
