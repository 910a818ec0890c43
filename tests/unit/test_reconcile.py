"""engine/reconcile.py: desired vs actual → ordered ops with ldirectord's wording.

Every plan is also applied to a DryRunBackend holding ``actual``: it refuses what the kernel
refuses, so a plan that would fail on a real kernel fails here, and the result must equal the
desired table.
"""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from ldirectord.config.model import Config, Family, Method
from ldirectord.engine.desired import (
    MemberKey,
    Mode,
    desired_table,
    member_key,
    service_key,
    service_spec,
)
from ldirectord.engine.reconcile import Change, Planned, Tag, diff
from ldirectord.forwarding.base import (
    AddDest,
    AddService,
    DeleteDest,
    DeleteService,
    EditDest,
    EditService,
    KernelTable,
    ServiceKey,
)
from ldirectord.forwarding.dryrun import DryRunBackend
from ldirectord.health.machine import Health, State
from tests.unit.engine_support import config, dest, fallback, real, skey, table, virtual

UP, DOWN = Health(State.UP), Health(State.DOWN)
V = skey()
R1, R2 = real("10.0.0.1"), real("10.0.0.2", weight=2)


def _run(
    c: Config,
    health: Mapping[MemberKey, Health],
    actual: KernelTable,
    managed: tuple[ServiceKey, ...] = (),
    tag: Tag = Tag.START,
) -> tuple[list[Planned], KernelTable]:
    plan = diff(desired_table(c, health), actual, managed, tag)
    kernel = DryRunBackend(actual)
    for p in plan:
        kernel.apply_sync(p.op)
    return plan, kernel.table


def _msgs(plan: list[Planned]) -> list[str]:
    return [p.message for p in plan]


def _h(v, *states):  # type: ignore[no-untyped-def]
    return {member_key(v, r): h for r, h in zip(v.reals, states, strict=False)}


def test_empty_kernel_adds_service_then_reals() -> None:
    v = virtual("192.168.6.240", 80, R1, R2)
    plan, after = _run(config(v), _h(v, UP, UP), KernelTable())
    assert _msgs(plan) == [
        "Added virtual server: 192.168.6.240:80",
        "Added real server: 10.0.0.1:80 (192.168.6.240:80) (Weight set to 1)",
        "Added real server: 10.0.0.2:80 (192.168.6.240:80) (Weight set to 2)",
    ]
    assert isinstance(plan[0].op, AddService)
    assert set(after.services[V].dests) == {dest("10.0.0.1").key, dest("10.0.0.2").key}


def test_right_table_gives_no_ops() -> None:
    v = virtual("192.168.6.240", 80, R1, R2)
    actual = table((service_spec(v), [dest("10.0.0.1"), dest("10.0.0.2", weight=2)]))
    assert _run(config(v), _h(v, UP, UP), actual)[0] == []


def test_changed_service_is_edited_not_recreated() -> None:
    v = virtual("192.168.6.240", 80, R1, scheduler="wlc")
    actual = table((V, [dest("10.0.0.1")]))
    plan, _ = _run(config(v), _h(v, UP), actual)
    assert [type(p.op) for p in plan] == [EditService]
    assert _msgs(plan) == ["Changed virtual server: 192.168.6.240:80"]


def test_weight_change_is_an_edit() -> None:
    v = virtual("192.168.6.240", 80, R2)
    plan, _ = _run(config(v), _h(v, UP), table((V, [dest("10.0.0.2", weight=1)])))
    assert [type(p.op) for p in plan] == [EditDest]
    assert _msgs(plan) == ["Restored real server: 10.0.0.2:80 (192.168.6.240:80) (Weight set to 2)"]
    assert plan[0].change is Change.SERVE


def test_down_real_is_deleted() -> None:
    v = virtual("192.168.6.240", 80, R1, R2)
    plan, _ = _run(
        config(v), _h(v, DOWN, UP), table((V, [dest("10.0.0.1"), dest("10.0.0.2", weight=2)]))
    )
    assert _msgs(plan) == ["Deleted real server: 10.0.0.1:80 (192.168.6.240:80)"]
    assert plan[0].change is Change.REMOVE


def test_down_real_quiesced_once() -> None:
    v = virtual("192.168.6.240", 80, R1, R2, quiescent=True)
    actual = table((V, [dest("10.0.0.1", upper=5), dest("10.0.0.2", weight=2)]))
    plan, after = _run(config(v), _h(v, DOWN, UP), actual)
    assert _msgs(plan) == [
        "Quiescent real server: 10.0.0.1:80 (192.168.6.240:80) (Weight set to 0)"
    ]
    assert after.services[V].dests[dest("10.0.0.1").key].weight == 0
    assert _run(config(v), _h(v, DOWN, UP), after)[0] == []  # already weight 0: left alone


def test_quiesced_real_missing_is_not_readded_without_readdquiescent() -> None:
    v = virtual("192.168.6.240", 80, R1, R2, quiescent=True)
    actual = table((V, [dest("10.0.0.2", weight=2)]))
    assert _run(config(v), _h(v, DOWN, UP), actual)[0] == []
    plan, _ = _run(config(v, readdquiescent=True), _h(v, DOWN, UP), actual)
    assert _msgs(plan) == [
        "Readd Quiescent real server: 10.0.0.1:80 (192.168.6.240:80) (Weight set to 0)"
    ]


def test_quiesced_real_comes_back_with_its_weight() -> None:
    v = virtual("192.168.6.240", 80, R2, quiescent=True)
    plan, _ = _run(config(v), _h(v, UP), table((V, [dest("10.0.0.2", weight=0)])))
    assert _msgs(plan) == ["Restored real server: 10.0.0.2:80 (192.168.6.240:80) (Weight set to 2)"]


def test_unknown_real_is_kept_whatever_the_kernel_holds() -> None:
    v = virtual("192.168.6.240", 80, R1, R2)
    assert _run(config(v), {}, table((V, [dest("10.0.0.1", weight=0)])))[0] == []
    assert _run(config(v), {}, table((V, [])))[0] == []


def test_strangers_are_purged_at_start() -> None:
    v = virtual("192.168.6.240", 80, R1)
    actual = table((V, [dest("10.0.0.1"), dest("10.9.9.9")]))
    plan, _ = _run(config(v), _h(v, UP), actual)
    assert _msgs(plan) == ["Purged real server (start): 10.9.9.9:80 (192.168.6.240:80)"]


def test_last_real_leaves_after_the_fallback_is_in() -> None:
    v = virtual("192.168.6.240", 80, R1, fallback=fallback("127.0.0.1", 80))
    plan, _ = _run(config(v), _h(v, DOWN), table((V, [dest("10.0.0.1")])))
    assert _msgs(plan) == [
        "Added fallback server: 127.0.0.1:80 (192.168.6.240:80) (Weight set to 1)",
        "Deleted real server: 10.0.0.1:80 (192.168.6.240:80)",
    ]
    assert plan[0].change is Change.OTHER


def test_returning_real_is_in_before_the_fallback_leaves() -> None:
    v = virtual("192.168.6.240", 80, R1, fallback=fallback("127.0.0.1", 80))
    plan, after = _run(config(v), _h(v, UP), table((V, [dest("127.0.0.1")])))
    assert _msgs(plan) == [
        "Added real server: 10.0.0.1:80 (192.168.6.240:80) (Weight set to 1)",
        "Deleted fallback server: 127.0.0.1:80 (192.168.6.240:80)",
    ]
    assert list(after.services[V].dests) == [dest("10.0.0.1").key]


def test_fallback_with_other_weight_is_restored() -> None:
    v = virtual("192.168.6.240", 80, R1, fallback=fallback("127.0.0.1", 80, Method.MASQ))
    plan, _ = _run(config(v), _h(v, DOWN), table((V, [dest("127.0.0.1", weight=3)])))
    assert _msgs(plan) == [
        "Restored fallback server: 127.0.0.1:80 (192.168.6.240:80) (Weight set to 1)"
    ]


def test_dropped_managed_service_is_drained_then_deleted() -> None:
    v = virtual("192.168.6.240", 80, R1)
    gone = skey("192.168.6.99", 80)
    actual = table((V, [dest("10.0.0.1")]), (gone, [dest("10.0.0.7"), dest("10.0.0.8")]))
    plan, after = _run(config(v), _h(v, UP), actual, managed=(gone,))
    assert [type(p.op) for p in plan] == [DeleteDest, DeleteDest, DeleteService]
    assert _msgs(plan)[-1] == "Purged virtual server (start): 192.168.6.99:80"
    assert gone not in after.services


def test_unmanaged_service_is_left_alone() -> None:
    v = virtual("192.168.6.240", 80, R1)
    other = skey("192.168.6.99", 80)
    actual = table((V, [dest("10.0.0.1")]), (other, [dest("10.0.0.7")]))
    assert _run(config(v), _h(v, UP), actual)[0] == []


def test_stop_wording() -> None:
    v = virtual("192.168.6.240", 80, R1)
    plan, after = _run(config(), {}, table((V, [dest("10.0.0.1")])), managed=(V,), tag=Tag.STOP)
    assert _msgs(plan) == [
        "Purged real server (stop): 10.0.0.1:80 (192.168.6.240:80)",
        "Purged virtual server (stop): 192.168.6.240:80",
    ]
    assert after.services == {}
    del v


def test_method_change_is_an_edit() -> None:
    v = virtual("192.168.6.240", 80, real("10.0.0.1", 80, Method.MASQ))
    plan, _ = _run(config(v), _h(v, UP), table((V, [dest("10.0.0.1", method=Method.GATE)])))
    assert [type(p.op) for p in plan] == [EditDest]


def test_fwmark_and_ipv6_wording() -> None:
    fw = virtual("", 0, real("10.0.0.1", 0), fwmark=3)
    plan, _ = _run(config(fw), _h(fw, UP), KernelTable())
    assert _msgs(plan) == [
        "Added virtual server: 3",
        "Added real server: 10.0.0.1:0 (3) (Weight set to 1)",
    ]
    v6 = virtual("2001:db8::1", 80, real("2001:db8::2"), family=Family.INET6)
    plan, _ = _run(config(v6), _h(v6, UP), KernelTable())
    assert (
        _msgs(plan)[1] == "Added real server: [2001:db8::2]:80 ([2001:db8::1]:80) (Weight set to 1)"
    )


def test_new_service_with_fallback_only() -> None:
    v = virtual("192.168.6.240", 80, R1, fallback=fallback())
    plan, _ = _run(config(v), {}, KernelTable())
    assert [type(p.op) for p in plan] == [AddService, AddDest]
    assert service_key(v) == V


# --- properties: any health, any starting table -------------------------------------------


_ADDRS = [f"10.0.0.{i}" for i in range(1, 6)] + ["127.0.0.1"]
_STATES = [Health(State.UNKNOWN), UP, DOWN, Health(State.FAILING, fails=1)]


@st.composite
def scenarios(draw):  # type: ignore[no-untyped-def]
    n = draw(st.integers(1, 4))
    reals = [real(a, weight=draw(st.integers(0, 3))) for a in _ADDRS[:n]]
    v = virtual(
        "192.168.6.240",
        80,
        *reals,
        quiescent=draw(st.booleans()),
        fallback=fallback() if draw(st.booleans()) else None,
        scheduler=draw(st.sampled_from(["wrr", "rr"])),
    )
    c = config(v, readdquiescent=draw(st.booleans()))
    health = {member_key(v, r): draw(st.sampled_from(_STATES)) for r in reals}
    present = draw(st.lists(st.sampled_from(_ADDRS), unique=True, max_size=6))
    dests = [
        dest(a, weight=draw(st.integers(0, 3)), method=draw(st.sampled_from(list(Method))))
        for a in present
    ]
    actual = table((V, dests)) if draw(st.booleans()) else KernelTable()
    return c, health, actual


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_any_plan_applies_cleanly_reaches_the_desired_table_and_is_idempotent(case) -> None:  # type: ignore[no-untyped-def]
    c, health, actual = case
    plan, after = _run(c, health, actual)  # the dry-run kernel refuses impossible ops
    want = desired_table(c, health).services[V]
    have = after.services[V]
    before = actual.services[V].dests if V in actual.services else {}
    for key, d in want.dests.items():
        got = have.dests.get(key)
        if d.mode is Mode.SERVE:
            assert got == d.dest
        elif d.mode is Mode.QUIESCE:
            if got is None:
                assert not d.add_if_missing and key not in before
            else:
                assert got.weight == 0 and got.method is d.dest.method
        else:  # KEEP
            assert got == before.get(key)
    assert set(have.dests) <= set(want.dests)
    assert diff(desired_table(c, health), after) == []  # nothing left to do
    # never delete-and-re-add: a dest is touched by at most one op
    touched = [p.dest for p in plan if p.dest is not None]
    assert len(touched) == len(set(touched))
