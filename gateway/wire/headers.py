"""Header rewriting between client and backend: pure functions, no I/O.

Vocabulary:

hop-by-hop header
    describes one connection, not the message (RFC 9110 §7.6.1): the fixed
    list below plus every header the ``Connection`` header names. Never
    forwarded in either direction.
gateway cookie
    a cookie the gateway itself sets (session, XSRF ...), by name. Backends
    must never see them (an admin visiting a user's server would hand their
    session to user code) nor set them (cookie tossing, CVE-2024-28233).
prefix
    the route's URL prefix (``/user/alice/nb/``); a backend may only set
    cookies whose ``Path`` lies inside it.

Request heads are built from aiohttp's ``raw_headers`` (bytes) so that the
client's header bytes reach the backend unchanged and nothing is decoded and
re-encoded on the hot path.
"""

from __future__ import annotations

from typing import Iterable
from urllib.parse import unquote

__all__ = [
    "HOP_BY_HOP",
    "build_request_head",
    "strip_gateway_cookies",
    "set_cookie_allowed",
    "response_headers",
    "header_block",
]

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Request headers the gateway replaces or answers itself:
#  content-length -> re-added from the body framing; host -> re-added first;
#  expect -> the gateway answers 100-continue; authorization -> the server's
#  secret; forwarded / x-forwarded-* / x-real-ip -> the gateway's own view
#  (a client must not choose what the backend believes about it).
_DROP_REQUEST = frozenset(
    n.encode()
    for n in HOP_BY_HOP
    | {
        "content-length",
        "host",
        "expect",
        "authorization",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-real-ip",
    }
)
# Service routes keep the caller's Authorization: a service authenticates its callers itself.
_DROP_REQUEST_KEEP_AUTH = _DROP_REQUEST - {b"authorization"}
_DROP_RESPONSE = HOP_BY_HOP | {"content-length"}
# CORS grants a backend may make to an Origin: not for requests the gateway let through on a login
# cookie (a backend sees every proxied request as token-authenticated, and may reflect any Origin)
CORS_GRANTS = frozenset({"access-control-allow-origin", "access-control-allow-credentials"})
_DROP_RESPONSE_COOKIE_AUTH = _DROP_RESPONSE | CORS_GRANTS
_CONNECTION_STANDARD = frozenset({b"keep-alive", b"close", b"upgrade", b""})


def _connection_named(raw_headers: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """Extra header names listed in Connection (beyond keep-alive/close/upgrade)."""
    named: set[bytes] = set()
    for name, value in raw_headers:
        if name.lower() == b"connection":
            for token in value.lower().split(b","):
                token = token.strip()
                if token not in _CONNECTION_STANDARD:
                    named.add(token)
    return frozenset(named)


def strip_gateway_cookies(value: bytes, names: frozenset[bytes]) -> bytes:
    """A Cookie header value without the gateway's cookies (may become empty)."""
    if not any(n in value for n in names):
        return value
    kept = []
    for pair in value.split(b";"):
        pair = pair.strip()
        if pair and pair.split(b"=", 1)[0].strip() not in names:
            kept.append(pair)
    return b"; ".join(kept)


def build_request_head(
    method: str,
    target: str,
    raw_headers: Iterable[tuple[bytes, bytes]],
    *,
    host: str,
    forwarded_for: str,
    forwarded_proto: str,
    secret: str | None,
    gateway_cookies: frozenset[bytes],
    content_length: int | None,
    chunked: bool,
    websocket: bool,
) -> bytes:
    """The request line and header block to send to the backend.

    Keeps every end-to-end header byte for byte, except: hop-by-hop headers (and any header
    whose name, underscores read as dashes, is one that is dropped),
    the caller's Authorization (replaced by ``Authorization: token <secret>``;
    kept as it is when ``secret`` is None),
    gateway cookies (removed from Cookie) and forwarding headers (replaced by
    ``X-Forwarded-For/Proto/Host`` from the gateway's view). ``Host`` is kept.
    """
    parts = [
        f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n".encode("latin-1"),
    ]
    append = parts.append
    named: frozenset[bytes] = frozenset()
    drop = _DROP_REQUEST if secret is not None else _DROP_REQUEST_KEEP_AUTH
    for name, value in raw_headers:
        lname = name.lower()
        # ``X_Forwarded_For`` is ``X-Forwarded-For`` to servers that map header names to
        # variables (WSGI/CGI, nginx's underscores_in_headers): dropped like the dashed spelling
        if lname in drop or b"_" in lname and lname.replace(b"_", b"-") in drop:
            if lname == b"connection" and value.strip().lower() not in _CONNECTION_STANDARD:
                named = _connection_named(raw_headers)
            continue
        if lname == b"cookie" and gateway_cookies:
            value = strip_gateway_cookies(value, gateway_cookies)
            if not value:
                continue
        append(b"%s: %s\r\n" % (name, value))
    if named:
        parts[1:] = [p for p in parts[1:] if p.split(b":", 1)[0].lower() not in named]
    tail = (
        f"X-Forwarded-For: {forwarded_for}\r\n"
        f"X-Forwarded-Proto: {forwarded_proto}\r\n"
        f"X-Forwarded-Host: {host}\r\n"
    )
    if secret is not None:
        tail += f"Authorization: token {secret}\r\n"
    if websocket:
        tail += "Connection: Upgrade\r\nUpgrade: websocket\r\n"
    if content_length is not None:
        tail += f"Content-Length: {content_length}\r\n"
    elif chunked:
        tail += "Transfer-Encoding: chunked\r\n"
    parts.append(tail.encode("latin-1") + b"\r\n")
    return b"".join(parts)


def _path_inside(path: str, prefix: str) -> bool:
    # compared percent-decoded: "/a%40b/" and "/a@b/" name the same place
    path = unquote(path)
    if ".." in path or "\\" in path:
        return False
    prefix = unquote(prefix)
    return path == prefix or path == prefix[:-1] or path.startswith(prefix)


def set_cookie_allowed(value: str, prefix: str, gateway_cookies: frozenset[str]) -> bool:
    """May a backend mounted at ``prefix`` send this Set-Cookie value?

    No if it names a gateway cookie, or if any ``Path`` attribute leaves the
    prefix. A missing or non-absolute Path means the request's own directory,
    which lies inside the prefix.
    """
    pair, _, attrs = value.partition(";")
    name = pair.split("=", 1)[0].strip() if "=" in pair else ""
    if name in gateway_cookies:
        return False
    for attr in attrs.split(";"):
        key, _, val = attr.partition("=")
        if key.strip().lower() == "path":
            val = val.strip()
            if val.startswith("/") and not _path_inside(val, prefix):
                return False
    return True


def response_headers(
    headers: list[tuple[str, str]],
    *,
    prefix: str,
    gateway_cookies: frozenset[str],
    upgrade: bool = False,
    cookie_auth: bool = False,
) -> list[tuple[str, str]]:
    """The backend's response headers the client may see, order and case kept.

    Drops hop-by-hop headers and Content-Length (the server side re-frames
    the body), Set-Cookie values refused by :func:`set_cookie_allowed`, and, for
    a request authenticated by the login cookie (``cookie_auth``), CORS grants.
    For a 101 the Upgrade handshake headers are put back.
    """
    drop = _DROP_RESPONSE_COOKIE_AUTH if cookie_auth else _DROP_RESPONSE
    named: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            named.update(t.strip().lower() for t in value.split(","))
    out = []
    for name, value in headers:
        lname = name.lower()
        if lname in drop or lname in named:
            continue
        if lname == "set-cookie" and not set_cookie_allowed(value, prefix, gateway_cookies):
            continue
        out.append((name, value))
    if upgrade:
        out.append(("Connection", "Upgrade"))
        out.append(("Upgrade", "websocket"))
    return out


def header_block(headers: list[tuple[str, str]]) -> bytes:
    """``Name: value\\r\\n`` lines for headers already validated by the upstream parser."""
    return "".join([f"{name}: {value}\r\n" for name, value in headers]).encode("latin-1")
