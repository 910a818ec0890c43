"""The netlink framing and the IPVS codec, as pure functions over bytes.

A service or dest attribute we send has the layout the kernel dumps (the dump adds counters,
which decoding skips), so every field must survive encode -> decode. Byte-level facts (port
order, IPv6 netmask as a host-order prefix length, 16-byte addresses) are pinned here; that the
kernel reads them so is pinned by tests/kernel/guest/test_ipvs_contract.py.
"""

from __future__ import annotations

import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ldirectord.config.model import Family, Method, Protocol
from ldirectord.forwarding import ipvs_wire as wire
from ldirectord.forwarding import netlink as nl
from ldirectord.forwarding.base import (
    AddDest,
    DeleteDest,
    DeleteService,
    Dest,
    DestKey,
    EditService,
    ServiceKey,
    ServiceSpec,
    canonical_sched_flags,
)

SCHEDULERS = ["rr", "wrr", "lc", "wlc", "sh", "mh", "sed", "nq", "fo", "ovf", "dh", "lblc"]


@st.composite
def specs(draw: st.DrawFn) -> ServiceSpec:
    family = draw(st.sampled_from(Family))
    kind = draw(st.sampled_from(["tcp", "udp", "fwm"]))
    if kind == "fwm":
        key = ServiceKey(Protocol.FWM, family, None, 0, draw(st.integers(1, 2**32 - 1)))
    else:
        if family is Family.INET:
            address = str(draw(st.ip_addresses(v=4)))
        else:
            address = draw(st.ip_addresses(v=6)).compressed
        port = draw(st.integers(0, 65535))
        key = ServiceKey(Protocol(kind), family, address, port)
    scheduler = draw(st.sampled_from(SCHEDULERS))
    persistent = draw(st.none() | st.integers(0, 2**32 - 1))
    netmask = wire.default_netmask(family)
    if persistent is not None:
        if family is Family.INET:
            bits = draw(st.integers(0, 32))
            netmask = socket.inet_ntoa(struct.pack("!I", (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF))
        else:
            netmask = str(draw(st.integers(1, 128)))
    names = {"sh": ["sh-fallback", "sh-port"], "mh": ["mh-fallback", "mh-port"]}.get(
        scheduler, ["flag-1", "flag-2", "flag-3"]
    )
    flags = canonical_sched_flags(scheduler, frozenset(draw(st.sets(st.sampled_from(names)))))
    return ServiceSpec(key, scheduler, persistent, netmask, flags, draw(st.booleans()))


@given(specs())
def test_every_service_field_survives_encode_and_decode(spec: ServiceSpec) -> None:
    assert wire.decode_service(memoryview(wire.service(spec))) == spec


@st.composite
def dests(draw: st.DrawFn) -> Dest:
    address = draw(st.ip_addresses()).compressed
    return Dest(
        DestKey(address, draw(st.integers(0, 65535))),
        draw(st.sampled_from(Method)),
        draw(st.integers(0, 2**31 - 1)),
        draw(st.integers(0, 2**32 - 1)),
        draw(st.integers(0, 2**32 - 1)),
    )


@given(dests())
def test_every_dest_field_survives_encode_and_decode(dest: Dest) -> None:
    family = Family.INET6 if ":" in dest.key.address else Family.INET
    dumped = wire.decode_dest(memoryview(wire.dest(dest)), family)
    assert dumped is not None
    assert dumped.with_method(dest.method) == dest
    assert dumped.method is dest.method


def test_byte_layout_of_a_dest_request() -> None:
    key = ServiceKey(Protocol.TCP, Family.INET, "192.0.2.1", 80)
    cmd, body = wire.encode(AddDest(key, Dest(DestKey("10.0.0.2", 8080), Method.MASQ, 3)))
    assert cmd == wire.CMD_NEW_DEST
    top = nl.parse_attrs(body)
    svc = nl.parse_attrs(top[wire.CMD_ATTR_SERVICE])
    assert bytes(svc[wire.SVC_ADDR]) == socket.inet_aton("192.0.2.1") + b"\0" * 12
    assert bytes(svc[wire.SVC_PORT]) == b"\x00\x50"  # network order
    assert nl.get_u16(svc[wire.SVC_PROTOCOL]) == socket.IPPROTO_TCP
    assert wire.SVC_SCHED_NAME not in svc  # a dest request names its service by key only
    dest = nl.parse_attrs(top[wire.CMD_ATTR_DEST])
    assert bytes(dest[wire.DEST_PORT]) == b"\x1f\x90"
    assert [nl.get_u32(dest[k]) for k in range(3, 7)] == [0, 3, 0, 0]


def test_ipv6_netmask_is_a_host_order_prefix_length() -> None:
    key = ServiceKey(Protocol.UDP, Family.INET6, "2001:db8::1", 53)
    _, body = wire.encode(EditService(ServiceSpec(key, persistent=60, netmask="64")))
    svc = nl.parse_attrs(nl.parse_attrs(body)[wire.CMD_ATTR_SERVICE])
    assert bytes(svc[wire.SVC_NETMASK]) == struct.pack("=I", 64)
    assert bytes(svc[wire.SVC_FLAGS]) == struct.pack("=II", wire.F_PERSISTENT, 0xFFFFFFFF)


def test_the_hashed_bit_and_a_non_persistent_netmask_are_normalised() -> None:
    key = ServiceKey(Protocol.TCP, Family.INET, "10.0.0.1", 80)
    raw = bytearray(wire.service(ServiceSpec(key, netmask="255.255.255.255")))
    spec = wire.decode_service(memoryview(raw))
    assert spec == ServiceSpec(key)
    body = nl.nested(
        wire.CMD_ATTR_SERVICE,
        nl.u16(wire.SVC_AF, socket.AF_INET),
        nl.u32(wire.SVC_FWMARK, 7),
        nl.string(wire.SVC_SCHED_NAME, "wlc"),
        nl.attr(wire.SVC_FLAGS, struct.pack("=II", wire.F_HASHED, 0xFFFF)),
        nl.attr(wire.SVC_NETMASK, socket.inet_aton("255.255.0.0")),  # not persistent: default
        nl.nested(10, nl.u32(1, 12345)),  # stats: skipped
    )
    assert wire.decode_service(memoryview(body)) == ServiceSpec(
        ServiceKey(Protocol.FWM, Family.INET, None, 0, 7), scheduler="wlc"
    )


def test_services_and_dests_we_cannot_name_are_skipped() -> None:
    sctp = nl.nested(
        wire.CMD_ATTR_SERVICE,
        nl.u16(wire.SVC_AF, socket.AF_INET),
        nl.u16(wire.SVC_PROTOCOL, 132),
        nl.attr(wire.SVC_ADDR, bytes(16)),
        nl.be16(wire.SVC_PORT, 80),
    )
    assert wire.decode_service(memoryview(sctp)) is None
    assert wire.decode_service(memoryview(b"")) is None
    odd = nl.nested(
        wire.CMD_ATTR_DEST,
        nl.attr(wire.DEST_ADDR, bytes(16)),
        nl.be16(wire.DEST_PORT, 80),
        nl.u32(wire.DEST_FWD_METHOD, 4),  # IP_VS_CONN_F_BYPASS: no ipvsadm name
    )
    assert wire.decode_dest(memoryview(odd), Family.INET) is None
    local = odd.replace(struct.pack("=I", 4), struct.pack("=I", 1))
    dumped = wire.decode_dest(memoryview(local), Family.INET)
    assert dumped is not None and dumped.method is None  # Local


def test_encoded_service_keys_are_reused_from_the_cache() -> None:
    key = ServiceKey(Protocol.TCP, Family.INET, "10.0.0.1", 80)
    cache: dict[ServiceKey, bytes] = {}
    first = wire.encode(DeleteDest(key, DestKey("10.0.0.2", 80)), cache)
    assert cache == {key: wire.service_key(key)}
    assert wire.encode(DeleteDest(key, DestKey("10.0.0.2", 80)), cache) == first
    assert wire.encode(DeleteService(key)) == (wire.CMD_DEL_SERVICE, wire.service_key(key))


def test_messages_split_a_datagram_and_read_errors_and_done() -> None:
    ack = struct.pack("=IHHII", 36, nl.NLMSG_ERROR, 0, 7, 0) + struct.pack("=i", 0) + bytes(16)
    err = struct.pack("=IHHII", 36, nl.NLMSG_ERROR, 0, 8, 0) + struct.pack("=i", -3) + bytes(16)
    data = nl.request(30, 4, 1, 9, nl.u32(1, 5), dump=False)
    done = struct.pack("=IHHII", 20, nl.NLMSG_DONE, nl.NLM_F_MULTI, 9, 0) + struct.pack("=i", 0)
    got = list(nl.messages(ack + err + data + done))
    assert [(m.kind, m.seq, m.error) for m in got] == [
        (nl.NLMSG_ERROR, 7, 0),
        (nl.NLMSG_ERROR, 8, 3),
        (30, 9, 0),
        (nl.NLMSG_DONE, 9, 0),
    ]
    assert nl.get_u32(nl.parse_attrs(got[2].body)[1]) == 5
    with pytest.raises(ValueError, match="truncated"):
        list(nl.messages(ack[:-4]))


def test_attributes_are_padded_and_a_malformed_tail_is_ignored() -> None:
    one = nl.string(6, "wrr")  # 4 + 4 bytes: no padding
    two = nl.attr(3, b"\x01")  # 5 bytes, padded to 8
    assert (len(one), len(two)) == (8, 8)
    found = nl.parse_attrs(one + two + b"\x20\x00\x01")
    assert nl.get_string(found[6]) == "wrr"
    assert bytes(found[3]) == b"\x01"
    assert sorted(found) == [3, 6]
    assert nl.parse_attrs(nl.nested(1, one))[1].tobytes() == one  # NLA_F_NESTED masked
