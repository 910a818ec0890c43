"""members_of on a reload: unchanged reals keep their ProbeKey object; any change to what
their check depends on (their own line, the virtual's check settings) gives a new one."""

from __future__ import annotations

import dataclasses

from ldirectord.config.model import CheckType
from ldirectord.engine.members import members_of, probe_for
from tests.unit.engine_support import config, real, virtual, with_check


def test_a_reload_keeps_unchanged_probes_and_rebuilds_changed_ones() -> None:
    reals = [real(f"10.0.0.{i}", request="/a") for i in range(1, 5)]
    v1 = virtual("192.0.2.1", 80, *reals, checktype=CheckType.NEGOTIATE)
    old = members_of(config(v1))
    changed = dataclasses.replace(reals[1], weight=5)  # weight: not part of the check
    edited = dataclasses.replace(reals[2], request="/b")  # part of the check
    v2 = dataclasses.replace(v1, reals=(reals[0], changed, edited, reals[3]))
    new = members_of(config(v2), old)
    keys = list(new)
    assert new[keys[0]].probe is old[keys[0]].probe
    assert new[keys[3]].probe is old[keys[3]].probe
    # a changed real line is rebuilt (equal when the change does not touch the check)
    assert new[keys[1]].probe is not old[keys[1]].probe
    assert new[keys[1]].probe == old[keys[1]].probe
    assert new[keys[2]].probe != old[keys[2]].probe
    assert new[keys[2]].probe == probe_for(v2, edited)
    assert new[keys[0]].real is reals[0] and new[keys[1]].real is changed


def test_a_changed_check_setting_rebuilds_every_probe_of_the_virtual() -> None:
    v1 = virtual("192.0.2.1", 80, real("10.0.0.1"), real("10.0.0.2"))
    other = virtual("192.0.2.2", 80, real("10.0.0.1"))
    old = members_of(config(v1, other))
    v2 = with_check(v1, checkport=8080)
    new = members_of(config(v2, other), old)
    for key, member in new.items():
        if member.virtual is v2:
            assert member.probe != old[key].probe
            assert member.probe == probe_for(v2, member.real)
            assert member.probe.target.port == 8080
        else:
            assert member.probe is old[key].probe
    assert set(new) == set(old)
