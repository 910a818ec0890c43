"""Global directives and defaults (reference §1.2–§1.4), effective values of ld_setup."""

from __future__ import annotations

import pytest

from ldirectord.config.model import DaemonStatus, Fallback, GlobalConfig, Method
from tests.unit.test_config_support import FakeEnv, cfg, messages, problems

V = "virtual=10.0.0.1:80"
R = "    real=10.0.0.2:80 gate"


def test_defaults_come_from_ldirectords_code() -> None:
    g = cfg().globals
    assert g == GlobalConfig()
    assert g.quiescent is False  # the man page says yes; the code says no
    assert (g.checkinterval, g.checktimeout, g.negotiatetimeout) == (10, None, None)
    assert (g.cleanstop, g.readdquiescent, g.autoreload, g.fork, g.supervised) == (
        True,
        False,
        False,
        False,
        False,
    )
    assert g.logfile == "/var/log/ldirectord.log"
    assert g.emailalertstatus == frozenset(DaemonStatus)
    virtual = cfg(V, R).virtuals[0]
    assert (virtual.check.checktimeout, virtual.check.negotiatetimeout) == (5, 30)
    assert (virtual.check.checkcount, virtual.check.failurecount) == (1, 1)
    assert virtual.check.checkinterval == 10


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("checktimeout=5", 5),
        ("checktimeout=5s", 5),
        ("checktimeout = x7y8", 7),
        ("checktimeout=00 7", None),
    ],
)
def test_numbers_are_the_first_run_of_digits(text: str, value: int | None) -> None:
    if value is None:
        assert messages(text) == ["invalid check timeout value"]
    else:
        assert cfg(text).globals.checktimeout == value


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("checktimeout", "invalid check timeout value"),
        ("negotiatetimeout", "invalid negotiate timeout value"),
        ("checkinterval", "invalid check interval value"),
        ("checkcount", "invalid check count value"),
        ("failurecount", "invalid failure count value"),
    ],
)
def test_zero_or_no_digits_is_an_error(name: str, message: str) -> None:
    assert message in messages(f"{name}=0")
    assert message in messages(f"{name}=none")


def test_each_numeric_global() -> None:
    g = cfg("negotiatetimeout=20", "checkinterval=3", "failurecount=4", "checkcount=2").globals
    assert (g.negotiatetimeout, g.checkinterval, g.failurecount, g.checkcount) == (20, 3, 4, 2)
    assert any("checkcount option is deprecated" in w for w in cfg("checkcount=2").warnings)


@pytest.mark.parametrize("name", ["autoreload", "fork", "quiescent", "readdquiescent", "cleanstop"])
def test_yes_no_exactly(name: str) -> None:
    default = getattr(GlobalConfig(), name)
    assert getattr(cfg(f"{name}=yes").globals, name) is True
    assert getattr(cfg(f"{name} = no").globals, name) is False
    assert getattr(cfg().globals, name) is default
    for bad in ("Yes", "no ", "1", "true", ""):
        assert messages(f"{name}={bad}") == [f"{name} must be 'yes' or 'no'"]


def test_supervised_forms() -> None:
    assert cfg("supervised=yes").globals.supervised is True
    bare = cfg("supervised")
    assert bare.globals.supervised is True
    assert "bare supervised directive" in bare.warnings[0]
    assert cfg("supervised   ").globals.supervised is True
    assert messages("supervised=maybe") == ["supervised must be 'yes' or 'no'"]
    assert messages("supervisedx=yes") == ["supervised must be 'yes' or 'no'"]


def test_repeated_globals_last_wins() -> None:
    assert cfg("checkinterval=3", "checkinterval=7").globals.checkinterval == 7


def test_logfile_needs_quotes_and_is_checked() -> None:
    assert cfg('logfile="local0"').globals.logfile == "local0"
    assert cfg('logfile="/var/log/x.log"').globals.logfile == "/var/log/x.log"
    assert messages("logfile=/var/log/x.log") == ['Unknown command "logfile=/var/log/x.log"']
    env = FakeEnv(unwritable={"/ro/x.log": "Permission denied"})
    assert messages('logfile="/ro/x.log"', env=env) == [
        "unable to open logfile: /ro/x.log (Permission denied)"
    ]
    assert cfg("supervised=yes", 'logfile="/ro/x.log"', env=env).globals.logfile == "/ro/x.log"
    assert "not a syslog facility" in messages('logfile="bogus"')[0]


def test_callback_needs_quotes() -> None:
    assert cfg('callback="/usr/local/bin/cb"').globals.callback == "/usr/local/bin/cb"
    found = problems("callback=/usr/local/bin/cb")
    assert found[0].hint == 'callback needs its value in double quotes: callback="..."'


def test_text_globals() -> None:
    g = cfg(
        'fallbackcommand="/bin/fb" now',
        'emailalertfrom="LVS" <lvs@x>',
        "execute=other.cf",
        "execute = third.cf",
        "smtp=mail.example.com:25",
    ).globals
    assert g.fallbackcommand == '"/bin/fb" now'  # verbatim: run through /bin/sh
    assert g.emailalertfrom == '"LVS" <lvs@x>'
    assert g.execute == ("other.cf", "third.cf")
    assert g.smtp == "mail.example.com"
    assert messages('smtp="mail"') == ["invalid SMTP server address"]
    assert messages("fallbackcommand=") == ["invalid fallback command"]
    assert messages("emailalertfrom=") == ["no email from address specified"]


def test_maintenancedir_warns_when_not_a_directory() -> None:
    config = cfg("maintenancedir=/nope")
    assert config.globals.maintenancedir == "/nope"
    assert "maintenance directory does not exist" in config.warnings[0]
    assert cfg("maintenancedir=/m", env=FakeEnv(dirs={"/m"})).warnings == ()
    assert messages("maintenancedir=") == ["maintenance directory not specified"]


def test_emailalert_settings() -> None:
    g = cfg('emailalert="ops@example.com"', "emailalertfreq=600x").globals
    assert (g.emailalert, g.emailalertfreq) == ("ops@example.com", 600)
    assert cfg("emailalert=a@b, c@d").globals.emailalert == "a@b, c@d"
    assert messages("emailalert=") == ["no email address specified"]
    assert messages("emailalertfreq=x") == ["invalid email alert frequency"]


@pytest.mark.parametrize(
    ("text", "statuses"),
    [
        ("all", set(DaemonStatus)),
        ("none", set()),
        ("starting, running", {DaemonStatus.STARTING, DaemonStatus.RUNNING}),
        ("stopping,reloading", {DaemonStatus.STOPPING, DaemonStatus.RELOADING}),
        ("starting,all", set(DaemonStatus)),
    ],
)
def test_emailalertstatus(text: str, statuses: set[DaemonStatus]) -> None:
    assert cfg(f"emailalertstatus={text}").globals.emailalertstatus == statuses


def test_emailalertstatus_errors() -> None:
    assert messages("emailalertstatus=bogus") == ['invalid email alert status at: "bogus"']
    assert messages("emailalertstatus=none,all") == [
        'invalid email alert status: "all" specified with "none"'
    ]


def test_deprecated_and_unknown_directives() -> None:
    assert messages("timeout=5") == [
        "timeout directive deprecated in favour of checktimeout and negotiatetimeout"
    ]
    assert messages("connecttimeout=5") == [
        "connecttimeout directive deprecated in favour of negotiatetimeout"
    ]
    found = problems("checktimout=5")
    assert found[0].message == 'Unknown command "checktimout=5"'
    assert found[0].hint == "did you mean checktimeout?"
    assert problems("scheduler=rr")[0].hint == (
        "scheduler is only valid inside a virtual block: indent it by 4 spaces or a tab"
    )


def test_global_fallback_and_inheritance() -> None:
    config = cfg("fallback=127.0.0.1", V, R, "virtual=10.0.0.1:53", R, "virtual=9", R)
    g = config.globals
    assert g.fallback is not None
    assert (g.fallback.address, g.fallback.port, g.fallback.method) == ("127.0.0.1", 0, Method.GATE)
    ports = [v.fallback.port for v in config.virtuals if v.fallback]
    assert ports == [80, 53, 0]  # no port written: the virtual's own


def test_global_fallback_with_port_and_method() -> None:
    config = cfg("fallback=127.0.0.1:8080 masq", V, R)
    assert config.virtuals[0].fallback == Fallback(
        "127.0.0.1",
        8080,
        Method.MASQ,
        config.globals.fallback.location,  # type: ignore[union-attr]
    )


def test_global_fallback_parses_the_last_two_words() -> None:
    found = problems("fallback=127.0.0.1:80    # the sorry server")
    assert found[0].message == "forward method must be gate, masq or ipip"
    assert found[0].hint == "global lines keep trailing comments: remove '# ...'"


def test_global_fallback6() -> None:
    config = cfg(
        "fallback6=[::1]:80", "virtual6=[2001:db8::1]:80", "    real6=[2001:db8::2]:80 gate"
    )
    assert config.globals.fallback6 is not None
    assert config.virtuals[0].fallback == Fallback(
        "::1", 80, Method.GATE, config.globals.fallback6.location
    )
    assert config.globals.fallback is None


@pytest.mark.parametrize(
    ("lines_", "ct", "nt"),
    [
        ((), 5, 30),
        (("checktimeout=3",), 3, 3),
        (("negotiatetimeout=20",), 20, 20),
        (("checktimeout=3", "negotiatetimeout=20"), 3, 20),
        (("checktimeout=3", V, R, "    negotiatetimeout=9"), 9, 9),
        (("negotiatetimeout=20", V, R, "    checktimeout=4"), 4, 4),
        (("checktimeout=3", "negotiatetimeout=20", V, R, "    checktimeout=4"), 4, 4),
        (("checktimeout=3", "negotiatetimeout=20", V, R, "    negotiatetimeout=7"), 7, 7),
        ((V, R, "    checktimeout=4", "    negotiatetimeout=8"), 4, 8),
    ],
)
def test_timeouts_are_mutual_defaults(lines_: tuple[str, ...], ct: int, nt: int) -> None:
    text = lines_ if any(line.startswith("virtual") for line in lines_) else (*lines_, V, R)
    check = cfg(*text).virtuals[0].check
    assert (check.checktimeout, check.negotiatetimeout) == (ct, nt)


def test_globals_after_the_virtuals_still_apply() -> None:
    virtual = cfg(V, R, "", "quiescent=yes", "failurecount=3").virtuals[0]
    assert virtual.quiescent is True
    assert virtual.check.failurecount == 3


def test_checkinterval_per_virtual_needs_fork() -> None:
    config = cfg("checkinterval=4", V, R, "    checkinterval=2")
    assert config.virtuals[0].check.checkinterval == 4
    assert (
        "checkinterval in virtual service tcp:10.0.0.1:80 ignored when fork=no"
        in config.warnings[0]
    )
    forked = cfg("fork=yes", "checkinterval=4", V, R, "    checkinterval=2")
    assert forked.virtuals[0].check.checkinterval == 2
    assert forked.warnings == ()
