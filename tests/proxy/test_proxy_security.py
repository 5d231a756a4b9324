"""Issue 13's proxy security items, each on both proxy paths: the front-door lane and aiohttp's.

A real gateway on a real loopback port; the backends are servers in the test process mounted as
routes, so each test controls exactly what a backend answers and sees the bytes it received:

- ``Backend``: an aiohttp app (echo, a CORS-granting answer, a websocket), alice's server and the
  ``svc`` service;
- ``RawBackend``: a raw-socket server (bob's server) for what aiohttp would not do: pre-sending
  an answer on an idle keep-alive connection, aborting mid-body, recording the exact header bytes.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from aiohttp import web

from gateway import keys
from gateway.wire.routing import Route
from tests.helpers.hub import free_port, start_hub_with
from tests.helpers.wire import raw_exchange, split_response, status_of
from tests.proxy.test_proxy_auth import cookie_session

SECRET = "backend-secret-0123456789"
EVIL_ORIGIN = "http://evil.example"
WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="


class Backend:
    """alice's server and the service ``svc``: records what each request carried."""

    def __init__(self) -> None:
        self.seen: list[dict] = []
        self.port = free_port()
        app = web.Application()
        for prefix in ("/user/alice", "/services/svc"):
            app.router.add_route("*", prefix + "/echo{tail:.*}", self.echo)
            app.router.add_get(prefix + "/cors", self.cors)
        app.router.add_get("/user/alice/ws", self.websocket)
        self.runner = web.AppRunner(app)

    async def start(self) -> None:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def echo(self, request: web.Request) -> web.Response:
        seen = {"method": request.method, "path": request.raw_path, "headers": list(request.headers.items())}
        self.seen.append(seen)
        return web.json_response(seen)

    async def cors(self, request: web.Request) -> web.Response:
        """A backend that reflects any Origin with credentials (it sees every caller as token-authenticated)."""
        self.seen.append({"method": request.method, "path": request.raw_path})
        return web.Response(text="granted", headers={
            "Access-Control-Allow-Origin": request.headers.get("Origin", "*"),
            "Access-Control-Allow-Credentials": "true", "Vary": "Origin", "X-Backend": "yes"})

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        self.seen.append({"method": request.method, "path": request.raw_path, "ws": True})
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            await ws.send_str(msg.data)
        return ws


class RawBackend:
    """bob's server, on raw sockets. Every request head is recorded as received (bytes).

    ``/user/bob/presend``: the answer, then, unasked, a second complete answer ("EVIL") on the
    same keep-alive connection. ``/user/bob/abort``: a head announcing 100000 bytes, 1000 of
    them, then the connection is cut. Anything else: ``ok`` with the connection's number."""

    def __init__(self) -> None:
        self.port = free_port()
        self.heads: list[bytes] = []
        self.connections = 0
        self.present = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.heads.append(head)
                path = head.split(b" ", 2)[1]
                if path == b"/user/bob/presend":
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
                    await writer.drain()
                    await asyncio.sleep(0.05)  # the gateway has taken the answer; now, unasked:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL")
                    await writer.drain()
                    self.present.set()
                elif path == b"/user/bob/abort":
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"a" * 1000)
                    await writer.drain()
                    await asyncio.sleep(0.05)
                    writer.transport.abort()
                    return
                else:
                    body = b"ok-%d" % number
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                    await writer.drain()
        finally:
            self._writers.discard(writer)
            writer.close()


@pytest.fixture
async def gw(make_settings, front_door):
    """A gateway (admin_access on) listening with or without front doors, and its backends mounted."""
    backend, raw = Backend(), RawBackend()
    await backend.start()
    await raw.start()
    hub = await start_hub_with(make_settings(admin_access=True), front_door=front_door)
    assert (hub.site.doors is not None) == front_door
    routes = hub.app[keys.ROUTES]
    routes.add(Route(prefix="/user/alice/", target=f"http://127.0.0.1:{backend.port}", kind="user",
                     user="alice", server_name="", service=None, secret=SECRET))
    routes.add(Route(prefix="/services/svc/", target=f"http://127.0.0.1:{backend.port}", kind="service",
                     user=None, server_name="", service="svc", secret=SECRET + "-svc"))
    routes.add(Route(prefix="/user/bob/", target=f"http://127.0.0.1:{raw.port}", kind="user",
                     user="bob", server_name="", service=None, secret=SECRET + "-bob"))
    hub.backend, hub.raw = backend, raw
    hub.port = int(hub.url.rsplit(":", 1)[1])
    try:
        yield hub
    finally:
        await hub.session.close()
        await hub.runner.cleanup()
        await raw.close()
        await backend.runner.cleanup()


def request_bytes(method: str, path: str, *headers: str | bytes, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: gw.test"]
    lines += [h if isinstance(h, bytes) else h.encode() for h in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def no_tracebacks(caplog) -> None:
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR or "Traceback" in r.getMessage()]
    assert not bad, [(r.name, r.getMessage()) for r in bad]


# ---------------------------------------------------------------- CORS


async def test_cors_grants_stripped_for_cookie_requests_kept_for_tokens(gw):
    token = await gw.new_token("alice")
    cookies, _ = await cookie_session(gw, "alice")
    cookie = "Cookie: " + "; ".join(f"{k}={v}" for k, v in cookies.items())
    for path in ("/user/alice/cors", "/user/alice/cors?x=1"):
        status, headers, body = split_response(await raw_exchange(gw.port, request_bytes("GET", path, cookie,
                                                                              f"Origin: {EVIL_ORIGIN}")))
        assert (status, body) == (200, b"granted")
        assert headers["x-backend"] == ["yes"]
        assert "access-control-allow-origin" not in headers and "access-control-allow-credentials" not in headers
    status, headers, _ = split_response(await raw_exchange(gw.port, request_bytes(
        "GET", "/user/alice/cors", f"Authorization: token {token}", f"Origin: {EVIL_ORIGIN}")))
    assert status == 200
    assert headers["access-control-allow-origin"] == [EVIL_ORIGIN]
    assert headers["access-control-allow-credentials"] == ["true"]


# ---------------------------------------------------------------- ?token= on upgrades only


async def test_query_token_needs_a_complete_browser_websocket_upgrade(gw):
    token = await gw.new_token("alice")
    incomplete = [
        ("GET", ["Upgrade: websocket"]),
        ("GET", ["Connection: Upgrade", "Upgrade: websocket", f"Sec-WebSocket-Key: {WS_KEY}",
                 "Sec-WebSocket-Version: 13"]),  # no Sec-Fetch-Mode: websocket
        ("GET", ["Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13",
                 "Sec-Fetch-Mode: websocket"]),  # no Sec-WebSocket-Key
        ("GET", ["Upgrade: websocket", f"Sec-WebSocket-Key: {WS_KEY}", "Sec-WebSocket-Version: 13",
                 "Sec-Fetch-Mode: websocket"]),  # no Connection: upgrade
        ("POST", ["Connection: Upgrade", "Upgrade: websocket", f"Sec-WebSocket-Key: {WS_KEY}",
                  "Sec-WebSocket-Version: 13", "Sec-Fetch-Mode: websocket", "Content-Length: 0"]),
    ]
    for method, headers in incomplete:
        for path in (f"/user/alice/echo?token={token}", f"/user/alice/ws?token={token}"):
            raw = await raw_exchange(gw.port, request_bytes(method, path, *headers), responses=None, limit=5)
            assert status_of(raw) in (302, 400, 403), (method, headers, raw[:300])
    assert gw.backend.seen == []
    complete = request_bytes("GET", f"/user/alice/ws?token={token}", "Connection: Upgrade", "Upgrade: websocket",
                             f"Sec-WebSocket-Key: {WS_KEY}", "Sec-WebSocket-Version: 13",
                             "Sec-Fetch-Mode: websocket")
    raw = await raw_exchange(gw.port, complete, responses=None, limit=2)
    assert status_of(raw) == 101, raw[:300]
    assert gw.backend.seen == [{"method": "GET", "path": "/user/alice/ws", "ws": True}]


# ---------------------------------------------------------------- bad bytes


@pytest.mark.parametrize("value", [b"token \xff\xfe\x80abc", b"Bearer \xc3\x28", b"token caf\xc3\xa9"],
                         ids=["invalid-utf8", "invalid-utf8-pair", "non-ascii"])
async def test_authorization_with_high_bytes_is_refused_without_traceback(gw, caplog, value):
    caplog.set_level(logging.DEBUG)
    for path in ("/user/alice/echo", "/services/svc/echo", "/hub/api/user"):
        raw = await raw_exchange(gw.port, request_bytes("GET", path, b"Authorization: " + value,
                                                        "Accept: application/json"))
        assert status_of(raw) in (400, 403), (path, raw[:300])
    assert gw.backend.seen == []
    no_tracebacks(caplog)


async def test_host_outside_latin1_is_refused_and_never_altered(gw, caplog):
    caplog.set_level(logging.DEBUG)
    token = await gw.new_token("bob")
    euro = "gw.\u20ac".encode()  # U+20AC has no Latin-1 byte
    for path in ("/user/bob/x", "/hub/api/user"):
        raw = await raw_exchange(gw.port, f"GET {path} HTTP/1.1\r\n".encode() + b"Host: " + euro
                                 + f"\r\nAuthorization: token {token}\r\n\r\n".encode())
        assert status_of(raw) == 400, (path, raw[:300])
    assert gw.raw.heads == []
    # a Latin-1 character in UTF-8 (two bytes): refused, or passed on as exactly those bytes
    sent_host = "gw.t\u00e9st".encode()
    raw = await raw_exchange(gw.port, b"GET /user/bob/x HTTP/1.1\r\nHost: " + sent_host
                             + f"\r\nAuthorization: token {token}\r\n\r\n".encode())
    if status_of(raw) != 400:
        assert status_of(raw) == 200
        host_lines = [line for line in gw.raw.heads[-1].split(b"\r\n") if line.lower().startswith(b"host:")]
        assert host_lines == [b"Host: " + sent_host]
    no_tracebacks(caplog)


@pytest.mark.parametrize("ending", [b"\n\n", b"\r\n\n", b"\n\r\n"], ids=["lf-lf", "crlf-lf", "lf-crlf"])
async def test_head_ending_in_bare_lf_is_refused_at_once(gw, ending):
    token = await gw.new_token("alice")
    head = f"GET /user/alice/echo HTTP/1.1\nHost: gw.test\nAuthorization: token {token}".encode() + ending
    # the bound is far below the 75 s idle timeout a waiting lane would take to give up
    raw = await raw_exchange(gw.port, head, responses=None, limit=10)
    assert status_of(raw) == 400, raw[:300]
    assert gw.backend.seen == []


async def test_two_authorization_headers_are_refused_everywhere(gw):
    token = await gw.new_token("alice")
    other = await gw.new_token("alice")
    for path in ("/user/alice/echo", "/services/svc/echo", "/hub/api/user"):
        for second in (f"Authorization: token {other}", "Authorization: token forged-one", "authorization: x"):
            raw = await raw_exchange(gw.port, request_bytes("GET", path, f"Authorization: token {token}", second))
            assert status_of(raw) == 400, (path, second, raw[:300])
    assert gw.backend.seen == []


async def test_backend_aborting_mid_body_closes_a_pipelining_client_cleanly(gw, caplog):
    caplog.set_level(logging.DEBUG)
    token = await gw.new_token("bob")
    auth = f"Authorization: token {token}"
    for pipelined in (request_bytes("GET", "/user/bob/after", auth),  # one the lane could take
                      request_bytes("GET", "/hub/api/user", auth),  # one it hands to aiohttp
                      request_bytes("GET", "/user/bob/after", "Accept: application/json")):  # a refusal
        data = request_bytes("GET", "/user/bob/abort", auth) + pipelined
        raw = await raw_exchange(gw.port, data, responses=None, limit=10)
        status, headers, body = split_response(raw)
        assert status == 200 and headers["content-length"] == ["100000"]
        assert len(body) < 100000 and b"HTTP/1.1" not in body  # truncated, then closed: nothing after it
    await asyncio.sleep(0.2)  # let the gateway finish with the cut connections before reading its log
    assert not [h for h in gw.raw.heads if h.startswith(b"GET /user/bob/after ")]
    no_tracebacks(caplog)
    # and the gateway goes on serving
    assert split_response(await raw_exchange(gw.port, request_bytes("GET", "/user/bob/x", auth)))[0] == 200


# ---------------------------------------------------------------- pooled backend connections


async def test_pooled_connection_with_unasked_bytes_is_never_reused(gw):
    token = await gw.new_token("bob")
    auth = f"Authorization: token {token}"
    status, _, body = split_response(await raw_exchange(gw.port, request_bytes("GET", "/user/bob/presend", auth)))
    assert (status, body) == (200, b"first")
    await asyncio.wait_for(gw.raw.present.wait(), 10)
    await asyncio.sleep(0.1)  # the gateway (same event loop) has read the unasked bytes by now
    status, _, body = split_response(await raw_exchange(gw.port, request_bytes("GET", "/user/bob/next", auth)))
    assert status == 200 and body != b"EVIL", body
    assert body == b"ok-2"  # answered on a new backend connection
    assert gw.raw.heads[-1].startswith(b"GET /user/bob/next ")


# ---------------------------------------------------------------- methods and forwarding headers


# TRACK is no HTTP method aiohttp's parser (llhttp) knows: it refuses it before any handler, with 400
@pytest.mark.parametrize("method, expected", [("TRACE", 405), ("TRACK", 400)])
async def test_trace_and_track_are_refused(gw, method, expected):
    token = await gw.new_token("alice")
    for path in ("/user/alice/echo", "/services/svc/echo"):
        for headers in ((f"Authorization: token {token}",), ()):
            raw = await raw_exchange(gw.port, request_bytes(method, path, *headers))
            assert status_of(raw) == expected, (path, headers, raw[:300])
    assert gw.backend.seen == []


async def test_underscore_spellings_of_forwarding_headers_are_dropped(gw):
    token = await gw.new_token("bob")
    spoofed = ["X_Forwarded_For: 6.6.6.6", "X_Real_IP: 6.6.6.6", "X-Forwarded_Host: evil.example",
               "X_FORWARDED_PROTO: https", "x_forwarded_port: 1", "X-Real_Ip: 6.6.6.6", "Content_Length: 5",
               "Transfer_Encoding: chunked", "X-Kept_Header: yes"]
    status, _, _ = split_response(await raw_exchange(gw.port, request_bytes("GET", "/user/bob/x",
                                                                   f"Authorization: token {token}", *spoofed)))
    assert status == 200
    lines = gw.raw.heads[-1].decode("latin-1").split("\r\n")[1:]
    names = [line.partition(":")[0] for line in lines if line]
    assert "X-Kept_Header" in names  # other underscores are not ours to judge
    normalised = [n.lower().replace("_", "-") for n in names]
    for forwarding in ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port", "x-real-ip",
                       "content-length", "transfer-encoding"):
        assert normalised.count(forwarding) <= 1, (forwarding, lines)
        assert not any("_" in n and n.lower().replace("_", "-") == forwarding for n in names), lines
    assert "6.6.6.6" not in "\r\n".join(lines)


# ---------------------------------------------------------------- unknown users


async def test_unknown_user_with_admin_token_is_404(gw):
    admin = await gw.new_token("root", admin=True)
    await gw.new_user("stopped")
    for path, expected in (("/user/nobody/api/status", 404), ("/user/nobody/nb/api/status", 404),
                           ("/user/stopped/api/status", 424)):
        raw = await raw_exchange(gw.port, request_bytes("GET", path, f"Authorization: token {admin}"))
        status, _, body = split_response(raw)
        assert status == expected, (path, raw[:300])
        if expected == 404:
            assert json.loads(body)["status"] == 404
