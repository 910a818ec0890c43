"""virtual=/virtual6= forms and every per-virtual directive (reference §1.5, §1.6, §1.8)."""

from __future__ import annotations

import pytest

from ldirectord.config.model import (
    PORT_SERVICES,
    CheckType,
    Fallback,
    Family,
    HttpMethod,
    Method,
    Protocol,
    Service,
    VirtualService,
)
from tests.unit.test_config_support import FakeEnv, cfg, messages, problems

V = "virtual=10.0.0.1:80"
R = "    real=10.0.0.2:80 gate"


def one(*block: str, header: str = V, env: FakeEnv | None = None) -> VirtualService:
    return cfg(header, R, *block, env=env).virtuals[0]


def test_per_virtual_defaults() -> None:
    v = one()
    assert (v.family, v.protocol, v.address, v.port, v.fwmark) == (
        Family.INET,
        Protocol.TCP,
        "10.0.0.1",
        80,
        None,
    )
    assert (v.scheduler, v.persistent, v.netmask, v.schedflags, v.ops) == (
        "wrr",
        None,
        None,
        None,
        False,
    )
    c = v.check
    assert (c.checktype, c.service, c.request, c.receive, c.httpmethod) == (
        CheckType.NEGOTIATE,
        Service.HTTP,
        "/",
        "",
        HttpMethod.GET,
    )
    assert (c.checkcommand, c.login, c.passwd, c.database, c.secret, c.virtualhost) == (
        "/bin/true",
        "",
        "",
        "",
        "",
        None,
    )
    assert (v.quiescent, v.cleanstop, v.emailalert, v.fallback, v.monitorfile) == (
        False,
        True,
        "",
        None,
        None,
    )
    assert str(v.location) == "t.cf:1:1"


def test_service_names_as_ports_and_udp_for_domain() -> None:
    v = one(header="virtual=10.0.0.1:www")
    assert (v.port, v.check.service, v.address_as_written) == (80, Service.HTTP, "10.0.0.1:www")
    for port in ("53", "domain"):
        dns = one(header=f"virtual=10.0.0.1:{port}")
        assert (dns.protocol, dns.port, dns.check.service) == (Protocol.UDP, 53, Service.DNS)
    tcp = one("    protocol=tcp", header="virtual=10.0.0.1:domain")
    assert tcp.protocol is Protocol.TCP


def test_tcp_and_udp_on_the_same_address_are_different_virtuals() -> None:
    config = cfg("virtual=10.0.0.1:53", R, "    protocol=tcp", "virtual=10.0.0.1:53", R)
    assert [v.vid for v in config.virtuals] == ["tcp:10.0.0.1:53", "udp:10.0.0.1:53"]


def test_duplicate_virtual_is_an_error() -> None:
    found = problems(V, R, "virtual=10.0.0.1:http", R)
    assert found[0].message == "duplicate virtual server"
    assert str(found[0].location) == "t.cf:3:1"
    assert found[0].hint == "tcp:10.0.0.1:80 is already defined at line 1"


def test_a_virtual_line_that_ends_the_file_is_read_twice_by_ldirectord() -> None:
    found = problems(V, R, "virtual=10.0.0.9:80")
    assert [p.message for p in found] == ["duplicate virtual server"]
    assert "ends the file twice" in (found[0].hint or "")
    assert len(cfg(V, R, "virtual=10.0.0.9:80", "").virtuals) == 2
    assert len(cfg(V, R, "virtual=10.0.0.9:80", "# c").virtuals) == 2


@pytest.mark.parametrize(("port", "service"), sorted(PORT_SERVICES.items()))
def test_service_derived_from_the_resolved_port(port: int, service: Service) -> None:
    assert one(header=f"virtual=10.0.0.1:{port}").check.service is service


def test_unknown_port_means_service_none() -> None:
    assert one(header="virtual=10.0.0.1:9312").check.service is Service.NONE


def test_fwmark_virtuals() -> None:
    v = one(header="virtual=5   # a comment on a global line")
    assert (v.fwmark, v.protocol, v.address, v.port, v.check.service) == (
        5,
        Protocol.FWM,
        None,
        0,
        Service.NONE,
    )
    assert v.name == "5" and v.vid == "fwm:5"
    assert one("    protocol=fwm", header="virtual=5").protocol is Protocol.FWM
    assert messages("virtual=5", R, "    protocol=tcp") == [
        "protocol must be fwm if the virtual service is a fwmark (a number)"
    ]
    v6 = cfg("virtual6=5", "    real6=[2001:db8::2]:80 gate").virtuals[0]
    assert v6.vid == "fwm6:5" and v6.family is Family.INET6


def test_an_address_without_port_is_a_firewall_mark_with_a_warning() -> None:
    config = cfg("virtual=10.0.0.1", R)
    assert config.virtuals[0].fwmark == 10
    assert "is read as firewall mark 10" in config.warnings[0]
    assert "virtual=IP:PORT" in config.warnings[0]


def test_explicit_service_on_fwmark() -> None:
    assert one("    service=http", header="virtual=3").check.service is Service.HTTP


def test_hostname_virtual_resolves_in_its_family() -> None:
    env = FakeEnv(hosts={"web.example": "192.0.2.10"})
    v = one(header="virtual=web.example:http", env=env)
    assert (v.address, v.port) == ("192.0.2.10", 80)
    found = problems("virtual=nope.example:80", R, env=env)
    assert (
        found[0].message == "invalid address for virtual service (host nope.example: no such host)"
    )


def test_ipv6_virtual() -> None:
    config = cfg("virtual6=[2001:db8::1]:80", "    real6=[2001:db8::2]:80 gate", "    netmask=64")
    v = config.virtuals[0]
    assert (v.family, v.address, v.port, v.name, v.netmask) == (
        Family.INET6,
        "2001:db8::1",
        80,
        "[2001:db8::1]:80",
        "64",
    )
    assert v.reals[0].address == "2001:db8::2"


def test_ipv6_forms_that_fail() -> None:
    assert messages("virtual=[2001:db8::1]:80", R) == [
        'cannot specify an IPv6 address here. please use "virtual6" instead.'
    ]
    assert messages("virtual6=[1:2:3:4:5:6:7:8:9]:80") == [
        "invalid ipv6 address for virtual server"
    ]
    found = problems("virtual6=2001:db8::1")
    assert "brackets" in (found[0].hint or "")
    assert messages("virtual=", R)[0] == "invalid address for virtual server"


def test_request_receive_quoting() -> None:
    v = one('    request="index.html"', '    receive="Test Page"')
    assert (v.check.request, v.check.receive) == ("/index.html", "Test Page")
    assert one('    request="/a"b" junk').check.request == '/a"b'
    assert one('    request = "http://x/"').check.request == "/http://x/"
    assert messages(V, R, '    request=""') == ["no request string specified"]
    assert messages(V, R, '    receive=""') == ["invalid receive string"]
    found = problems(V, R, "    request=/index.html")
    assert found[0].message == 'Unknown command "request=/index.html"'
    assert found[0].hint == 'request needs its value in double quotes: request="..."'
    typographic = problems(V, R, '    receive=“x"')
    assert typographic[0].hint == 'use plain double quotes (") instead of typographic quotes'


def test_repeated_directives_last_wins() -> None:
    v = one(
        '    request="a"',
        '    request="b"',
        "    virtualhost=x",
        "    virtualhost=y",
        "    scheduler=wlc",
        "    scheduler=rr",
    )
    assert (v.check.request, v.check.virtualhost, v.scheduler) == ("/b", "y", "rr")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("login", "invalid login string"),
        ("passwd", "invalid password"),
        ("database", "invalid database"),
        ("secret", "invalid secret"),
    ],
)
def test_mandatory_quotes_and_empty_values(name: str, message: str) -> None:
    assert getattr(one(f'    {name}="v a"').check, name) == "v a"
    assert messages(V, R, f'    {name}=""') == [message]
    assert messages(V, R, f"    {name}=v") == [f'Unknown command "{name}=v"']


def test_load_is_parsed_and_checked() -> None:
    one('    load="cpu"')
    assert messages(V, R, '    load="!!"') == ["invalid string for load testing"]


@pytest.mark.parametrize(
    ("text", "checktype", "n"),
    [
        ("connect", CheckType.CONNECT, None),
        ("negotiate", CheckType.NEGOTIATE, None),
        ("ping", CheckType.PING, None),
        ("off", CheckType.OFF, None),
        ("on", CheckType.ON, None),
        ("external", CheckType.EXTERNAL, None),
        ("external-perl", CheckType.EXTERNAL_PERL, None),
        ("5", CheckType.COMBINED, 5),
        ("checktimeout3", CheckType.COMBINED, 3),
        ('"connect"', CheckType.CONNECT, None),
    ],
)
def test_checktype(text: str, checktype: CheckType, n: int | None) -> None:
    check = one(f"    checktype={text}").check
    assert (check.checktype, check.combined_n) == (checktype, n)


def test_bad_checktype() -> None:
    assert messages(V, R, "    checktype=tcp")[0].startswith("checktype must be")


def test_checkcommand_quotes_optional() -> None:
    assert one("    checkcommand=/usr/bin/chk").check.checkcommand == "/usr/bin/chk"
    assert one('    checkcommand="/usr/bin/chk x"').check.checkcommand == "/usr/bin/chk x"
    assert messages(V, R, "    checkcommand=") == ["invalid check command"]


def test_per_virtual_numbers() -> None:
    c = one("    checkcount=3", "    failurecount=2", "    checkport=8080").check
    assert (c.checkcount, c.failurecount, c.checkport) == (3, 2, 8080)
    assert messages(V, R, "    checkport=70000") == ["checkport must be in range 1..65535"]
    assert messages(V, R, "    checkport=x") == ["invalid port"]
    assert messages(V, R, "    checktimeout=0") == ["invalid check timeout"]
    assert messages(V, R, "    negotiatetimeout=x") == ["invalid negotiate timeout"]
    assert messages(V, R, "    failurecount=0") == ["invalid failure count"]
    assert messages(V, R, "    checkinterval=0") == ["invalid checkinterval"]
    assert messages(V, R, "    connecttimeout=3") == [
        "connecttimeout directive deprecated in favour of negotiatetimeout"
    ]


def test_service_and_its_order_dependent_login_defaults() -> None:
    ftp = one("    service=ftp").check
    assert (ftp.service, ftp.login, ftp.passwd) == (
        Service.FTP,
        "anonymous",
        "ldirectord@director1",
    )
    kept = one('    login="bob"', "    service=ftp").check
    assert (kept.login, kept.passwd) == ("bob", "ldirectord@director1")
    later = one("    service=ftp", '    login="bob"').check
    assert later.login == "bob"
    sip = one("    service=sip").check
    assert (sip.login, sip.passwd) == ("ldirectord@director1", "")
    derived = one(header="virtual=10.0.0.1:21").check
    assert (derived.service, derived.login) == (Service.FTP, "")  # derived: no defaults
    assert messages(V, R, "    service=ssh")[0].startswith("service must be dns, ftp")


def test_scheduler_is_the_first_lowercase_run() -> None:
    assert one("    scheduler=sed").scheduler == "sed"
    assert one("    scheduler=2wlc9").scheduler == "wlc"
    assert messages(V, R, "    scheduler=RR") == [
        "invalid scheduler, should be only lowercase letters (a-z)"
    ]


def test_httpmethod() -> None:
    assert one("    httpmethod=head").check.httpmethod is HttpMethod.HEAD
    assert messages(V, R, "    httpmethod=POST") == ["httpmethod must be GET or HEAD"]


def test_virtualhost_quotes_optional() -> None:
    assert one("    virtualhost=www.x.y.z").check.virtualhost == "www.x.y.z"
    assert one('    virtualhost="www.x.y.z"').check.virtualhost == "www.x.y.z"


def test_persistence_netmask_schedflags_ops() -> None:
    v = one("    persistent=600", "    netmask=255.255.255.0", "    schedflags=sh-port,sh-fallback")
    assert (v.persistent, v.netmask, v.schedflags) == (600, "255.255.255.0", "sh-port,sh-fallback")
    assert messages(V, R, "    netmask=24") == ["invalid netmask: dotted quad notation is required"]
    assert messages(V, R, "    netmask=255.255.255.0 ") == [
        "invalid netmask: dotted quad notation is required"
    ]
    assert messages(V, R, "    persistent=x") == ["invalid persistent timeout"]
    assert messages("virtual6=[::1]:80", "    real6=[::1]:80 gate", "    netmask=129") == [
        "invalid netmask: a prefix length between 1 and 128 is required"
    ]
    assert one("    ops=yes", header="virtual=10.0.0.1:53").ops is True
    assert messages(V, R, "    ops=1") == ["ops must be 'yes' or 'no'"]


def test_protocol() -> None:
    assert one("    protocol=udp").protocol is Protocol.UDP
    assert messages(V, R, "    protocol=sctp") == [
        "protocol must be tcp or udp if the virtual service is an address and port"
    ]


def test_virtual_overrides_of_global_settings() -> None:
    v = cfg(
        "quiescent=yes",
        "emailalert=all@x",
        V,
        R,
        "    quiescent=no",
        "    cleanstop=no",
        '    emailalert="v@x"',
        "    emailalertfreq=60",
        "    emailalertstatus=starting",
        "    smtp=relay.x",
        "    fallbackcommand=/bin/fb",
        "    servicename=Web Site",
        "    comment=Test load balanced web site",
    ).virtuals[0]
    assert (v.quiescent, v.cleanstop, v.emailalert, v.emailalertfreq) == (False, False, "v@x", 60)
    assert [s.value for s in v.emailalertstatus] == ["starting"]
    assert (v.smtp, v.fallbackcommand, v.servicename, v.comment) == (
        "relay.x",
        "/bin/fb",
        "Web Site",
        "Test load balanced web site",
    )
    assert messages(V, R, "    cleanstop=No") == ["cleanstop must be 'yes' or 'no'"]


def test_monitorfile() -> None:
    assert one('    monitorfile="/var/log/m.log"').monitorfile == "/var/log/m.log"
    env = FakeEnv(unwritable={"/ro/m": "Permission denied"})
    assert messages(V, R, "    monitorfile=/ro/m", env=env) == [
        "unable to open monitorfile /ro/m: Permission denied"
    ]


def test_virtual_fallback() -> None:
    v = one("    fallback=127.0.0.1:8080 masq")
    assert v.fallback is not None
    assert (v.fallback.address, v.fallback.port, v.fallback.method) == (
        "127.0.0.1",
        8080,
        Method.MASQ,
    )
    assert one("    fallback=127.0.0.1").fallback.port == 80  # type: ignore[union-attr]
    assert one("    fallback=127.0.0.1 gate", header="virtual=10.0.0.1:www").fallback.port == 80  # type: ignore[union-attr]
    assert messages(V, R, "    fallback6=[::1]:80") == [
        'cannot specify "fallback6" here.  please use "fallback" instead'
    ]
    assert messages(V, R, "    fallback=127.0.0.1:80 tunnel") == [
        "forward method must be gate, masq or ipip"
    ]
    assert messages(V, R, "    fallback=nohost.example") == [
        "invalid IPv4 address or could not resolve for fallback server: nohost.example (no such host)"
    ]
    empty = cfg(V, R, "    fallback=")
    loopback = empty.virtuals[0].fallback
    assert loopback is not None
    assert loopback == Fallback("127.0.0.1", 80, Method.GATE, loopback.location)
    assert "fallback server without a host means 127.0.0.1" in empty.warnings[0]
    own = cfg("fallback=127.0.0.2:81", V, R, "    fallback=127.0.0.3").virtuals[0].fallback
    assert own is not None and (own.address, own.port) == ("127.0.0.3", 80)


def test_unknown_and_global_only_directives_in_a_block() -> None:
    found = problems(V, R, "    autoreload=yes", "    weight=2")
    assert (
        found[0].hint
        == "autoreload is a global directive: put it in column 0 outside any virtual block"
    )
    assert found[1].message == 'Unknown command "weight=2"'
