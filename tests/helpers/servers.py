"""Real Debian servers on loopback for the component tests of the negotiate checks.

Each ``start_<server>(tmp)`` is a context manager that writes the server's own configuration
into ``tmp`` (nothing under /etc is read or written, except the one FTP test user that PAM
needs), starts it on free 127.0.0.1 ports in its own session, waits for readiness with a
bounded loop, yields a :class:`Running` record, and at exit stops it and kills its whole
process group. Test modules wrap them in module-scoped fixtures (see :func:`module_server`), each in
its own 0755 temp dir under /tmp (see :func:`server_base`).

The recipes follow ../shared/docs/test-servers.md (verified on this kind of machine).
Nothing here installs packages: a missing binary fails the test with a message that says to
run ``scripts/install-deps`` (as root), so CI never silently skips a server.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ldirectord.checks.base import CheckTarget, Outcome
from tests.helpers.hostile import TcpPeer

LOOPBACK = "127.0.0.1"
USER = "ldcheck"
PASSWORD = "secret"
RADIUS_SECRET = "testing123"
LDAP_SUFFIX = "dc=ldtest,dc=example"
LDAP_USER_DN = f"uid={USER},ou=people,{LDAP_SUFFIX}"
#: The local FTP test user: one per test process, so concurrent runs never share (or delete)
#: each other's user; leftovers of dead processes are removed by the next start_vsftpd.
FTP_USER = f"ldftp{os.getpid()}"
FTP_FILE_TEXT = "ldirectord ftp check: alive\n"
DNS_NAME = "www.ldtest.example"
DNS_ADDRESS = "192.0.2.10"


@dataclass
class Running:
    """A started server: its ports by role, its directory, its main process and log."""

    name: str
    ports: dict[str, int]
    root: Path
    proc: subprocess.Popen[bytes]
    log: Path
    extra: dict[str, str] = field(default_factory=dict)

    def port(self, role: str) -> int:
        return self.ports[role]

    def log_tail(self, n: int = 40) -> str:
        return log_tail(self.log, n)


# --------------------------------------------------------------------------- generic helpers


def need(path: str) -> str:
    """Return ``path`` if the binary exists, else fail (never skip) naming the fix."""
    found = shutil.which(path) if "/" not in path else (path if os.path.exists(path) else None)
    if not found:
        pytest.fail(
            f"{path} is missing: run scripts/install-deps (as root) to install the test servers",
            pytrace=False,
        )
    return found


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("the real-server fixtures run as root (as .ci/run does)", pytrace=False)


def log_tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


#: Servers get ports from here: below Linux's ephemeral range (32768-60999), where every
#: outgoing connection of every test session on this machine takes its local port.
PORT_RANGE = (20000, 32000)


def free_port(*, udp: bool = False) -> int:
    """A TCP port on 127.0.0.1 that is free now (and free for UDP too when ``udp``).

    Another process may still take it before the server binds it: ``module_server`` retries
    a start that failed with "address in use".
    """
    for _ in range(200):
        port = random.randrange(*PORT_RANGE)
        if not _tcp_free(port):
            continue
        if udp:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind((LOOPBACK, port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free port found in 200 tries")


def ipv6_loopback() -> bool:
    """Whether ::1 exists here (servers then listen on it too, for the IPv6 cases)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def _port_free_v6(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET6, kind) as s:
            try:
                s.bind(("::1", port))
            except OSError:
                return False
    return True


def free_port_both(*, udp: bool = False) -> int:
    """Like free_port, and also free on ::1 (when ::1 exists)."""
    for _ in range(100):
        port = free_port(udp=udp)
        if not ipv6_loopback() or _port_free_v6(port):
            return port
    raise RuntimeError("no port free on both 127.0.0.1 and ::1 in 100 tries")


def free_block(size: int) -> int:
    """The first port of ``size`` consecutive free TCP ports (FTP passive range)."""
    for _ in range(100):
        first = free_port()
        if first + size > 65535:
            continue
        if all(_tcp_free(first + i) for i in range(1, size)):
            return first
    raise RuntimeError("no free port block found in 100 tries")


def _tcp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def make_root(base: Path, name: str) -> Path:
    """A fresh 0755 directory (daemons that drop privileges must be able to enter it)."""
    root = base / name
    root.mkdir(parents=True, exist_ok=False)
    root.chmod(0o755)
    return root


@contextlib.contextmanager
def server_base(name: str) -> Iterator[Path]:
    """A 0755 temp dir directly under /tmp for one server's files, removed afterwards.

    Not under pytest's tmp_path: pytest resets /tmp/pytest-of-<user> to 0700 whenever any
    pytest run starts (other sessions share this machine), and daemons that drop privileges
    (postfix, postgres, dovecot, news) then lose access to their own files mid-run.
    """
    base = Path(tempfile.mkdtemp(prefix=f"ldtest-{name}-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run(argv: list[str], *, timeout: float = 60, **kwargs: object) -> str:
    """Run a setup command; fail the test with its output when it fails or overruns."""
    try:
        if "input" not in kwargs:
            kwargs["stdin"] = subprocess.DEVNULL
        done = subprocess.run(  # noqa: PLW1510
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            **kwargs,  # type: ignore[call-overload]
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{argv[0]} did not finish within {timeout} s", pytrace=False)
    out: str = done.stdout.decode(errors="replace")
    if done.returncode != 0:
        pytest.fail(f"{' '.join(argv)} failed ({done.returncode}):\n{out}", pytrace=False)
    return out


def spawn(
    argv: list[str],
    *,
    log: Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    user: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start a server in its own session (so the whole group can be killed) logging to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            user=user,
            group=user,
            start_new_session=True,
        )


def wait_ready(
    proc: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    *,
    what: str,
    log: Path,
    timeout: float = 30.0,
) -> None:
    """Poll ``ready`` (bounded) until it says yes; fail early if the server died."""
    limit = time.monotonic() + timeout
    while time.monotonic() < limit:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited ({proc.returncode}) before ready:\n{log_tail(log)}")
        with contextlib.suppress(OSError):
            if ready():
                return
        time.sleep(0.05)
    pytest.fail(f"{what} not ready within {timeout} s:\n{log_tail(log)}")


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
    """Signal the server's process group, then SIGKILL the group if it outlives ``grace``."""
    for signum, wait in ((sig, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signum)
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            continue
        # the leader is gone; make sure no child of the group is left behind
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        return


def tcp_accepts(port: int) -> bool:
    with socket.create_connection((LOOPBACK, port), timeout=0.5):
        return True


def banner(port: int, timeout: float = 1.0, *, tls: bool = False) -> bytes:
    """The first line the server sends on connect, or b'' (no error) if none came."""
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        conn: socket.socket = sock
        if tls:
            import ssl

            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            conn = ctx.wrap_socket(sock)
        data = b""
        with contextlib.suppress(TimeoutError):
            while b"\n" not in data and len(data) < 4096:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
        return data


def mkcert(root: Path) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for localhost / 127.0.0.1 (about 20 ms)."""
    cert, key = root / "cert.pem", root / "key.pem"
    run(
        [
            need("openssl"),
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ]
    )
    key.chmod(0o644)  # read by daemons that dropped privileges; a throwaway test key
    return cert, key


@contextlib.contextmanager
def _running(
    name: str, proc: subprocess.Popen[bytes], stopper: Callable[[], None] | None = None
) -> Iterator[None]:
    try:
        yield
    finally:
        if stopper is not None:
            with contextlib.suppress(Exception):
                stopper()
        stop(proc)


# --------------------------------------------------------------------------- postfix (smtp)


@contextlib.contextmanager
def start_postfix(base: Path) -> Iterator[Running]:
    need_root()
    postfix = need("/usr/sbin/postfix")
    root = make_root(base, "postfix")
    port = free_port()
    etc, queue, data, mail = root / "etc", root / "queue", root / "data", root / "mail"
    for d in (etc, queue, data, mail):
        d.mkdir()
    shutil.chown(data, "postfix", "postfix")
    mail.chmod(0o1777)
    (etc / "main.cf").write_text(
        "compatibility_level = 3.6\n"
        f"queue_directory = {queue}\n"
        f"data_directory = {data}\n"
        "myhostname = ldtest.localdomain\n"
        "mydestination = $myhostname, localhost\n"
        "inet_interfaces = loopback-only\n"
        "inet_protocols = ipv4\n"
        "mynetworks = 127.0.0.0/8\n"
        "smtpd_banner = $myhostname ESMTP ldtest\n"
        "maillog_file = /dev/stdout\n"
        "alias_maps =\n"
        "alias_database =\n"
        "local_recipient_maps =\n"
        f"mail_spool_directory = {mail}\n"
        "smtpd_tls_security_level = none\n"
        "smtp_tls_security_level = none\n"
    )
    services = [
        f"{LOOPBACK}:{port} inet n - n - - smtpd",
        "pickup unix n - n 60 1 pickup",
        "cleanup unix n - n - 0 cleanup",
        "qmgr unix n - n 300 1 qmgr",
        "rewrite unix - - n - - trivial-rewrite",
        "bounce unix - - n - 0 bounce",
        "defer unix - - n - 0 bounce",
        "trace unix - - n - 0 bounce",
        "verify unix - - n - 1 verify",
        "flush unix n - n 1000? 0 flush",
        "proxymap unix - - n - - proxymap",
        "showq unix n - n - - showq",
        "error unix - - n - - error",
        "retry unix - - n - - error",
        "discard unix - - n - - discard",
        "local unix - n n - - local",
        "smtp unix - - n - - smtp",
        "anvil unix - - n - 1 anvil",
        "scache unix - - n - 1 scache",
        "postlog unix-dgram n - n - 1 postlogd",
    ]
    (etc / "master.cf").write_text("\n".join(services) + "\n")
    log = root / "postfix.log"
    proc = spawn([postfix, "-c", str(etc), "start-fg"], log=log, cwd=root)

    def stopper() -> None:
        subprocess.run(
            [postfix, "-c", str(etc), "stop"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )

    with _running("postfix", proc, stopper):
        wait_ready(proc, lambda: banner(port).startswith(b"220 "), what="postfix", log=log)
        yield Running("postfix", {"smtp": port}, root, proc, log)


# --------------------------------------------------------------------------- dovecot (pop/imap)


@contextlib.contextmanager
def start_dovecot(base: Path) -> Iterator[Running]:
    need_root()
    dovecot = need("/usr/sbin/dovecot")
    root = make_root(base, "dovecot")
    cert, key = mkcert(root)
    ports = {name: free_port() for name in ("pop", "pops", "imap", "imaps")}
    for d in ("run", "state", "mail"):
        (root / d).mkdir()
    shutil.chown(root / "mail", "nobody", "nogroup")
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
    (root / "dovecot.conf").write_text(
        f"""base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
instance_name = dovecot-ldtest-{os.getpid()}-{ports["imap"]}
protocols = imap pop3
listen = {LOOPBACK}
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={root}/mail/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  service_count = 0
  process_min_avail = 1
  inet_listener imap {{
    port = {ports["imap"]}
  }}
  inet_listener imaps {{
    port = {ports["imaps"]}
    ssl = yes
  }}
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service pop3-login {{
  service_count = 0
  process_min_avail = 1
  inet_listener pop3 {{
    port = {ports["pop"]}
  }}
  inet_listener pop3s {{
    port = {ports["pops"]}
    ssl = yes
  }}
}}
"""
    )
    log = root / "dovecot.log"
    log.touch()
    proc = spawn([dovecot, "-F", "-c", str(root / "dovecot.conf")], log=log)

    def ready() -> bool:
        return b" ready." in banner(ports["imap"]) and b" ready." in banner(ports["pop"])

    with _running("dovecot", proc):
        wait_ready(proc, ready, what="dovecot", log=log)
        yield Running("dovecot", ports, root, proc, log)


# --------------------------------------------------------------------------- vsftpd (ftp)


@contextlib.contextmanager
def start_vsftpd(base: Path) -> Iterator[Running]:
    need_root()
    vsftpd = need("/usr/sbin/vsftpd")
    root = make_root(base, "vsftpd")
    port = free_port()
    pasv = free_block(10)
    (root / "empty").mkdir()
    anon = root / "anon"
    anon.mkdir()
    (anon / "check.txt").write_text(FTP_FILE_TEXT)
    home = root / "home"
    home.mkdir()
    (home / "check.txt").write_text("ldirectord ftp user file: user-alive\n")
    conf = root / "vsftpd.conf"
    conf.write_text(
        f"""listen=YES
listen_ipv6=NO
listen_address={LOOPBACK}
listen_port={port}
background=NO
secure_chroot_dir={root}/empty
anonymous_enable=YES
anon_root={anon}
no_anon_password=YES
local_enable=YES
write_enable=NO
chroot_local_user=YES
allow_writeable_chroot=YES
pam_service_name=vsftpd
delay_failed_login=0
pasv_enable=YES
pasv_address={LOOPBACK}
pasv_min_port={pasv}
pasv_max_port={pasv + 9}
xferlog_enable=YES
vsftpd_log_file={root}/vsftpd.log
log_ftp_protocol=YES
"""
    )
    # The one recipe that touches /etc: PAM needs a passwd/shadow entry for a local user. The
    # name is this process's alone; leftovers of killed runs are removed first.
    _remove_stale_ftp_users()
    if subprocess.run(["id", FTP_USER], capture_output=True, check=False).returncode != 0:
        run([need("useradd"), "-M", "-d", str(home), "-s", "/bin/bash", FTP_USER])
    else:
        run([need("usermod"), "-d", str(home), FTP_USER])

    def remove_user() -> None:
        subprocess.run(["userdel", FTP_USER], capture_output=True, timeout=10, check=False)

    try:
        run([need("chpasswd")], input=f"{FTP_USER}:{PASSWORD}\n".encode())
        log = root / "stdout.log"
        proc = spawn([vsftpd, str(conf)], log=log)
    except BaseException:
        remove_user()
        raise
    with _running("vsftpd", proc, remove_user):
        wait_ready(proc, lambda: banner(port).startswith(b"220"), what="vsftpd", log=log)
        yield Running("vsftpd", {"ftp": port}, root, proc, log, {"user": FTP_USER})


def _remove_stale_ftp_users() -> None:
    import pwd

    for entry in pwd.getpwall():
        pid = entry.pw_name.removeprefix("ldftp")
        if (
            entry.pw_name.startswith("ldftp")
            and pid.isdigit()
            and not Path(f"/proc/{pid}").exists()
        ):
            subprocess.run(["userdel", entry.pw_name], capture_output=True, timeout=10, check=False)


# --------------------------------------------------------------------------- INN (nntp)

_INN_PATHS = {
    "pathdb": "db",
    "pathspool": "spool",
    "patharticles": "spool/articles",
    "pathoverview": "spool/overview",
    "pathincoming": "spool/incoming",
    "pathtmp": "spool/incoming/tmp",
    "pathoutgoing": "spool/outgoing",
    "patharchive": "spool/archive",
    "pathlog": "log",
    "pathrun": "run",
    "pathhttp": "http",
    "pathetc": "etc",
    "pathfilter": "etc/filter",
}


@contextlib.contextmanager
def start_inn(base: Path) -> Iterator[Running]:
    need_root()
    bindir = Path("/usr/lib/news/bin")
    innd = need(str(bindir / "innd"))
    makedbz, ctlinnd = need(str(bindir / "makedbz")), need(str(bindir / "ctlinnd"))
    if not Path("/etc/news/inn.conf").exists():
        pytest.fail("/etc/news/inn.conf missing: run scripts/install-deps", pytrace=False)
    root = make_root(base, "inn")
    port = free_port()
    shutil.copytree("/etc/news", root / "etc")
    for rel in _INN_PATHS.values():
        (root / rel).mkdir(parents=True, exist_ok=True)
    settings = {key: str(root / rel) for key, rel in _INN_PATHS.items()}
    settings |= {
        "domain": "localdomain",
        "pathhost": "ldtest.localdomain",
        "port": str(port),
        "bindaddress": LOOPBACK,
        "bindaddress6": "none",
        "doinnwatch": "false",
    }
    lines = []
    for line in (root / "etc" / "inn.conf").read_text().splitlines():
        key = line.split(":", 1)[0].lstrip("#").strip()
        if key in settings:
            continue
        lines.append(line)
    lines += [f"{key}: {value}" for key, value in settings.items()]
    inn_conf = root / "etc" / "inn.conf"
    inn_conf.write_text("\n".join(lines) + "\n")
    db = root / "db"
    (db / "active").write_text(
        "control 0000000000 0000000001 n\n"
        "control.cancel 0000000000 0000000001 n\n"
        "junk 0000000000 0000000001 n\n"
        "local.test 0000000000 0000000001 y\n"
    )
    (db / "active.times").write_text("")
    (db / "history").write_text("")
    (db / "newsgroups").write_text("local.test\tldirectord test group\n")
    for path in [root, *root.rglob("*")]:
        if path != root:
            shutil.chown(path, "news", "news")
    env = {"INNCONF": str(inn_conf), "PATH": "/usr/bin:/bin", "HOME": str(root)}
    run([makedbz, "-i", "-o"], cwd=db, env=env, user="news", group="news")
    log = root / "innd.log"
    proc = spawn([innd, "-f"], log=log, cwd=root, env=env, user="news")

    def stopper() -> None:
        subprocess.run(
            [ctlinnd, "-s", "-t", "5", "shutdown", "cleanup"],
            env=env,
            user="news",
            group="news",
            capture_output=True,
            timeout=10,
            check=False,
        )

    with _running("inn", proc, stopper):
        wait_ready(proc, lambda: banner(port).startswith(b"200"), what="innd", log=log)
        yield Running("inn", {"nntp": port}, root, proc, log)


# --------------------------------------------------------------------------- slapd (ldap/ldaps)


@contextlib.contextmanager
def start_slapd(base: Path) -> Iterator[Running]:
    need_root()
    slapd, slapadd = need("/usr/sbin/slapd"), need("/usr/sbin/slapadd")
    root = make_root(base, "slapd")
    cert, key = mkcert(root)
    ports = {"ldap": free_port_both(), "ldaps": free_port_both()}
    (root / "db").mkdir()
    conf = root / "slapd.conf"
    conf.write_text(
        f"""include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {root}/slapd.pid
argsfile {root}/slapd.args
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}
database mdb
maxsize 10485760
suffix "{LDAP_SUFFIX}"
rootdn "cn=admin,{LDAP_SUFFIX}"
rootpw adminsecret
directory {root}/db
access to attrs=userPassword by anonymous auth by self read by * none
access to * by * read
"""
    )
    (root / "base.ldif").write_text(
        f"""dn: {LDAP_SUFFIX}
objectClass: dcObject
objectClass: organization
dc: ldtest
o: ldtest

dn: ou=people,{LDAP_SUFFIX}
objectClass: organizationalUnit
ou: people

dn: {LDAP_USER_DN}
objectClass: inetOrgPerson
uid: {USER}
cn: ld check
sn: check
userPassword: {PASSWORD}
"""
    )
    run([slapadd, "-q", "-f", str(conf), "-l", str(root / "base.ldif")])
    urls = f"ldap://{LOOPBACK}:{ports['ldap']}/ ldaps://{LOOPBACK}:{ports['ldaps']}/"
    if ipv6_loopback():
        urls += f" ldap://[::1]:{ports['ldap']}/ ldaps://[::1]:{ports['ldaps']}/"
    log = root / "slapd.log"
    proc = spawn([slapd, "-d", "0", "-f", str(conf), "-h", urls], log=log)
    with _running("slapd", proc):
        wait_ready(
            proc,
            lambda: tcp_accepts(ports["ldap"]) and tcp_accepts(ports["ldaps"]),
            what="slapd",
            log=log,
        )
        yield Running("slapd", ports, root, proc, log)


# --------------------------------------------------------------------------- dnsmasq (dns)


def _dns_answers(port: int) -> bool:
    import dns.message
    import dns.query

    query = dns.message.make_query(DNS_NAME, "A")
    reply = dns.query.udp(query, LOOPBACK, port=port, timeout=0.5)
    return bool(reply.answer)


@contextlib.contextmanager
def start_dnsmasq(base: Path) -> Iterator[Running]:
    dnsmasq = need("/usr/sbin/dnsmasq")
    root = make_root(base, "dnsmasq")
    port = free_port_both(udp=True)
    (root / "hosts").write_text("192.0.2.20 other.ldtest.example\n")
    argv = [
        dnsmasq,
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        f"--listen-address={LOOPBACK},::1" if ipv6_loopback() else f"--listen-address={LOOPBACK}",
        "--bind-interfaces",
        f"--port={port}",
        f"--pid-file={root}/dnsmasq.pid",
        f"--log-facility={root}/dnsmasq.log",
        "--log-queries",
        f"--host-record={DNS_NAME},{DNS_ADDRESS}",
        f"--addn-hosts={root}/hosts",
    ]
    if os.geteuid() == 0:
        argv.append("--user=root")
    log = root / "stdout.log"
    proc = spawn(argv, log=log)
    with _running("dnsmasq", proc):
        wait_ready(proc, lambda: _dns_answers(port), what="dnsmasq", log=log)
        yield Running("dnsmasq", {"dns": port}, root, proc, root / "dnsmasq.log")


# --------------------------------------------------------------------------- FreeRADIUS


@contextlib.contextmanager
def start_freeradius(base: Path) -> Iterator[Running]:
    need_root()
    radiusd = need("/usr/sbin/freeradius")
    root = make_root(base, "freeradius")
    port = free_port_both(udp=True)
    listen6 = (
        f"  listen {{\n    type = auth\n    ipv6addr = ::1\n    port = {port}\n  }}\n"
        if ipv6_loopback()
        else ""
    )
    (root / "dictionary").write_text("# local dictionary (empty)\n")
    (root / "users").write_text(
        f'{USER} Cleartext-Password := "{PASSWORD}"\n\tReply-Message := "hello {USER}"\n'
    )
    (root / "radiusd.conf").write_text(
        f"""prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
logdir = {root}
raddbdir = {root}
radacctdir = {root}
name = freeradius
confdir = {root}
modconfdir = {root}
run_dir = {root}
db_dir = {root}
libdir = /usr/lib/freeradius
pidfile = {root}/radiusd.pid
max_request_time = 5
cleanup_delay = 1
max_requests = 1024
hostname_lookups = no
log {{
  destination = stdout
  colourise = no
  stripped_names = no
  auth = yes
}}
security {{
  allow_core_dumps = no
  max_attributes = 200
  reject_delay = 0
  status_server = no
}}
thread pool {{
  start_servers = 2
  max_servers = 4
  min_spare_servers = 1
  max_spare_servers = 3
  max_requests_per_server = 0
}}
client localhost {{
  ipaddr = {LOOPBACK}
  secret = {RADIUS_SECRET}
  require_message_authenticator = no
}}
client localhost6 {{
  ipv6addr = ::1
  secret = {RADIUS_SECRET}
  require_message_authenticator = no
}}
modules {{
  files {{
    filename = {root}/users
  }}
  pap {{
  }}
}}
server default {{
  listen {{
    type = auth
    ipaddr = {LOOPBACK}
    port = {port}
  }}
{listen6}  authorize {{
    files
    pap
  }}
  authenticate {{
    Auth-Type PAP {{
      pap
    }}
  }}
}}
"""
    )
    run([radiusd, "-C", "-d", str(root)])
    log = root / "radiusd.log"
    proc = spawn([radiusd, "-f", "-l", "stdout", "-d", str(root)], log=log)
    with _running("freeradius", proc):
        wait_ready(
            proc,
            lambda: "Ready to process requests" in log.read_text(errors="replace"),
            what="freeradius",
            log=log,
        )
        yield Running("freeradius", {"radius": port}, root, proc, log)


# --------------------------------------------------------------------------- Kamailio (sip)


def _sip_options_ok(port: int) -> bool:
    """A bare OPTIONS over UDP, as sipsak sends it (no import of our own code here)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        s.connect((LOOPBACK, port))
        host, lport = s.getsockname()
        msg = (
            f"OPTIONS sip:{USER}@{LOOPBACK}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {host}:{lport};branch=z9hG4bKready{lport}\r\n"
            "Max-Forwards: 70\r\n"
            f"To: <sip:{USER}@{LOOPBACK}>\r\n"
            f"From: <sip:{USER}@{LOOPBACK}>;tag=ready\r\n"
            f"Call-ID: ready-{lport}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        s.send(msg.encode())
        try:
            return s.recv(4096).startswith(b"SIP/2.0 200")
        except TimeoutError:
            return False


@contextlib.contextmanager
def start_kamailio(base: Path) -> Iterator[Running]:
    need_root()
    kamailio = need("/usr/sbin/kamailio")
    mpaths = sorted(Path("/usr/lib").glob("*/kamailio/modules"))
    if not mpaths:
        pytest.fail("kamailio modules missing: run scripts/install-deps", pytrace=False)
    root = make_root(base, "kamailio")
    port = free_port_both(udp=True)
    listen6 = f"listen=udp:[::1]:{port}\nlisten=tcp:[::1]:{port}\n" if ipv6_loopback() else ""
    cfg = root / "kamailio.cfg"
    cfg.write_text(
        f"""#!KAMAILIO
log_stderror=yes
children=2
tcp_children=1
auto_aliases=no
listen=udp:{LOOPBACK}:{port}
listen=tcp:{LOOPBACK}:{port}
{listen6}mpath="{mpaths[0]}/"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "xlog.so"
request_route {{
  if (method == "OPTIONS") {{
    if ($rU == "busy") {{
      sl_send_reply("486", "Busy Here");
      exit;
    }}
    sl_send_reply("200", "OK");
    exit;
  }}
  if (method == "ACK") {{
    exit;
  }}
  sl_send_reply("404", "Not Found");
}}
"""
    )
    run([kamailio, "-c", "-f", str(cfg)])
    log = root / "kamailio.log"
    argv = [kamailio, "-DD", "-E", "-f", str(cfg), "-P", f"{root}/kamailio.pid"]
    proc = spawn([*argv, "-Y", str(root), "-m", "32", "-M", "4"], log=log)
    with _running("kamailio", proc):
        wait_ready(proc, lambda: _sip_options_ok(port), what="kamailio", log=log)
        yield Running("kamailio", {"sip": port}, root, proc, log)


# --------------------------------------------------------------------------- MariaDB (mysql)


@contextlib.contextmanager
def start_mariadb(base: Path) -> Iterator[Running]:
    need_root()
    mariadbd = need("/usr/sbin/mariadbd")
    install_db, client = need("mariadb-install-db"), need("mariadb")
    admin = need("mariadb-admin")
    root = make_root(base, "mariadb")
    port = free_port()
    sock = root / "mysqld.sock"
    opts = [
        f"--datadir={root}/data",
        "--innodb-log-file-size=8M",
        "--innodb-buffer-pool-size=32M",
        "--innodb-data-file-path=ibdata1:4M:autoextend",
        "--innodb-autoextend-increment=4",
        "--skip-log-bin",
    ]
    run(
        [
            install_db,
            "--no-defaults",
            "--user=root",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            *opts,
        ],
        timeout=120,
    )
    log = root / "error.log"
    argv = [mariadbd, "--no-defaults", "--user=root", *opts, f"--bind-address={LOOPBACK}"]
    argv += [f"--port={port}", f"--socket={sock}", f"--pid-file={root}/mysqld.pid"]
    argv += [f"--log-error={log}", "--skip-name-resolve"]
    proc = spawn(argv, log=root / "stdout.log")

    def ready() -> bool:
        probe = [admin, "--no-defaults", f"--socket={sock}", "-uroot", "ping"]
        return subprocess.run(probe, capture_output=True, timeout=5, check=False).returncode == 0

    with _running("mariadb", proc):
        wait_ready(proc, ready, what="mariadbd", log=log, timeout=60)
        run(
            [client, "--no-defaults", f"--socket={sock}", "-uroot", "-e", _SQL_SEED_MYSQL],
            timeout=30,
        )
        yield Running("mariadb", {"mysql": port}, root, proc, log)


_SQL_SEED_MYSQL = f"""
CREATE DATABASE ldtest;
CREATE TABLE ldtest.t (id INT PRIMARY KEY, v VARCHAR(20));
INSERT INTO ldtest.t VALUES (1, 'alive');
CREATE TABLE ldtest.empty (id INT PRIMARY KEY);
CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}';
GRANT SELECT ON ldtest.* TO '{USER}'@'%';
"""


# --------------------------------------------------------------------------- PostgreSQL (pgsql)


@contextlib.contextmanager
def start_postgresql(base: Path) -> Iterator[Running]:
    need_root()
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    if not bins:
        pytest.fail("PostgreSQL is missing: run scripts/install-deps (as root)", pytrace=False)
    pgbin = bins[-1]
    root = make_root(base, "postgresql")
    port = free_port()
    data, rundir = root / "data", root / "run"
    for d in (data, rundir):
        d.mkdir()
        shutil.chown(d, "postgres", "postgres")
    as_pg: dict[str, object] = {"user": "postgres", "group": "postgres", "cwd": "/tmp"}
    initdb = [str(pgbin / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8"]
    initdb += ["--locale=C.UTF-8", "--no-sync", "--auth-local=trust"]
    run([*initdb, "--auth-host=scram-sha-256"], timeout=120, **as_pg)
    log = root / "postgres.log"
    argv = [str(pgbin / "postgres"), "-D", str(data), "-p", str(port)]
    argv += ["-c", f"listen_addresses={LOOPBACK}", "-c", f"unix_socket_directories={rundir}"]
    argv += ["-c", "fsync=off", "-c", "full_page_writes=off"]
    proc = spawn(argv, log=log, cwd=Path("/tmp"), user="postgres")
    psql = [str(pgbin / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(rundir)]
    psql += ["-p", str(port), "-U", "postgres"]

    def ready() -> bool:
        probe = [str(pgbin / "pg_isready"), "-q", "-h", LOOPBACK, "-p", str(port)]
        return subprocess.run(probe, capture_output=True, timeout=5, check=False).returncode == 0

    with _running("postgresql", proc, None):
        wait_ready(proc, ready, what="postgres", log=log, timeout=60)
        run([*psql, "-c", f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'"], **as_pg)
        run([*psql, "-c", f"CREATE DATABASE ldtest OWNER {USER}"], **as_pg)
        seed = "CREATE TABLE t (id INT PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'alive');"
        seed += f" CREATE TABLE empty (id INT); GRANT SELECT ON t, empty TO {USER};"
        run([*psql, "-d", "ldtest", "-c", seed], **as_pg)
        yield Running("postgresql", {"pgsql": port}, root, proc, log)
        # fast shutdown (SIGINT) rather than smart shutdown (SIGTERM waits for clients)
        stop(proc, signal.SIGINT)


# --------------------------------------------------------------------------- fixture glue


#: A start that failed because its port was taken meanwhile is retried this many times.
START_ATTEMPTS = 3
_PORT_TAKEN = (
    "in use",
    "eaddrinuse",
    "could not bind",
    "cannot bind",
    "can't bind",
    "cant bind",
    "failed binding",
)


def module_server(
    starter: Callable[[Path], contextlib.AbstractContextManager[Running]],
) -> Callable[..., Iterator[Running]]:
    """Build a module-scoped pytest fixture from a ``start_<server>`` context manager."""
    name = starter.__name__.removeprefix("start_")

    @pytest.fixture(scope="module")
    def fixture() -> Iterator[Running]:
        for attempt in range(1, START_ATTEMPTS + 1):
            with contextlib.ExitStack() as stack:
                base = stack.enter_context(server_base(name))
                try:
                    server = stack.enter_context(starter(base))
                except pytest.fail.Exception as exc:
                    text = str(exc).lower()
                    # a port taken between choice and bind: the log says so, or (vsftpd) the
                    # server just exits; a real config error fails START_ATTEMPTS times
                    taken = "before ready" in text or any(t in text for t in _PORT_TAKEN)
                    if taken and attempt < START_ATTEMPTS:
                        continue
                    raise
                yield server
                return

    return fixture


# --------------------------------------------------------------------------- check targets


def target(
    service: str,
    port: int,
    *,
    host: str = LOOPBACK,
    protocol: str = "tcp",
    request: str = "/",
    receive: str = "",
    timeout: float = 5.0,
    **spec: object,
) -> CheckTarget:
    """A negotiate CheckTarget for ``service`` on ``host:port`` (both timeouts = ``timeout``)."""
    from ldirectord.config.model import CheckSpec, CheckType, Family, Protocol, Service

    check = CheckSpec(
        checktype=CheckType.NEGOTIATE,
        service=Service(service),
        checktimeout=timeout,
        negotiatetimeout=timeout,
        request=request,
        receive=receive,
        **spec,  # type: ignore[arg-type]
    )
    return CheckTarget(
        kind=CheckType.NEGOTIATE,
        service=Service(service),
        family=Family.INET6 if ":" in host else Family.INET,
        protocol=Protocol(protocol),
        host=host,
        port=port,
        spec=check,
        request=request,
        receive=receive,
    )


async def beside(hostile: CheckTarget, healthy: CheckTarget) -> tuple[Outcome, Outcome, bool]:
    """Run a hostile and a healthy check at once: both outcomes, and whether the healthy one
    went its own way: it finished while the hostile one was still running, or the hostile one
    failed fast (not by timing out), so there was nothing to wait for."""
    import asyncio

    from ldirectord.checks import run
    from ldirectord.checks.base import Reason

    bad = asyncio.ensure_future(run(hostile))
    good = asyncio.ensure_future(run(healthy))
    done, _ = await asyncio.wait({bad, good}, return_when=asyncio.FIRST_COMPLETED)
    healthy_first = good in done
    await asyncio.wait({bad, good})
    return bad.result(), good.result(), healthy_first or bad.result().reason is not Reason.TIMEOUT


def scripted(greeting: bytes, replies: list[bytes], *, host: str = LOOPBACK) -> TcpPeer:
    """A TCP peer that sends ``greeting``, then one reply per line it receives, then holds.

    For protocol-accurate misbehaviour (a 554 greeting, a refused EHLO, an ``-ERR``...) that a
    real server is hard to talk into.
    """
    import asyncio

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if greeting:
            writer.write(greeting)
            await writer.drain()
        for reply in replies:
            if not await reader.readline():
                return
            writer.write(reply)
            await writer.drain()
        while await reader.read(65536):  # then answer nothing until the peer stops
            pass

    return TcpPeer(handler, host=host, name="scripted")
