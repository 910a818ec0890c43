"""What every check shares: the target it checks, the Outcome it returns, the Reason enum.

A check is an async callable ``(target) -> Outcome`` that never raises and never outlives
``target.deadline`` (seconds). This module owns those types and the one guard that turns a
check coroutine plus its deadline into an Outcome; it knows nothing about any protocol.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ldirectord.config.model import (
    CheckSpec,
    CheckType,
    Family,
    Protocol,
    RealServer,
    Service,
    VirtualService,
    effective_check_port,
)


class Reason(StrEnum):
    OK = "ok"
    TIMEOUT = "timeout"
    REFUSED = "refused"
    RESET = "reset"
    CLOSED = "closed"  # the peer closed the connection (FIN) before the check was done
    UNREACHABLE = "unreachable"
    TLS = "tls"
    BAD_STATUS = "bad_status"
    NO_MATCH = "no_match"
    AUTH = "auth"
    PROTOCOL = "protocol"
    RESOLVE = "resolve"
    SCRIPT_FAILED = "script_failed"
    MAINTENANCE = "maintenance"
    OFF = "off"
    CONFIG = "config"  # e.g. a SQL check without login/request, a missing driver
    INTERNAL = "internal"  # a bug of ours, caught so the daemon keeps going


@dataclass(frozen=True, slots=True)
class Outcome:
    up: bool
    reason: Reason
    detail: str = ""
    duration: float = 0.0  # seconds

    @staticmethod
    def ok(detail: str = "") -> Outcome:
        return Outcome(True, Reason.OK, detail)

    @staticmethod
    def down(reason: Reason, detail: str = "") -> Outcome:
        return Outcome(False, reason, detail)


@dataclass(frozen=True, slots=True)
class CheckTarget:
    """Everything one check of one real server needs, and its identity.

    Frozen and hashable: two reals (in different virtuals) with equal targets share one
    check and its result, as ldirectord shares results between identical real ids.
    """

    kind: CheckType  # CONNECT, NEGOTIATE, PING, EXTERNAL, EXTERNAL_PERL, ON, OFF (not COMBINED)
    service: Service
    family: Family
    protocol: Protocol  # the virtual's protocol; fwm checks over tcp
    host: str  # real server IP literal, IPv6 without brackets
    port: int  # effective check port
    spec: CheckSpec
    request: str  # effective (per-real override applied), as ldirectord stores it
    receive: str
    #: The arguments ldirectord passes to external checks: VIP (or fwmark), VPORT, RIP, RPORT.
    external_args: tuple[str, str, str, str] = ("", "", "", "")

    @property
    def deadline(self) -> float:
        """The hard deadline of the whole check, as ldirectord picks CT or NT per check."""
        if self.kind is CheckType.NEGOTIATE and self.service not in (
            Service.LDAP,
            Service.LDAPS,
            Service.RADIUS,
        ):
            return self.spec.negotiatetimeout
        if self.kind is CheckType.PING or (
            self.kind is CheckType.CONNECT and self.protocol is Protocol.UDP
        ):  # a connect check of a UDP virtual is a ping (checkcount attempts of CT each)
            return self.spec.checktimeout * max(1, self.spec.checkcount)
        return self.spec.checktimeout

    @property
    def host_for_url(self) -> str:
        return f"[{self.host}]" if self.family is Family.INET6 else self.host


def target_for(
    virtual: VirtualService, real: RealServer, kind: CheckType | None = None
) -> CheckTarget:
    """Build the check target of ``real`` in ``virtual`` (``kind`` overrides for combined mode)."""
    spec = virtual.check
    check_kind = kind or spec.checktype
    if check_kind is CheckType.COMBINED:
        check_kind = CheckType.NEGOTIATE
    host = f"[{real.address}]" if virtual.family is Family.INET6 else real.address
    if virtual.fwmark is not None:
        vaddr, vport = str(virtual.fwmark), "0"
    else:
        assert virtual.address is not None
        vaddr = f"[{virtual.address}]" if virtual.family is Family.INET6 else virtual.address
        vport = str(virtual.port)
    return CheckTarget(
        kind=check_kind,
        service=spec.service,
        family=virtual.family,
        protocol=virtual.protocol,
        host=real.address,
        port=effective_check_port(virtual, real),
        spec=spec,
        request=real.request if real.request is not None else spec.request,
        receive=real.receive if real.receive is not None else spec.receive,
        external_args=(vaddr, vport, host, str(real.port)),
    )


Check = Callable[[CheckTarget], Awaitable[Outcome]]


class CheckFailed(Exception):  # noqa: N818 - a result, not an error of ours
    """Raised inside a check to end it as down with this reason; ``guarded`` maps it."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(detail or reason.value)
        self.reason = reason
        self.detail = detail


#: What the running check is doing (``connect``, ``tls handshake``, ``waiting for status``...),
#: so a timeout can say where it happened. Set with set_phase(); guarded() resets it per check.
_PHASE: ContextVar[str] = ContextVar("ldirectord_check_phase", default="")


def set_phase(phase: str) -> None:
    _PHASE.set(phase)


def reason_for(exc: BaseException) -> Reason:
    """Map a foreign exception to a Reason (the boundary where exceptions become data)."""
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return Reason.TIMEOUT
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return Reason.TLS
    if isinstance(exc, socket.gaierror):
        return Reason.RESOLVE
    if isinstance(exc, ConnectionRefusedError):
        return Reason.REFUSED
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return Reason.RESET
    if isinstance(exc, asyncio.IncompleteReadError | EOFError):
        return Reason.CLOSED
    if isinstance(exc, asyncio.LimitOverrunError):
        return Reason.PROTOCOL
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL):
            return Reason.UNREACHABLE
        if exc.errno == errno.ECONNREFUSED:
            return Reason.REFUSED
        if exc.errno in (errno.ECONNRESET, errno.EPIPE):
            return Reason.RESET
        return Reason.UNREACHABLE
    if isinstance(exc, UnicodeError | ValueError):
        return Reason.PROTOCOL
    return Reason.INTERNAL


def describe_exception(exc: BaseException) -> str:
    """A short detail for an exception: "Connection refused" rather than asyncio's wording."""
    if (
        isinstance(exc, OSError)
        and not isinstance(exc, ssl.SSLError | socket.gaierror)
        and exc.errno is not None
        and exc.errno > 0
    ):
        return os.strerror(exc.errno)
    text = str(exc)
    return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:200]


async def guarded(check: Check, target: CheckTarget, deadline: float | None = None) -> Outcome:
    """Run ``check`` under its hard deadline; whatever happens, return an Outcome with duration.

    Cancellation from outside (daemon stop) still propagates: only the check's own failures and
    its deadline are turned into data.

    The deadline works exactly as ``asyncio.timeout`` (the task is cancelled when it passes;
    that cancellation, and only that one, becomes a timeout), written out here because this
    runs once per check: it saves the Timeout object, two coroutines and two running-loop
    lookups (each a getpid() system call on 3.11) per check (docs/engine.md, Performance).
    """
    limit = target.deadline if deadline is None else deadline
    start = time.monotonic()
    loop = asyncio.get_running_loop()
    task = asyncio.current_task(loop)
    if task is None:
        raise RuntimeError("guarded() must run inside a task")
    cancelling = task.cancelling()
    expired: list[bool] = []  # set by the timer: the deadline cancelled the task
    timer = loop.call_at(loop.time() + limit, _expire, task, expired)
    token = _PHASE.set("")
    try:
        try:
            outcome = await check(target)
        except asyncio.CancelledError:
            timer.cancel()
            if expired and task.uncancel() <= cancelling:
                raise TimeoutError from None  # ours, not an outside cancellation
            raise
        except BaseException:
            timer.cancel()
            if expired:
                task.uncancel()
            raise
        timer.cancel()
        if expired:
            task.uncancel()
    except TimeoutError:
        phase = _PHASE.get()
        outcome = Outcome.down(
            Reason.TIMEOUT, f"no answer within {limit:g} s" + (f" ({phase})" if phase else "")
        )
    except asyncio.CancelledError:
        raise
    except CheckFailed as exc:
        outcome = Outcome.down(exc.reason, exc.detail)
    except Exception as exc:  # the boundary: a check must never raise
        outcome = Outcome.down(reason_for(exc), describe_exception(exc))
    finally:
        _PHASE.reset(token)
    return Outcome(outcome.up, outcome.reason, outcome.detail, time.monotonic() - start)


def _expire(task: asyncio.Task[Any], expired: list[bool]) -> None:
    expired.append(True)
    task.cancel()
