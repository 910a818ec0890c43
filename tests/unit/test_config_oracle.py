"""Differential test against Perl ldirectord's own read_config (opt-in, needs the Perl source).

Set LDIRECTORD_PERL_ORACLE to a copy of upstream ``ldirectord/ldirectord.in`` (resource-agents)
and have perl with Socket6 (Debian: libsocket6-perl). The test pulls read_config and the subs
it calls out of that file at run time, runs them on random configs (logfile opening and
config_error stubbed, as the harness behind shared/configs/expected.json), and checks that we
accept and reject the same configs, report ldirectord's error line with the same message, and
build the same virtual services, reals and globals. Nothing of the Perl code is stored here.

    LDIRECTORD_PERL_ORACLE=/path/to/ldirectord.in LDIRECTORD_ORACLE_RUNS=2000 pytest -m slow \\
        tests/unit/test_config_oracle.py
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ldirectord.config import parse_text
from ldirectord.config.model import Config
from ldirectord.errors import ConfigError

ORACLE = os.environ.get("LDIRECTORD_PERL_ORACLE", "")
RUNS = int(os.environ.get("LDIRECTORD_ORACLE_RUNS", "300"))
SUBS = [
    "parse_emailalertstatus",
    "set_defaults",
    "read_emailalert",
    "read_config",
    "_ld_read_config_virtual_resolve",
    "ld_port_to_service",
    "ld_service_to_port",
    "_ld_read_config_fallback_resolve",
    "_ld_read_config_real_resolve",
    "add_real_server_range",
    "add_real_server",
    "parse_fallback",
    "get_real_id_str",
    "get_virtual_id_str",
    "get_virtual",
    "ip_to_int",
    "int_to_ip",
    "is_ip",
    "is_octet",
    "ld_gethostbyname",
    "ld_getservbyname",
    "ld_gethostservbyname",
]
HEAD = r"""
use strict; no strict 'vars'; no warnings;
use Socket;
use Socket6 qw(NI_NUMERICHOST NI_NUMERICSERV NI_NAMEREQD getaddrinfo getnameinfo inet_pton inet_ntop);
use JSON::PP;
$DAEMON_STATUS_STARTING = 1; $DAEMON_STATUS_RUNNING = 2; $DAEMON_STATUS_STOPPING = 4;
$DAEMON_STATUS_RELOADING = 8; $DAEMON_STATUS_ALL = 15; $DAEMON_STATUS = 2; $HOSTNAME = "director1";
sub ld_openlog { return 0; }
sub config_warn { }
sub config_error { my ($line, $msg) = @_; chomp $msg;
  print JSON::PP->new->canonical->encode({error => {line => $line, message => $msg}}), "\n"; exit 0; }
"""
TAIL = r"""
$CONFIG = $ARGV[0];
read_config();
my @vs;
for my $v (@VIRTUAL) {
  my %o = map { $_ => $v->{$_} } grep { $_ ne 'real' } keys %$v;
  $o{reals} = [ map { my $r = $_; +{ map { $_ => $r->{$_} } keys %$r } } @{$v->{real}} ];
  push @vs, \%o;
}
my %g = (checktimeout => $CHECKTIMEOUT, negotiatetimeout => $NEGOTIATETIMEOUT,
  checkinterval => $CHECKINTERVAL, failurecount => $FAILURECOUNT, quiescent => $QUIESCENT,
  fork => $FORKING, emailalert => $EMAILALERT, emailalertfreq => $EMAILALERTFREQ, smtp => $SMTP,
  callback => $CALLBACK, fallbackcommand => $FALLBACKCOMMAND, emailalertfrom => $EMAILALERTFROM,
  execute => [sort keys %LD_INSTANCE]);
print JSON::PP->new->canonical->encode({globals => \%g, virtuals => \@vs}), "\n";
"""


def _extract(source: str, name: str) -> str:
    lines = source.split("\n")
    start = next(i for i, line in enumerate(lines) if re.match(rf"^sub {re.escape(name)}\b", line))
    end = next(i for i in range(start, len(lines)) if lines[i] == "}")
    return "\n".join(lines[start : end + 1])


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not ORACLE or not Path(ORACLE).is_file():
        pytest.skip("set LDIRECTORD_PERL_ORACLE to upstream ldirectord/ldirectord.in")
    if shutil.which("perl") is None:
        pytest.skip("no perl")
    if subprocess.run(["perl", "-MSocket6", "-e1"], check=False).returncode != 0:
        pytest.skip("no Socket6 (libsocket6-perl)")
    source = Path(ORACLE).read_text(errors="replace")
    path = tmp_path_factory.mktemp("oracle") / "harness.pl"
    path.write_text(HEAD + "\n\n".join(_extract(source, n) for n in SUBS) + TAIL)
    return path


VALUES = {
    "num": ["3", "0", "00", "5s", "x", "", " 7", "3 # c", "12abc"],
    "yn": ["yes", "no", "Yes", "no ", "no # c", "", "1"],
    "q": ['"x"', '""', "x", '"a"b"', '"/p q"', '“x"', '"x" junk'],
    "word": ["rr", "wlc", "RR", "2wlc", "", "tcp", "udp", "fwm", "head", "GET"],
    "ct": ["connect", "negotiate", "ping", "off", "on", "external", "3", "tcp", "checktimeout3"],
    "svc": ["http", "https", "ftp", "sip", "dns", "none", "ssh", "mysql", "http_proxy", "HTTP"],
    "status": ["all", "none", "starting, running", "none,all", "bogus", ""],
    "fb": [
        "127.0.0.1",
        "127.0.0.1:80",
        "127.0.0.1:80 masq",
        "127.0.0.1:http",
        "127.0.0.1:80 # x y",
        "localhost:8080",
        "[::1]:80",
        "127.0.0.1:80 bogus",
        "",
        "127.0.0.1:www ipip",
        ":81",
    ],
    "nm": ["255.255.255.0", "24", "255.255.255.0 ", "64"],
    "text": ["Web Site", "", "a b  ", '"q"'],
    "mail": ['"a@b"', "a@b", '""', "", '"a@b" '],
}
GLOBALS = [
    *(
        (n, "num")
        for n in ("checktimeout", "negotiatetimeout", "checkinterval", "failurecount", "timeout")
    ),
    *((n, "yn") for n in ("autoreload", "fork", "quiescent", "readdquiescent", "cleanstop")),
    ("fallback", "fb"),
    ("emailalert", "mail"),
    ("emailalertfreq", "num"),
    ("emailalertstatus", "status"),
    ("emailalertfrom", "text"),
    ("smtp", "text"),
    ("fallbackcommand", "text"),
    ("callback", "q"),
    ("execute", "text"),
    ("scheduler", "word"),
    ("supervised", "yn"),
]
VIRTUAL = [
    *((n, "num") for n in ("checktimeout", "negotiatetimeout", "failurecount", "checkport")),
    *((n, "num") for n in ("persistent", "emailalertfreq")),
    *((n, "yn") for n in ("quiescent", "cleanstop", "ops", "autoreload")),
    *((n, "q") for n in ("request", "receive", "login", "passwd", "database", "secret", "load")),
    *((n, "q") for n in ("virtualhost", "checkcommand")),
    *((n, "word") for n in ("scheduler", "httpmethod", "protocol")),
    ("checktype", "ct"),
    ("service", "svc"),
    ("fallback", "fb"),
    ("emailalert", "mail"),
    ("emailalertstatus", "status"),
    ("netmask", "nm"),
    *((n, "text") for n in ("smtp", "fallbackcommand", "schedflags", "servicename", "comment")),
]
HEADERS = ["10.0.0.1:80", "10.0.0.1:www", "10.0.0.1:53", "10.0.0.1:domain", "5", "7 # c"]
HEADERS += ["localhost:21", "10.0.0.1", "[::1]:80", "10.0.0.3:5060", "10.0.0.5:nosuch"]
HEADERS6 = ["[::1]:80", "[2001:db8::1]:http", "[::1]:53", "5", "[zz]:80", "10.0.0.1:80"]
REALS = ["10.1.0.1:80 gate", "10.1.0.2 masq 3", "10.1.0.3:www ipip 0", "10.1.0.7:80"]
REALS += ["10.1.0.4->10.1.0.6:80 gate 2", "10.1.0.8:80 route", '10.1.0.9:80 gate 1 "/x", "ok"']
REALS += ["10.1.0.10:80 gate 2 l:1 u:9", "10.1.0.11 gate -w 4", "10.1.0.12:80 gate 1 extra"]
REALS += ["localhost:80 gate", "10.1.0.15:nosuch gate", "192.168.6.2::5060 gate"]
REALS += ['10.1.0.17 gate "a" "b" u:3', "10.1.0.20->10.1.0.16 gate"]
REALS6 = ["[::2]:80 gate", "[::3] masq 2", "10.1.0.1 gate", "[::2]->[::3] gate", "::5 gate"]
NOISE = ["#", '"', "\t", "\r", " ", "\n", "=", ":", "0", "[", "-", ">", ",", "\n    ", "\n\n"]


def _directive(rng: random.Random, table: list[tuple[str, str]]) -> str:
    name, kind = rng.choice(table)
    pad = ["", "", " ", "\t"]
    return f"{name}{rng.choice(pad)}={rng.choice(pad)}{rng.choice(VALUES[kind])}"


def _block(rng: random.Random, v6: bool) -> list[str]:
    out = [("virtual6=" if v6 else "virtual=") + rng.choice(HEADERS6 if v6 else HEADERS)]
    for _ in range(rng.randint(0, 6)):
        indent = rng.choice(["    ", "\t", "        ", " \t", "  ", "   "])
        if rng.random() < 0.4:
            keyword = "real6=" if v6 and rng.random() < 0.8 else "real="
            body = keyword + rng.choice(REALS6 if v6 else REALS)
        else:
            body = _directive(rng, VIRTUAL)
        out.append(indent + body + ("  # comment" if rng.random() < 0.1 else ""))
        if rng.random() < 0.05:
            out.append(rng.choice(["", "# c", "\t", "     "]))
    return out


def generate(rng: random.Random) -> str:
    out = [_directive(rng, GLOBALS) for _ in range(rng.randint(0, 4))]
    for _ in range(rng.randint(0, 3)):
        out += _block(rng, rng.random() < 0.3)
        if rng.random() < 0.5:
            out.append("")
    chars = list("\n".join(out) + "\n")
    if rng.random() < 0.5:
        for _ in range(rng.randint(1, 4)):
            if not chars:
                break
            i = rng.randrange(len(chars))
            op = rng.random()
            if op < 0.5:
                chars.insert(i, rng.choice(NOISE))
            elif op < 0.8:
                chars[i] = rng.choice(NOISE)
            else:
                del chars[i]
    return "".join(chars)


def _oracle(harness: Path, text: str, tmp: Path) -> dict[str, Any]:
    path = tmp / "oracle.cf"
    path.write_text(text, errors="surrogateescape")
    done = subprocess.run(
        ["perl", str(harness), str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    if not done.stdout.strip():
        return {"error": {"line": -1, "message": f"perl died: {done.stderr[-300:]}"}}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _virtual_differences(config: Config, want: list[dict[str, Any]]) -> str | None:
    if len(want) != len(config.virtuals):
        return f"{len(config.virtuals)} virtuals, ldirectord {len(want)}"
    for v, w in zip(config.virtuals, want, strict=True):
        c = v.check
        server = w.get("server")
        pairs: dict[str, tuple[Any, Any]] = {
            "server": (v.address, server.strip("[]") if server else server),
            "port": (v.port, int(w["port"])),
            "protocol": (v.protocol.value, w["protocol"]),
            "fwm": (v.fwmark, _int(w.get("fwm"))),
            "scheduler": (v.scheduler, w["scheduler"]),
            "checktype": (c.checktype.value, w["checktype"]),
            "num_connects": (c.combined_n or 0, int(w["num_connects"])),
            "service": (c.service.value, w["service"]),
            "checkport": (c.checkport, _int(w.get("checkport"))),
            "request": (c.request, w["request"]),
            "receive": (c.receive, w["receive"]),
            "virtualhost": (c.virtualhost, w.get("virtualhost")),
            "login": (c.login, w["login"]),
            "passwd": (c.passwd, w["passwd"]),
            "database": (c.database, w["database"]),
            "secret": (c.secret, w["secret"]),
            "checkcommand": (c.checkcommand, w["checkcommand"]),
            "persistent": (v.persistent, _int(w.get("persistent"))),
            "netmask": (v.netmask, w.get("netmask")),
            "schedflags": (v.schedflags, w.get("schedflags")),
            "ops": (v.ops, w["ops"] == "yes"),
            "httpmethod": (c.httpmethod.value, w["httpmethod"]),
            "servicename": (v.servicename, w.get("servicename")),
            "comment": (v.comment, w.get("comment")),
        }
        if w.get("fallback"):
            f = w["fallback"]
            ours = (
                (v.fallback.address, v.fallback.port, v.fallback.method.value)
                if v.fallback
                else None
            )
            pairs["fallback"] = (ours, (f["server"].strip("[]"), int(f["port"] or 0), f["forward"]))
        theirs = [
            (
                r["server"].strip("[]"),
                int(r["port"]),
                r["forward"],
                int(r["weight"]),
                r.get("request"),
                r.get("receive"),
                int(r.get("l-threshold") or 0),
                int(r.get("u-threshold") or 0),
            )
            for r in w["reals"]
        ]
        ours_reals = [
            (r.address, r.port, r.method.value, r.weight, r.request, r.receive, r.lower, r.upper)
            for r in v.reals
        ]
        pairs["reals"] = (ours_reals, theirs)
        for key, (ours_value, theirs_value) in pairs.items():
            if ours_value != theirs_value:
                return f"{v.location} {key}: ours {ours_value!r}, ldirectord {theirs_value!r}"
    return None


def _unset(value: Any) -> int | None:
    return None if int(value) < 0 else int(value)


def _global_differences(config: Config, w: dict[str, Any]) -> str | None:
    g = config.globals
    pairs = {
        "checkinterval": (g.checkinterval, float(w["checkinterval"])),
        "checktimeout": (g.checktimeout, _unset(w["checktimeout"])),
        "negotiatetimeout": (g.negotiatetimeout, _unset(w["negotiatetimeout"])),
        "failurecount": (g.failurecount, int(w["failurecount"])),
        "quiescent": (g.quiescent, w["quiescent"] == "yes"),
        "fork": (g.fork, w["fork"] == "yes"),
        "emailalert": (g.emailalert, w["emailalert"]),
        "emailalertfreq": (g.emailalertfreq, int(w["emailalertfreq"])),
        "smtp": (g.smtp, w["smtp"]),
        "callback": (g.callback, w["callback"]),
        "fallbackcommand": (g.fallbackcommand, w["fallbackcommand"]),
        "emailalertfrom": (g.emailalertfrom, w["emailalertfrom"]),
        "execute": (sorted(g.execute), w["execute"]),
    }
    for key, (ours, theirs) in pairs.items():
        if ours != theirs:
            return f"global {key}: ours {ours!r}, ldirectord {theirs!r}"
    return None


def difference(text: str, want: dict[str, Any]) -> str | None:
    """None when we agree with ldirectord's result ``want`` on ``text``."""
    try:
        config = parse_text(text, "x.cf", check_files=False, resolve_deadline=2)
    except ConfigError as exc:
        problems = exc.problems
        if "error" not in want:
            if all("not a syslog facility" in p.message for p in problems):
                return None  # deliberate: ldirectord dies at its first log line instead
            return f"we reject, ldirectord accepts: {[p.render() for p in problems]}"
        line, message = want["error"]["line"], want["error"]["message"]
        if message == "duplicate virtual server":  # we name the virtual= line, not the ender
            return None if any(p.message == message for p in problems) else "no duplicate error"
        ours = [p.message for p in problems if p.location.line == line]
        same = [m for m in ours if m[:20] == message[:20] or message.startswith("Unknown command")]
        if not same:
            return f"line {line}: ldirectord {message!r}, ours {ours or [p.render() for p in problems]}"
        return None
    if "error" in want:
        return f"we accept, ldirectord rejects: {want['error']}"
    return _virtual_differences(config, want["virtuals"]) or _global_differences(
        config, want["globals"]
    )


@pytest.mark.slow
def test_same_results_as_ldirectords_read_config(
    harness: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOSTNAME", "director1")
    rng = random.Random(20261125)
    failures = []
    for _ in range(RUNS):
        text = generate(rng)
        why = difference(text, _oracle(harness, text, tmp_path))
        if why:
            failures.append(f"{text!r}\n  -> {why}")
    assert not failures, "\n".join(failures[:10])
