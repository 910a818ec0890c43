"""Host-side helper: run a guest-side pytest module (tests/kernel/guest/) in one guest boot."""

from __future__ import annotations

from collections.abc import Sequence

from tests.kernel import uml

GUEST_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "LDIRECTORD_IN_GUEST": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
}


def guest_pytest(
    paths: Sequence[str],
    *,
    timeout: float,
    setup: str | None = None,
    prefix: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> uml.GuestResult:
    """Run ``python -m pytest paths`` in one guest: first the ``setup`` shell commands (if
    any), then pytest under ``prefix`` (e.g. ``ip netns exec director``)."""
    argv = [
        *prefix,
        uml.guest_python(),
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-q",
        "--color=no",
        f"--timeout={int(timeout)}",
        *extra,
        *paths,
    ]
    if setup is not None:
        argv = ["sh", "-c", f'{setup} && exec "$@"', "sh", *argv]
    return uml.run_in_guest(argv, timeout=timeout + 30, env=GUEST_ENV, cwd=uml.REPO_ROOT)


def report(result: uml.GuestResult) -> str:
    """Everything the guest said, for a failing assertion (pytest shows the captured print)."""
    print(result.stdout)
    print(result.stderr)
    print(result.console)
    tail = "\n".join(result.stdout.strip().splitlines()[-30:])
    return f"guest pytest exited {result.returncode} after {result.duration:.1f} s:\n{tail}"
