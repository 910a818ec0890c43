"""Negotiate check for ldap and ldaps: bind, then a base search of ``request`` must find 1 entry.

Owns ldirectord's check_ldap (reference §2.2): connect (ldaps: TLS from the first byte, no
certificate verification, as Net::LDAP's default), a simple bind as ``login``/``passwd`` when
both are set, else anonymous; a base-scope search of ``request`` without its leading ``/``
with filter ``(objectClass=*)``; up when exactly one entry comes back and, with a non-empty
``receive``, its DN matches the receive regex. The deadline is checktimeout (ldirectord's
alarm), as ``CheckTarget.deadline`` says.

ldap3 does blocking socket IO, so the LDAP conversation runs in the bounded pool of
``_blocking`` under ``asyncio.wait_for`` with the time left; ldap3's own connect and receive
timeouts are set to that time too, and an abandoned call has its socket shut down so the
worker thread returns at once (a trickling server cannot hold it). The ldap3 objects are
built on the loop side (no IO) so the loop can reach that socket.
"""

from __future__ import annotations

import contextlib
import math
import ssl
import time
from dataclasses import dataclass

from ldirectord.checks._blocking import run_blocking, shutdown_quietly
from ldirectord.checks._receive import receive_regex
from ldirectord.checks.base import CheckFailed, CheckTarget, Outcome, Reason, reason_for
from ldirectord.config.model import Service


@dataclass(frozen=True, slots=True)
class _Found:
    dn: str
    count: int


async def check_ldap(target: CheckTarget) -> Outcome:
    import ldap3  # imported on first use: a daemon without LDAP checks never loads it

    end = time.monotonic() + target.deadline
    if target.receive:
        receive_regex(target.receive)
    spec = target.spec
    use_ssl = target.service is Service.LDAPS
    # ldap3's own timeouts are a backstop a second past the deadline (it packs them into
    # SO_RCVTIMEO as ints): at the deadline the pool abandons the call and shuts its socket
    budget = math.ceil(target.deadline) + 1
    server = ldap3.Server(
        target.host,
        port=target.port,
        use_ssl=use_ssl,
        tls=ldap3.Tls(validate=ssl.CERT_NONE) if use_ssl else None,
        get_info=ldap3.NONE,
        connect_timeout=budget,
        mode=ldap3.IP_V6_ONLY if ":" in target.host else ldap3.IP_V4_ONLY,
    )
    with_login = bool(spec.login and spec.passwd)
    conn = ldap3.Connection(
        server,
        user=spec.login if with_login else None,
        password=spec.passwd if with_login else None,
        auto_bind=ldap3.AUTO_BIND_NONE,
        receive_timeout=budget,
        read_only=True,
        raise_exceptions=False,
    )
    base = target.request[1:] if target.request.startswith("/") else target.request
    found = await run_blocking(
        end - time.monotonic(),
        _converse,
        conn,
        base,
        on_abandon=lambda: shutdown_quietly(getattr(conn, "socket", None)),
    )
    if found.count != 1:
        raise CheckFailed(Reason.NO_MATCH, f"base search of {base!r} found {found.count} entries")
    if target.receive and not receive_regex(target.receive).search(found.dn):
        raise CheckFailed(Reason.NO_MATCH, f"entry {found.dn!r} does not match receive")
    return Outcome.ok(f"found {found.dn!r}")


def _converse(conn: object, base: str) -> _Found:
    """In a worker thread: open, bind, search, unbind. Raises CheckFailed on failure."""
    import ldap3
    from ldap3.core import exceptions as ldap_exc

    assert isinstance(conn, ldap3.Connection)
    try:
        conn.open(read_server_info=False)
        if not conn.bind():
            raise CheckFailed(Reason.AUTH, f"bind failed: {_result(conn)}")
        conn.search(base, "(objectClass=*)", search_scope=ldap3.BASE, attributes=[])
        entries = [r for r in conn.response or () if r.get("type") == "searchResEntry"]
        result = conn.result or {}
        if not entries and result.get("result", 0) != 0:
            raise CheckFailed(Reason.BAD_STATUS, f"search of {base!r}: {_result(conn)}")
        return _Found(str(entries[0].get("dn", "")) if entries else "", len(entries))
    except ldap_exc.LDAPException as exc:
        raise _failure(exc) from None
    except CheckFailed:
        raise
    except OSError as exc:
        raise CheckFailed(reason_for(exc), f"{type(exc).__name__}: {exc}"[:200]) from None
    except Exception as exc:  # ldap3's decoder on bytes that are not LDAP (KeyError, ...)
        raise CheckFailed(
            Reason.PROTOCOL, f"not an LDAP reply ({type(exc).__name__}: {exc})"[:200]
        ) from None
    finally:
        with contextlib.suppress(Exception):  # the connection may already be dead
            conn.unbind()
        sock = getattr(conn, "socket", None)
        if sock is not None:  # ldap3 leaves it open when connect() fails
            with contextlib.suppress(Exception):
                sock.close()


def _result(conn: object) -> str:
    result = getattr(conn, "result", None) or {}
    text = f"{result.get('description', '?')} ({result.get('result', '?')})"
    if result.get("message"):
        text += f": {result['message']}"
    return text[:160]


def _failure(exc: Exception) -> CheckFailed:
    """Map an ldap3 exception (they wrap the socket error in text) to a Reason."""
    text = str(exc)
    lowered = text.lower()
    if "timed out" in lowered or "timeout" in lowered:
        reason = Reason.TIMEOUT
    elif "refused" in lowered:
        reason = Reason.REFUSED
    elif "ssl" in lowered or "tls" in lowered or "handshake" in lowered:
        reason = Reason.TLS
    elif "reset" in lowered or "broken pipe" in lowered:
        reason = Reason.RESET
    elif "closed" in lowered or "terminated" in lowered or "no data" in lowered:
        reason = Reason.CLOSED
    elif "unreachable" in lowered:
        reason = Reason.UNREACHABLE
    else:
        reason = Reason.PROTOCOL
    return CheckFailed(reason, f"{type(exc).__name__}: {text}"[:200])
