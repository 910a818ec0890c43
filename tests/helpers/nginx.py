"""A real nginx on loopback for the http/https/http_proxy checks (tests and benchmarks).

``start_nginx(tmp)`` writes its own config, pages and a self-signed certificate (openssl, at
start) into ``tmp`` (chmod 755: workers run as nobody), starts ``/usr/sbin/nginx`` in its own
session on free 127.0.0.1 ports (and [::1] when available), waits until it accepts (bounded),
yields an :class:`Nginx`, and at exit stops it and kills its process group. Recipe:
../shared/docs/test-servers.md (nginx part). Nothing is installed here: a missing binary fails.

Served on ``http_port`` (and ``https_port`` with TLS; same locations):

* ``/`` and ``/index.html``: ``PAGE`` (200); Host ``vhost.example`` gets ``VHOST_PAGE``
* ``/redirect``: 302 to ``/index.html``; ``/redirect-abs``: 301 to the absolute http URL;
  ``/to-https``: 302 to ``https://localhost:<https_port>/index.html`` (a name, not an IP);
  ``/loop``: 302 to itself (endless)
* ``/error``: 500; ``/missing``: 404; ``/chunked``: 200 with a chunked body (echo module)
* ``/big``: 200 with a 2 MiB body that ends in ``END-OF-BIG`` (beyond the check's limit)

``proxy_port``: a forward proxy (``proxy_pass http://$http_host$uri$is_args$args``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

NGINX = "/usr/sbin/nginx"
ECHO_MODULE = "/usr/lib/nginx/modules/ngx_http_echo_module.so"
PAGE = "ldirectord test page: all is well\n"
VHOST_PAGE = "virtual host vhost.example answers\n"
CHUNKED_TEXT = "chunked reply from nginx"
START_TIMEOUT = 10.0


@dataclass(frozen=True)
class Nginx:
    root: Path
    http_port: int
    https_port: int
    proxy_port: int
    ipv6: bool
    pid: int

    def url(self, path: str = "/", *, tls: bool = False) -> str:
        port = self.https_port if tls else self.http_port
        return f"{'https' if tls else 'http'}://127.0.0.1:{port}{path}"


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 and ::1 right now."""
    ports: list[int] = []
    holders: list[socket.socket] = []
    try:
        while len(ports) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            holders.append(sock)
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            if _v6_free(port):
                ports.append(port)
    finally:
        for sock in holders:
            sock.close()
    return ports


def _v6_free(port: int) -> bool:
    if not has_ipv6_loopback():
        return True
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("::1", port))
        except OSError:
            return False
    return True


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def make_cert(directory: Path) -> None:
    """Self-signed P-256 cert for CN=localhost (as test-servers.md's mkcert)."""
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem"),
        ],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip


def _config(t: Path, http: int, https: int, proxy: int, ipv6: bool) -> str:
    def listen(port: int, extra: str = "") -> str:
        lines = f"listen 127.0.0.1:{port}{extra};"
        return lines + (f" listen [::1]:{port}{extra};" if ipv6 else "")

    common = f"""
        root {t}/www;
        location = /redirect {{ return 302 /index.html; }}
        location = /redirect-abs {{ return 301 http://127.0.0.1:{http}/index.html; }}
        location = /loop {{ return 302 /loop; }}
        location = /to-https {{ return 302 https://localhost:{https}/index.html; }}
        location = /error {{ return 500 "broken\\n"; }}
        location = /chunked {{ default_type text/plain; echo "{CHUNKED_TEXT}"; }}
    """
    return f"""
load_module {ECHO_MODULE};
user root root; daemon off; worker_processes 1; pid {t}/nginx.pid; error_log {t}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {t}/tmp/body; proxy_temp_path {t}/tmp/proxy;
  fastcgi_temp_path {t}/tmp/fcgi; uwsgi_temp_path {t}/tmp/uwsgi; scgi_temp_path {t}/tmp/scgi;
  server {{ {listen(http, " default_server")} server_name _; {common} }}
  server {{ {listen(http)} server_name vhost.example; root {t}/vhost; }}
  server {{ {listen(https, " ssl default_server")} server_name _;
    ssl_certificate {t}/cert.pem; ssl_certificate_key {t}/key.pem; {common} }}
  server {{ {listen(https, " ssl")} server_name vhost.example; root {t}/vhost;
    ssl_certificate {t}/cert.pem; ssl_certificate_key {t}/key.pem; }}
  server {{ {listen(proxy)} location / {{ proxy_pass http://$http_host$uri$is_args$args; }} }}
}}
"""


def _prepare(t: Path) -> None:
    t.chmod(0o755)
    for sub in ("www", "vhost", "tmp"):
        (t / sub).mkdir(exist_ok=True)
        (t / sub).chmod(0o755)
    (t / "www" / "index.html").write_text(PAGE)
    (t / "vhost" / "index.html").write_text(VHOST_PAGE)
    (t / "www" / "big").write_bytes(b"x" * (2 << 20) + b"END-OF-BIG\n")
    make_cert(t)


def _wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited {proc.returncode}: {_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.02)
    raise RuntimeError(f"nginx not ready within {START_TIMEOUT} s: {_tail(log)}")


def _tail(log: Path) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").splitlines()[-10:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def start_nginx(tmp: Path) -> Iterator[Nginx]:
    if not os.path.exists(NGINX) or shutil.which("openssl") is None:
        raise RuntimeError(f"{NGINX} or openssl missing: run scripts/install-deps")
    _prepare(tmp)
    ipv6 = has_ipv6_loopback()
    http, https, proxy = free_ports(3)
    (tmp / "nginx.conf").write_text(_config(tmp, http, https, proxy, ipv6))
    log = tmp / "error.log"
    proc = subprocess.Popen(
        [NGINX, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(log)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        _wait_ready(proc, http, log)
        yield Nginx(tmp, http, https, proxy, ipv6, proc.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
