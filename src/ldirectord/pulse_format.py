"""The pulse file format: schema-1 documents, their encoding and their strict decoding.

This module owns the bytes of the pulse file that sits beside the pid file
(``<rundir>/ldirectord.<name>.pulse``) and nothing else: it does no IO, never imports asyncio,
and knows neither the daemon nor the plugin. The daemon (writer) and ``check_ldirectord_pulse``
and ``ldirectord status`` (readers) share it, so the shape is defined in exactly one place.

The pulse's *signal* is the file's mtime (moved on every beat); the content is extra detail.

API
---
``PulseDoc`` / ``PulseVirtual``
    Frozen, slotted, keyword-only records mirroring schema 1 (design.md, "The pulse"), with
    equality, hashing, a repr and ``_replace(**changes)``::

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

The plugin starts for every check, so this module imports nothing costly: the records are
written out by hand (``dataclasses`` pulls in ``inspect`` and ``re``, ~13 ms of a ~23 ms
plugin run), and ``decode`` drives CPython's C JSON scanner (``_json``) directly instead of
importing ``json`` (whose decoder module compiles regular expressions at import), falling back
to ``json`` where ``_json`` is missing. ``encode`` (the daemon) imports ``json``.
"""

from __future__ import annotations

import math
import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # no ``typing`` import at run time (the plugin's start-up)
    from typing import Any, ClassVar

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


class _Record:
    """A frozen, slotted record: what ``@dataclass(frozen=True, slots=True)`` would give,
    without importing ``dataclasses`` on the plugin's path."""

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()

    def _init(self, **values: Any) -> None:
        for name in self._fields:
            object.__setattr__(self, name, values[name])

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: cannot delete {name!r}")

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Record)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({inner})"

    def _replace(self, **changes: Any) -> Any:
        values = {name: getattr(self, name) for name in self._fields}
        unknown = set(changes) - set(values)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field(s) {sorted(unknown)}")
        return type(self)(**{**values, **changes})


class PulseVirtual(_Record):
    """One virtual service as the daemon last saw it."""

    __slots__ = ("fallback_active", "name", "protocol", "reals_total", "reals_up")
    _fields = ("name", "protocol", "reals_up", "reals_total", "fallback_active")
    name: str
    protocol: str
    reals_up: int
    reals_total: int
    fallback_active: bool

    def __init__(
        self, *, name: str, protocol: str, reals_up: int, reals_total: int, fallback_active: bool
    ) -> None:
        self._init(
            name=name,
            protocol=protocol,
            reals_up=reals_up,
            reals_total=reals_total,
            fallback_active=fallback_active,
        )


class PulseDoc(_Record):
    """The whole pulse document (schema 1)."""

    __slots__ = ("beat", "checks_completed", "config", "pid", "schema", "started", "virtuals")
    _fields = ("pid", "config", "started", "beat", "checks_completed", "virtuals", "schema")
    pid: int
    config: str
    started: float
    beat: float
    checks_completed: int
    virtuals: tuple[PulseVirtual, ...]
    schema: int

    def __init__(
        self,
        *,
        pid: int,
        config: str,
        started: float,
        beat: float,
        checks_completed: int,
        virtuals: tuple[PulseVirtual, ...] = (),
        schema: int = SCHEMA,
    ) -> None:
        self._init(
            pid=pid,
            config=config,
            started=started,
            beat=beat,
            checks_completed=checks_completed,
            virtuals=virtuals,
            schema=schema,
        )


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
    try:
        text = data.decode("utf-8")
        obj = _loads(text)
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


class _ScanContext:
    """What ``_json.make_scanner`` reads from a JSONDecoder: the defaults, but NaN/Infinity
    rejected."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> object:
        return _reject_constant(name)


_JSON_SPACE = " \t\n\r"


def _loads(text: str) -> object:
    """json.loads(text) rejecting NaN/Infinity, through the C scanner when there is one.
    Raises ValueError (json.JSONDecodeError is one) for invalid or truncated JSON."""
    try:
        import _json
    except ImportError:  # not CPython: the json package does the same, with its imports
        import json

        return json.loads(text, parse_constant=_reject_constant)
    scan = _json.make_scanner(_ScanContext())  # type: ignore[arg-type]  # duck-typed context
    start = len(text) - len(text.lstrip(_JSON_SPACE))
    try:
        obj, end = scan(text, start)
    except StopIteration as stop:
        raise ValueError(f"Expecting value at char {stop.value}") from None
    except SystemError:
        # The scanner reports a syntax error through json.decoder.JSONDecodeError, which it
        # only finds when json.decoder is loaded (CPython 3.11): on that error path only, let
        # the json package parse it again and raise the real error.
        import json

        return json.loads(text, parse_constant=_reject_constant)
    if text[end:].strip(_JSON_SPACE):
        raise ValueError(f"Extra data at char {end}")
    return obj


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
