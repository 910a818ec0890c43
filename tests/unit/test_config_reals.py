"""real=/real6= grammar (reference §1.7): ranges, ports, methods, weights, per-real checks."""

from __future__ import annotations

import pytest

from ldirectord.config.model import Method, RealServer
from tests.unit.test_config_support import FakeEnv, cfg, messages, problems

V = "virtual=10.0.0.1:80"


def reals(*real_lines: str, header: str = V, env: FakeEnv | None = None) -> list[RealServer]:
    return list(cfg(header, *(f"    {r}" for r in real_lines), env=env).virtuals[0].reals)


def test_simple_forms_and_defaults() -> None:
    r = reals("real=10.0.0.2:8080 gate", "real=10.0.0.3 masq 5", "real = 10.0.0.4:http ipip 0")
    assert [(x.address, x.port, x.method, x.weight) for x in r] == [
        ("10.0.0.2", 8080, Method.GATE, 1),
        ("10.0.0.3", 0, Method.MASQ, 5),  # no port written: 0 (ipvsadm uses the virtual's)
        ("10.0.0.4", 80, Method.IPIP, 0),
    ]
    assert (r[0].request, r[0].receive, r[0].lower, r[0].upper) == (None, None, 0, 0)
    assert str(r[0].location) == "t.cf:2:10"


def test_port_names_resolve_with_any_protocol() -> None:
    assert reals("real=10.0.0.2:mysql gate")[0].port == 3306
    assert reals("real=10.0.0.2:domain gate")[0].port == 53
    assert messages(V, "    real=10.0.0.2:nosuchservice gate") == [
        "invalid port (nosuchservice) for real server (could not resolve port)"
    ]


def test_ranges_expand_inclusively() -> None:
    r = reals("real=192.168.6.2->192.168.6.5:80 gate 2")
    assert [x.address for x in r] == ["192.168.6.2", "192.168.6.3", "192.168.6.4", "192.168.6.5"]
    assert {x.weight for x in r} == {2}


def test_range_bounds_compare_as_strings_like_ldirectord() -> None:
    # 9.255.255.255 = 167772159 and 10.0.0.1 = 167772161: same length, normal order
    assert len(reals("real=9.255.255.255->10.0.0.1 gate")) == 3
    # 0.152.150.127 = 9999999 (7 digits) -> 0.152.150.129 = 10000001 (8 digits): "9999999" gt "10000001"
    config = cfg(V, "    real=0.152.150.127->0.152.150.129 gate")
    assert config.virtuals[0].reals == ()
    assert "crosses a power of ten" in config.warnings[0]


def test_range_errors() -> None:
    assert messages(V, "    real=10.0.0.5->10.0.0.1 gate")[0].startswith(
        "Invalid Range: 10.0.0.5-10.0.0.1"
    )
    assert "more than 65536" in messages(V, "    real=10.0.0.0->10.2.0.0 gate")[0]
    assert messages("virtual6=[::1]:80", "    real6=[::1]->[::2] gate") == [
        "Address range for IPv6 is not supported yet"
    ]


def test_hostname_reals_and_hostname_ranges() -> None:
    env = FakeEnv(hosts={"sql01": "10.1.0.1", "sql03": "10.1.0.3"})
    r = reals("real=sql01->sql03:3306 gate 10", env=env)
    assert [(x.address, x.port, x.weight) for x in r] == [
        ("10.1.0.1", 3306, 10),
        ("10.1.0.2", 3306, 10),
        ("10.1.0.3", 3306, 10),
    ]
    assert messages(V, "    real=sql02 gate", env=env) == [
        "invalid address (sql02) for real server (could not resolve host: no such host)"
    ]


def test_weight_match_is_unanchored() -> None:
    config = cfg(V, "    real=10.0.0.2:80 gate -w 3")
    assert config.virtuals[0].reals[0].weight == 3
    assert 'real server: "-w" ignored' in config.warnings[0]


def test_per_real_request_and_receive() -> None:
    r = reals('real=10.0.0.2:80 gate 2 "check.html", "OK" u:4', 'real=10.0.0.3:80 masq "x" "y"')
    assert (r[0].weight, r[0].request, r[0].receive, r[0].upper) == (2, "/check.html", "OK", 4)
    assert (r[1].weight, r[1].request, r[1].receive) == (1, "/x", "y")


def test_per_real_request_with_a_leading_slash_loses_its_receive_as_in_ldirectord() -> None:
    config = cfg(V, '    real=10.0.0.2:80 gate 2 "/check.html", "OK" l:3 junk')
    real = config.virtuals[0].reals[0]
    assert (real.weight, real.request, real.receive, real.lower) == (2, "/check.html", None, 0)
    assert 'receive "OK" and anything after it ignored' in config.warnings[0]
    assert 'without its leading "/" ("check.html")' in config.warnings[0]


def test_thresholds() -> None:
    r = reals("real=10.0.0.2:80 gate 5 l:10 u:100", "real=10.0.0.3 gate u:7")
    assert (r[0].lower, r[0].upper) == (10, 100)
    assert (r[1].lower, r[1].upper) == (0, 7)
    found = problems(V, '    real=10.0.0.2:80 gate 5 "<l:10>"')
    assert found[0].message == 'Invalid real server line, around ""<l:10>""'
    assert found[0].hint == "thresholds are written l:N u:N without quotes"


def test_trailing_junk_is_an_error_and_trailing_blanks_are_not() -> None:
    assert reals("real=10.0.0.2:80 gate 1   ")[0].weight == 1
    assert messages(V, "    real=10.0.0.2:80 gate 1 extra") == [
        'Invalid real server line, around "extra"'
    ]


@pytest.mark.parametrize("text", ["real=10.0.0.2:80 route", "real=10.0.0.2:80 -g"])
def test_forward_method_must_be_known(text: str) -> None:
    assert messages(V, f"    {text}") == ["forward method must be gate, masq or ipip"]


def test_forward_method_is_required() -> None:
    found = problems(V, "    real=10.0.0.2:80")
    assert found[0].message == "invalid address for real server (wrong format)"
    assert found[0].hint == "expected real=HOST[:PORT] gate|masq|ipip [WEIGHT]"


def test_wrong_family_keyword() -> None:
    assert messages(V, "    real6=[::1]:80 gate") == [
        'cannot specify "real6" here.  please use "real" instead'
    ]
    assert messages("virtual6=[::1]:80", "    real=10.0.0.2:80 gate") == [
        'cannot specify "real" here.  please use "real6" instead'
    ]


def test_ipv6_reals_need_brackets() -> None:
    r = reals(
        "real6=[2001:db8::2]:80 gate",
        "real6=[2001:db8::3] masq 3",
        header="virtual6=[2001:db8::1]:80",
    )
    assert [(x.address, x.port, x.weight) for x in r] == [
        ("2001:db8::2", 80, 1),
        ("2001:db8::3", 0, 3),
    ]
    found = problems("virtual6=[2001:db8::1]:80", "    real6=2001:db8::2 gate")
    assert found[0].message.startswith("invalid address (")


def test_the_samples_double_colon_typo_is_misparsed_as_ldirectord_does() -> None:
    # real=192.168.6.2::5060 gate: the unanchored regex finds host "5060" (= 0.0.19.196)
    config = cfg(V, "    real=192.168.6.2::5060 gate")
    assert config.virtuals[0].reals[0].address == "0.0.19.196"
    assert "ignored" in config.warnings[0]
