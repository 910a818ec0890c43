"""Helpers for the config tests (a fake Environment), and the real Environment's own tests."""

from __future__ import annotations

import socket
import time

import pytest

from ldirectord.config import parse_text
from ldirectord.config import resolve as resolve_mod
from ldirectord.config.model import Config, Family
from ldirectord.config.resolve import SystemEnvironment, numeric_host, service_port, unwritable
from ldirectord.errors import ConfigError, ConfigProblem


class FakeEnv:
    """Names from a dict, ports from /etc/services, files from sets; no IO."""

    def __init__(
        self,
        hosts: dict[str, str] | None = None,
        unwritable: dict[str, str] | None = None,
        dirs: set[str] | None = None,
        hostname: str = "director1",
    ) -> None:
        self.hosts = hosts or {}
        self.bad = unwritable or {}
        self.dirs = dirs or set()
        self.hostname = hostname
        self.asked: list[str] = []

    def host(self, name: str, family: Family) -> str | None:
        numeric = numeric_host(name, family)
        if numeric is not None:
            return numeric
        self.asked.append(name)
        address = self.hosts.get(name)
        if address is None or (":" in address) != (family is Family.INET6):
            return None
        return address

    def host_failure(self, name: str, family: Family) -> str:
        return "no such host"

    def port(self, name: str, protocol: str) -> int | None:
        return service_port(name, protocol if protocol in ("tcp", "udp", "") else "fwm")

    def unwritable(self, path: str) -> str | None:
        return self.bad.get(path)

    def is_dir(self, path: str) -> bool:
        return path in self.dirs


def lines(*text: str) -> str:
    return "\n".join(text) + "\n"


def cfg(*text: str, env: FakeEnv | None = None) -> Config:
    return parse_text(lines(*text), "t.cf", env=env or FakeEnv())


def problems(*text: str, env: FakeEnv | None = None) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as caught:
        cfg(*text, env=env)
    return list(caught.value.problems)


def messages(*text: str, env: FakeEnv | None = None) -> list[str]:
    return [p.message for p in problems(*text, env=env)]


# --- the real Environment -------------------------------------------------------------


def test_numeric_hosts_never_touch_the_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = socket.getaddrinfo

    def spy(*args: object, **kwargs: object) -> object:
        calls.append(int(args[5]) if len(args) > 5 else 0)  # type: ignore[call-overload]
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", spy)
    numeric_host.cache_clear()
    env = SystemEnvironment()
    assert env.host("192.0.2.7", Family.INET) == "192.0.2.7"
    assert env.host("2001:db8::1", Family.INET6) == "2001:db8::1"
    assert env.host("010.0.0.1", Family.INET) == "8.0.0.1"  # inet_aton's octal, as Perl
    assert not env.pending
    assert all(flags & socket.AI_NUMERICHOST for flags in calls)


def test_ipv4_literal_is_not_an_ipv6_address() -> None:
    env = SystemEnvironment()
    assert env.host("192.0.2.7", Family.INET6) is None
    assert ("192.0.2.7", Family.INET6) in env.pending  # it would be looked up as a name


def test_service_port() -> None:
    assert service_port("80", "tcp") == 80
    assert service_port("65536", "tcp") is None
    assert service_port("www", "tcp") == 80
    assert service_port("domain", "udp") == 53
    assert service_port("mysql", "") == 3306
    assert service_port("no-such-service", "tcp") is None
    assert service_port("http", "fwm") is None


def test_localhost_resolves_through_the_system() -> None:
    config = parse_text(lines("virtual=localhost:80", "    real=localhost:80 gate"), "t.cf")
    assert config.virtuals[0].address == "127.0.0.1"
    assert config.virtuals[0].reals[0].address == "127.0.0.1"


def test_a_lookup_that_hangs_is_abandoned_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(name: str, family: Family, flags: int) -> str | None:
        if flags:
            return None  # not numeric
        time.sleep(30)
        return "192.0.2.1"

    monkeypatch.setattr(resolve_mod, "_first_address", slow)
    numeric_host.cache_clear()
    start = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        parse_text(
            lines("virtual=hangs.example:80", "    real=alsohangs.example:80 gate"),
            "t.cf",
            resolve_deadline=0.3,
        )
    assert time.monotonic() - start < 0.3 + 2.0
    text = str(caught.value)
    assert "timed out after 0.3 s" in text
    assert "t.cf:1:1: invalid address for virtual service" in text
    assert "alsohangs.example" in text
    numeric_host.cache_clear()


def test_a_name_that_does_not_resolve_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resolve_mod, "_first_address", lambda name, family, flags: None)
    numeric_host.cache_clear()
    with pytest.raises(ConfigError) as caught:
        parse_text(lines("virtual=1.2.3.4:80", "    real=nosuchhost.invalid gate"), "t.cf")
    assert (
        "t.cf:2:10: invalid address (nosuchhost.invalid) for real server "
        "(could not resolve host: no IPv4 address found)"
    ) in str(caught.value)
    numeric_host.cache_clear()


def test_unwritable(tmp_path: pytest.TempPathFactory) -> None:
    base = str(tmp_path)
    assert unwritable(f"{base}/new.log") is None
    assert unwritable(f"{base}/missing/dir/x.log") == "No such file or directory"
    assert unwritable(base) == "Is a directory"
    assert unwritable("") is not None
    assert not list(tmp_path.iterdir())  # type: ignore[attr-defined]  # nothing was created
