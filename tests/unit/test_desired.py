"""engine/desired.py: config + health → the table ldirectord would program."""

from __future__ import annotations

from ldirectord.config.model import CheckType, Family, Method, Protocol
from ldirectord.engine.desired import (
    Mode,
    desired_table,
    dest_key,
    member_key,
    service_key,
    service_spec,
)
from ldirectord.forwarding.base import DestKey, ServiceKey
from ldirectord.health.machine import Health, State
from tests.unit.engine_support import config, fallback, real, virtual

UP, DOWN, FAILING = Health(State.UP), Health(State.DOWN), Health(State.FAILING, fails=1)
R1, R2 = real("10.0.0.1", weight=3, upper=100, lower=10), real("10.0.0.2")


def _health(v, *states):  # type: ignore[no-untyped-def]
    return {member_key(v, r): h for r, h in zip(v.reals, states, strict=False)}


def test_service_spec_defaults_and_persistence() -> None:
    v = virtual("192.168.6.240", 80, R1, scheduler="wlc", persistent=300, netmask="255.255.255.0")
    spec = service_spec(v)
    assert spec.scheduler == "wlc"
    assert (spec.persistent, spec.netmask) == (300, "255.255.255.0")
    assert service_spec(virtual("192.168.6.240", 80)).netmask == "255.255.255.255"
    assert service_spec(virtual("2001:db8::1", 80, family=Family.INET6)).netmask == "128"


def test_netmask_only_with_persistence_and_ops_only_for_udp() -> None:
    assert service_spec(virtual(netmask="255.255.0.0")).netmask == "255.255.255.255"
    assert service_spec(virtual(ops=True)).ops is False
    assert service_spec(virtual(ops=True, protocol=Protocol.UDP)).ops is True


def test_schedflags_become_a_set() -> None:
    spec = service_spec(virtual(scheduler="sh", schedflags="sh-port,sh-fallback"))
    assert spec.sched_flags == {"sh-port", "sh-fallback"}


def test_schedflags_take_the_names_a_dump_shows_for_the_scheduler() -> None:
    # Otherwise the reconciler would edit the service on every pass (the kernel keeps bits).
    assert service_spec(virtual(scheduler="mh", schedflags="sh-port")).sched_flags == {"mh-port"}
    assert service_spec(virtual(schedflags="sh-fallback")).sched_flags == {"flag-1"}
    assert service_spec(virtual(scheduler="sh", schedflags="bogus")).sched_flags == {"bogus"}


def test_fwmark_service_key() -> None:
    v = virtual(fwmark=7)
    assert service_key(v) == ServiceKey(Protocol.FWM, Family.INET, None, 0, 7)


def test_real_port_zero_and_gate_ports_take_the_virtual_port() -> None:
    v = virtual("192.168.6.240", 8080)
    assert dest_key(v, real("10.0.0.1", 0, Method.MASQ)) == DestKey("10.0.0.1", 8080)
    assert dest_key(v, real("10.0.0.1", 80, Method.MASQ)) == DestKey("10.0.0.1", 80)
    assert dest_key(v, real("10.0.0.1", 80, Method.GATE)) == DestKey("10.0.0.1", 8080)
    assert dest_key(v, real("10.0.0.1", 80, Method.IPIP)) == DestKey("10.0.0.1", 8080)
    assert dest_key(virtual(fwmark=3), real("10.0.0.1", 0)) == DestKey("10.0.0.1", 0)


def test_up_reals_serve_with_weight_and_thresholds() -> None:
    v = virtual("192.168.6.240", 80, R1, R2)
    want = desired_table(config(v), _health(v, UP, FAILING)).services[service_key(v)]
    d1 = want.dests[DestKey("10.0.0.1", 80)]
    assert d1.mode is Mode.SERVE
    assert (d1.dest.weight, d1.dest.upper, d1.dest.lower) == (3, 100, 10)
    assert want.dests[DestKey("10.0.0.2", 80)].mode is Mode.SERVE  # soft failure still serves
    assert not want.fallback_active


def test_unknown_reals_are_kept_as_the_kernel_has_them() -> None:
    v = virtual("192.168.6.240", 80, R1)
    want = desired_table(config(v), {}).services[service_key(v)]
    assert want.dests[DestKey("10.0.0.1", 80)].mode is Mode.KEEP


def test_down_real_absent_without_quiescent() -> None:
    v = virtual("192.168.6.240", 80, R1, R2)
    want = desired_table(config(v), _health(v, DOWN, UP)).services[service_key(v)]
    assert DestKey("10.0.0.1", 80) not in want.dests
    assert DestKey("10.0.0.1", 80) in want.configured


def test_down_real_quiesced_with_quiescent() -> None:
    v = virtual("192.168.6.240", 80, R1, R2, quiescent=True)
    want = desired_table(config(v), _health(v, DOWN, UP)).services[service_key(v)]
    d1 = want.dests[DestKey("10.0.0.1", 80)]
    assert (d1.mode, d1.dest.weight, d1.add_if_missing) == (Mode.QUIESCE, 0, False)


def test_readdquiescent_and_first_verdict_allow_adding_at_weight_zero() -> None:
    v = virtual("192.168.6.240", 80, R1, quiescent=True)
    health = _health(v, DOWN)
    readd = desired_table(config(v, readdquiescent=True), health).services[service_key(v)]
    assert readd.dests[DestKey("10.0.0.1", 80)].add_if_missing
    fresh = desired_table(config(v), health, [member_key(v, R1)]).services[service_key(v)]
    assert fresh.dests[DestKey("10.0.0.1", 80)].add_if_missing


def test_fallback_when_no_real_is_up() -> None:
    v = virtual("192.168.6.240", 80, R1, R2, fallback=fallback("127.0.0.1", 80))
    want = desired_table(config(v), _health(v, DOWN, DOWN)).services[service_key(v)]
    fb = want.dests[DestKey("127.0.0.1", 80)]
    assert fb.is_fallback and fb.mode is Mode.SERVE
    assert (fb.dest.weight, fb.dest.upper, fb.dest.lower) == (1, 0, 0)
    assert want.fallback_active and want.fallback == DestKey("127.0.0.1", 80)
    up = desired_table(config(v), _health(v, DOWN, UP)).services[service_key(v)]
    assert DestKey("127.0.0.1", 80) not in up.dests and not up.fallback_active


def test_fallback_before_any_verdict() -> None:
    v = virtual("192.168.6.240", 80, R1, fallback=fallback())
    assert desired_table(config(v), {}).services[service_key(v)].fallback_active


def test_global_fallback_inherits_the_virtual_port_and_skips_fwmark() -> None:
    v = virtual("192.168.6.240", 8080, R1)
    c = config(v, fallback=fallback("127.0.0.1", 0, Method.MASQ))
    want = desired_table(c, _health(v, DOWN)).services[service_key(v)]
    assert DestKey("127.0.0.1", 8080) in want.dests
    fw = virtual(fwmark=5)
    c = config(fw, fallback=fallback("127.0.0.1", 80))
    assert not desired_table(c, {}).services[service_key(fw)].fallback_active


def test_global_fallback6_for_ipv6_virtuals() -> None:
    v = virtual("2001:db8::1", 80, real("2001:db8::2"), family=Family.INET6)
    c = config(v, fallback=fallback("127.0.0.1", 80), fallback6=fallback("::1", 80))
    want = desired_table(c, {}).services[service_key(v)]
    assert DestKey("::1", 80) in want.dests


def test_checktype_off_adds_nothing() -> None:
    v = virtual("192.168.6.240", 80, R1, checktype=CheckType.OFF, fallback=fallback())
    want = desired_table(config(v), _health(v, UP)).services[service_key(v)]
    assert want.dests[DestKey("10.0.0.1", 80)].mode is Mode.KEEP
    assert not want.fallback_active


def test_services_in_config_order() -> None:
    a, b = virtual("192.168.6.241", 80), virtual("192.168.6.240", 80)
    assert list(desired_table(config(a, b), {}).services) == [service_key(a), service_key(b)]


def test_addresses_are_canonical_as_dumps_are() -> None:
    v = virtual("2001:DB8::0001", 80, real("2001:db8:0::2"), family=Family.INET6)
    assert service_key(v).address == "2001:db8::1"
    assert dest_key(v, v.reals[0]) == DestKey("2001:db8::2", 80)
