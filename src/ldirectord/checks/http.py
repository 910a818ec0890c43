"""The http, https and http_proxy negotiate checks (ldirectord's check_http, reference §2.2).

Owns: building the URL as ldirectord does (``schema://RIP:checkport/request``; http_proxy sends
the request itself, an absolute URL, through the real server as a proxy), the request bytes
(Host = virtualhost or RIP, as LWP sends it), a small HTTP/1.x response reader (status line,
headers, Content-Length / chunked / read-to-close bodies, all bounded), following redirects as
LWP does (GET/HEAD, at most 7, Host re-derived from the new URL), and the verdict: a 2xx status
and, when ``receive`` is set, a match of the receive regex in the body.

Why our own client: a fresh connection per check is the whole workload, and the libraries cost
too much for it (performance.md §2/§3: httpx reached ~1/9 and aiohttp ~1/2 of the checks/s of
raw asyncio streams on this kind of machine). The parsing is plain functions over bytes; the
IO is the few awaits in ``_exchange``.

Deliberate differences from Perl ldirectord (docs/checks.md): a timeout marks the real down
(ldirectord kept its previous state); TLS never verifies chain or name; a reply that is not
HTTP at all is down (LWP would take it as an HTTP/0.9 "200" body); the body is matched within
its first BODY_LIMIT bytes.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit

from ldirectord import __version__
from ldirectord.checks import _net
from ldirectord.checks._net import compile_receive
from ldirectord.checks.base import CheckFailed, CheckTarget, Outcome, Reason, set_phase
from ldirectord.config.model import HttpMethod, Service

#: The part of a body the receive regex is matched against (LWP reads it all; we stop here).
BODY_LIMIT = 1 << 20
#: Status line plus headers.
HEAD_LIMIT = 64 * 1024
#: LWP::UserAgent's default max_redirect.
MAX_REDIRECTS = 7
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = f"ldirectord-python/{__version__} (libwww-perl compatible health check)"

_STATUS_RE = re.compile(rb"HTTP/(\d+)\.(\d+)[ \t]+(\d{3})(?:[ \t]+([^\r\n]*))?")
_URL_SAFE = "/:@!$&'()*+,;=?%~-._[]"


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    reason: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes

    @property
    def status_line(self) -> str:
        return f"{self.status} {self.reason}".rstrip()


# --- pure: URLs, requests, response parsing ------------------------------------------------


def check_url(target: CheckTarget) -> str:
    """The URL ldirectord's ld_setup builds for this real (``$$r{url}``)."""
    schema = "http" if target.service is Service.HTTP_PROXY else target.service.value
    uri = target.request[1:] if target.request.startswith("/") else target.request
    from_real = target.request != target.spec.request  # a per-real request=/receive= pair
    if from_real and f"{schema}://" in target.request:
        return uri
    if not from_real and target.service is Service.HTTP_PROXY:
        return uri
    return f"{schema}://{target.host_for_url}:{target.port}/{uri}"


def build_request(method: str, url: str, host_header: str, *, via_proxy: bool) -> bytes:
    """The request bytes: absolute-form through a proxy, origin-form otherwise."""
    parts = urlsplit(url)
    if via_proxy:
        target = quote(url, safe=_URL_SAFE)
    else:
        target = quote(parts.path or "/", safe=_URL_SAFE)
        if parts.query:
            target += "?" + quote(parts.query, safe=_URL_SAFE)
    return (
        f"{method} {target} HTTP/1.1\r\n"
        f"Host: {host_header}\r\n"
        f"User-Agent: {USER_AGENT}\r\n"
        "Connection: close\r\n"
        "\r\n"
    ).encode("utf-8", "surrogateescape")


def url_host_header(url: str) -> str:
    """Host header LWP derives from a URL: host, plus :port when it is not the default."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    default = 443 if parts.scheme == "https" else 80
    port = parts.port
    return host if port in (None, default) else f"{host}:{port}"


def url_endpoint(url: str) -> tuple[str, int, bool]:
    """(host, port, tls) to connect to for ``url``; CheckFailed(CONFIG) when unusable."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CheckFailed(Reason.CONFIG, f"not an http(s) URL: {url!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise CheckFailed(Reason.CONFIG, f"bad port in URL {url!r}") from None
    return parts.hostname, port, parts.scheme == "https"


def sni_name(host_header: str) -> str | None:
    """The SNI name for a Host header value, or None for an IP literal (as LWP does)."""
    name = host_header
    if name.startswith("["):
        return None
    name = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name or None
    return None


def parse_head(head: bytes) -> tuple[int, str, dict[str, str]]:
    """Status line and headers (without the blank line); CheckFailed(PROTOCOL) if not HTTP."""
    lines = head.split(b"\n")
    match = _STATUS_RE.match(lines[0].rstrip(b"\r"))
    if match is None:
        raise CheckFailed(Reason.PROTOCOL, f"not an HTTP response: {lines[0][:60]!r}")
    headers: dict[str, str] = {}
    for raw in lines[1:]:
        name, sep, value = raw.partition(b":")
        if not sep:
            continue
        key = name.strip().lower().decode("latin-1")
        text = value.strip().decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    reason = (match.group(4) or b"").strip().decode("latin-1")
    return int(match.group(3)), reason, headers


def content_length(headers: dict[str, str]) -> int | None:
    value = headers.get("content-length")
    if value is None:
        return None
    first = value.split(",")[0].strip()
    if not first.isdigit():
        raise CheckFailed(Reason.PROTOCOL, f"bad Content-Length {value[:40]!r}")
    return int(first)


def is_chunked(headers: dict[str, str]) -> bool:
    return "chunked" in headers.get("transfer-encoding", "").lower()


def verdict(response: Response, receive: str) -> Outcome:
    """ldirectord: up when 2xx and (receive empty or the body matches it)."""
    if not 200 <= response.status < 300:
        return Outcome.down(Reason.BAD_STATUS, response.status_line)
    if receive and compile_receive(receive).search(response.body) is None:
        return Outcome.down(
            Reason.NO_MATCH,
            f"{response.status_line}, but receive {receive!r} not found in the "
            f"{len(response.body)}-byte body",
        )
    return Outcome.ok(response.status_line)


# --- IO ------------------------------------------------------------------------------------


async def _read_head(conn: _net.Conn) -> tuple[bytes, bytes]:
    """(status line + headers without the blank line, body bytes already read); bounded.

    The first five bytes are checked at once, so a server that babbles something other than
    HTTP is down (PROTOCOL) without waiting for the deadline. The second element is only
    non-empty for a bare-LF server that closed after its reply (then it is the whole body).
    """
    set_phase("waiting for the status line")
    reader = conn.reader
    try:
        magic = await reader.readexactly(5)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise CheckFailed(Reason.PROTOCOL, f"truncated response {exc.partial!r}") from None
        raise CheckFailed(Reason.CLOSED, "connection closed without a response") from None
    if magic != b"HTTP/":
        raise CheckFailed(Reason.PROTOCOL, f"not an HTTP response: {magic!r}...")
    set_phase("reading the response head")
    try:
        rest = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        head, sep, body = (magic + exc.partial).partition(b"\n\n")
        if sep:
            return head, body[:BODY_LIMIT]
        raise CheckFailed(Reason.PROTOCOL, f"truncated response head {head[:60]!r}") from None
    except asyncio.LimitOverrunError:
        raise CheckFailed(Reason.PROTOCOL, f"response head over {HEAD_LIMIT} bytes") from None
    return magic + rest[:-4], b""


async def _read_chunked(conn: _net.Conn, limit: int) -> bytes:
    set_phase("reading the chunked body")
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        line = await conn.read_until(b"\n", 1024)
        token = line.split(b";", 1)[0].strip()
        try:
            length = int(token, 16)
        except ValueError:
            raise CheckFailed(Reason.PROTOCOL, f"bad chunk size {line[:40]!r}") from None
        if length == 0:
            break
        data = await conn.read_exactly(min(length, limit - size))
        chunks.append(data)
        size += len(data)
        if size >= limit:
            break
        await conn.read_until(b"\n", 1024)  # the CRLF after the chunk
    return b"".join(chunks)


async def _read_body(
    conn: _net.Conn, method: str, status: int, headers: dict[str, str], start: bytes
) -> bytes:
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return b""
    if start:  # a bare-LF reply already read to its end
        return start
    if is_chunked(headers):
        return await _read_chunked(conn, BODY_LIMIT)
    length = content_length(headers)
    set_phase("reading the body")
    if length is not None:
        return await conn.read_exactly(min(length, BODY_LIMIT)) if length else b""
    return await conn.read_to_eof(BODY_LIMIT)


async def _exchange(
    host: str, port: int, request: bytes, method: str, *, tls: bool, sni: str | None
) -> Response:
    conn = await _net.open_tcp(host, port, tls=tls, server_hostname=sni, limit=HEAD_LIMIT)
    try:
        await conn.send(request)
        for _ in range(10):  # skip interim 1xx responses (100 Continue, 103 Early Hints)
            head, start = await _read_head(conn)
            status, reason, headers = parse_head(head)
            if not 100 <= status < 200:
                break
        body = await _read_body(conn, method, status, headers, start)
        return Response(status, reason, headers, body)
    finally:
        conn.close()


@functools.lru_cache(maxsize=4096)
def _prepared(
    method: str, url: str, host_header: str | None, proxied: bool
) -> tuple[str, int, bool, bytes, str | None]:
    """(host, port, tls, request bytes, SNI) for one hop; cached: the same URLs repeat."""
    host, port, tls = url_endpoint(url)
    header = host_header or url_host_header(url)
    request = build_request(method, url, header, via_proxy=proxied and not tls)
    return host, port, tls, request, sni_name(header)


async def fetch(
    method: str, url: str, host_header: str | None, proxy: tuple[str, int] | None
) -> Response:
    """``method url`` as LWP::UserAgent would do it, following up to MAX_REDIRECTS redirects."""
    response: Response | None = None
    for _ in range(MAX_REDIRECTS + 1):
        host, port, tls, request, sni = _prepared(method, url, host_header, proxy is not None)
        if proxy is not None and not tls:  # LWP's proxy was set for "http" only
            response = await _exchange(proxy[0], proxy[1], request, method, tls=False, sni=None)
        else:
            response = await _exchange(host, port, request, method, tls=tls, sni=sni)
        location = response.headers.get("location")
        if response.status not in REDIRECT_STATUSES or not location:
            return response
        url = urljoin(url, location)
        host_header = None  # LWP drops the Host header on a redirect
    assert response is not None
    return response


async def check_http(target: CheckTarget) -> Outcome:
    """http / https / http_proxy negotiate check."""
    spec = target.spec
    method = HttpMethod(spec.httpmethod).value
    url = check_url(target)
    if target.service is Service.HTTP_PROXY:
        response = await fetch(method, url, None, (target.host, target.port))
    else:
        vhost = spec.virtualhost if spec.virtualhost is not None else target.host_for_url
        response = await fetch(method, url, vhost, None)
    if response.status in REDIRECT_STATUSES:
        return Outcome.down(Reason.BAD_STATUS, f"{response.status_line} (too many redirects)")
    return verdict(response, target.receive)
