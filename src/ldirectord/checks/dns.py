"""Negotiate check for dns: ask the real server for ``request``; an answer must match ``receive``.

Owns ldirectord's check_dns (reference §2.2) on top of dnspython's asyncio API: the name is
``request`` without its leading ``/``; an IP address is looked up as a PTR (as Net::DNS does),
anything else as an A record, recursion desired, over TCP when the virtual is TCP and else UDP
(falling back to TCP when the reply is truncated). Up when an answer record is an A whose
address, or a PTR whose name (without the final dot), matches the ``receive`` regex; an empty
receive cannot match (down, CONFIG). A non-NOERROR rcode is BAD_STATUS. Over UDP the query is
re-sent (with a new id) every ``RETRY_AFTER`` seconds while no answer came; the whole check
runs under negotiatetimeout, enforced by ``guarded``. Net::DNS's search-list expansion of
dotless names is not done: the name is queried as written (absolute).
"""

from __future__ import annotations

import asyncio
import ipaddress

import dns.asyncquery
import dns.entropy
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.reversename

from ldirectord.checks._receive import receive_regex
from ldirectord.checks.base import CheckFailed, CheckTarget, Outcome, Reason, set_phase
from ldirectord.config.model import Protocol

RETRY_AFTER = 2.0


def build_query(request: str) -> dns.message.Message:
    """The query ldirectord's resolver sends for ``request`` (ldirectord's stored form)."""
    name = request[1:] if request.startswith("/") else request
    if not name:
        raise CheckFailed(Reason.CONFIG, "the dns check needs request (the name to look up)")
    try:
        ipaddress.ip_address(name)
    except ValueError:
        try:
            qname = dns.name.from_text(name)
        except dns.exception.DNSException as exc:
            raise CheckFailed(Reason.CONFIG, f"request {name!r} is not a DNS name: {exc}") from None
        return dns.message.make_query(qname, dns.rdatatype.A)
    return dns.message.make_query(dns.reversename.from_address(name), dns.rdatatype.PTR)


def answer_matches(reply: dns.message.Message, receive: str) -> str | None:
    """The first A address or PTR name in the answer that matches ``receive``, else None."""
    pattern = receive_regex(receive)
    for rrset in reply.answer:
        for rdata in rrset:
            if rdata.rdtype == dns.rdatatype.A:
                value = str(rdata.address)
            elif rdata.rdtype == dns.rdatatype.PTR:
                value = rdata.target.to_text(omit_final_dot=True)
            else:
                continue
            if pattern.search(value):
                return value
    return None


async def _ask(query: dns.message.Message, target: CheckTarget) -> dns.message.Message:
    if target.protocol is Protocol.TCP:
        set_phase("querying over TCP")
        return await dns.asyncquery.tcp(query, target.host, port=target.port, timeout=None)
    while True:  # bounded by the check's deadline (guarded)
        set_phase("querying over UDP")
        try:
            # Our own timeout, not dnspython's: its asyncio backend uses Python 3.11's
            # wait_for, which swallows a cancellation that arrives as the answer does (the
            # check task then outlived the daemon's stop, and asyncio.run never returned).
            async with asyncio.timeout(RETRY_AFTER):
                reply, _ = await dns.asyncquery.udp_with_fallback(
                    query, target.host, port=target.port, timeout=None
                )
            return reply
        except TimeoutError:
            query.id = dns.entropy.random_16()  # a fresh id: a late answer to the old one is junk


async def check_dns(target: CheckTarget) -> Outcome:
    if not target.receive:
        raise CheckFailed(Reason.CONFIG, "the dns check needs receive (an address or name)")
    receive_regex(target.receive)
    query = build_query(target.request)
    try:
        reply = await _ask(query, target)
    except dns.exception.Timeout:  # only TCP gets here (no timeout of its own: guarded's)
        raise TimeoutError from None
    except (dns.exception.FormError, dns.exception.TooBig, dns.message.ShortHeader) as exc:
        raise CheckFailed(Reason.PROTOCOL, f"malformed DNS reply: {exc}"[:200]) from None
    except dns.exception.DNSException as exc:
        raise CheckFailed(Reason.PROTOCOL, f"{type(exc).__name__}: {exc}"[:200]) from None
    rcode = reply.rcode()
    if rcode != dns.rcode.NOERROR:
        raise CheckFailed(
            Reason.BAD_STATUS, f"{query.question[0].name}: {dns.rcode.to_text(rcode)}"
        )
    found = answer_matches(reply, target.receive)
    if found is None:
        count = sum(len(rrset) for rrset in reply.answer)
        raise CheckFailed(Reason.NO_MATCH, f"{count} answer records, none matches receive")
    return Outcome.ok(f"{query.question[0].name} → {found}")
