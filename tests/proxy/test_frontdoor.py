"""Front doors (gateway/wire/frontdoor.py): plain token-authenticated proxied requests on the lean path,
everything else handed to aiohttp on the same connection. Real sockets on a real gateway; the
backend is an aiohttp app in the test process, mounted as alice's default server, so each test
controls exactly what the backend answers and sees what it received.

Every test runs on both paths (front doors on and off) and expects the same answers; the ones
about the lane itself (its counters, idle sweep, back-pressure, failures) run with it only."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest
from aiohttp import web

from gateway import keys
from gateway.wire.routing import Route
from tests.helpers.hub import free_port
from tests.helpers.wire import raw_exchange, split_response, status_of

SECRET = "backend-secret-0123456789"
LANE_ONLY = pytest.mark.parametrize("front_door", [True], ids=["front-door"])


class Backend:
    """alice's server: records what it receives; a few answers the proxy must frame correctly."""

    def __init__(self) -> None:
        self.seen: list[dict] = []
        self.slow_started = asyncio.Event()
        self.slow_gone = asyncio.Event()
        self.port = free_port()
        app = web.Application()
        app.router.add_route("*", "/user/alice/echo{tail:.*}", self.echo)
        app.router.add_get("/user/alice/chunked", self.chunked)
        app.router.add_get("/user/alice/empty", self.empty)
        app.router.add_get("/user/alice/big", self.big)
        app.router.add_get("/user/alice/slow", self.slow)
        app.router.add_get("/user/alice/cookies", self.cookies)
        app.router.add_get("/user/alice/blob", self.blob)
        app.router.add_get("/user/alice/late", self.late)
        app.router.add_get("/user/alice/nb/{tail:.*}", self.echo)
        self.blobs = 0
        self.runner = web.AppRunner(app)

    async def start(self) -> None:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def echo(self, request: web.Request) -> web.Response:
        body = await request.read()
        seen = {"method": request.method, "path": request.raw_path, "headers": list(request.headers.items()),
                "body_sha256": hashlib.sha256(body).hexdigest(), "length": len(body)}
        self.seen.append(seen)
        return web.json_response(seen, headers={"X-Backend": "yes"})

    async def chunked(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(5):
            await resp.write(b"piece-%d;" % i)
            await asyncio.sleep(0.02)  # so the head leaves before the body is complete
        await resp.write_eof()
        return resp

    async def empty(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def big(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_length = 4 * 1024 * 1024
        await resp.prepare(request)
        for _ in range(16):
            await resp.write(b"x" * (256 * 1024))
        return resp

    async def slow(self, request: web.Request) -> web.Response:
        self.slow_started.set()
        for _ in range(200):  # bounded: 20 s
            if request.transport is None or request.transport.is_closing():
                self.slow_gone.set()
                break
            await asyncio.sleep(0.1)
        return web.Response(text="late")

    async def blob(self, request: web.Request) -> web.Response:
        self.blobs += 1
        return web.Response(body=b"b" * 100_000)

    async def late(self, request: web.Request) -> web.Response:
        self.slow_started.set()
        await asyncio.sleep(0.5)
        return web.Response(text="late")

    async def cookies(self, request: web.Request) -> web.Response:
        resp = web.Response(text="ok")
        resp.headers.add("Set-Cookie", "mine=1; Path=/user/alice/")
        resp.headers.add("Set-Cookie", "gateway-login=stolen; Path=/")
        resp.headers.add("Set-Cookie", "escape=1; Path=/hub/")
        return resp


@pytest.fixture
async def backend():
    b = Backend()
    await b.start()
    yield b
    await b.runner.cleanup()


async def mount(hub, backend: Backend) -> str:
    """alice's server is the test backend; returns alice's token."""
    token = await hub.new_token("alice")
    hub.app[keys.ROUTES].add(Route(prefix="/user/alice/", target=f"http://127.0.0.1:{backend.port}", kind="user",
                                   user="alice", server_name="", service=None, secret=SECRET))
    return token


def port_of(hub) -> int:
    return int(hub.url.rsplit(":", 1)[1])


def get(path: str, token: str | None, *extra: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: gw.test"]
    if token:
        lines.append(f"Authorization: token {token}")
    lines += extra
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def dechunk(body: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            assert body == b"\r\n"
            return out
        out, body = out + body[:size], body[size + 2:]


async def test_token_request_is_forwarded_on_the_lean_path(hub, backend):
    token = await mount(hub, backend)
    doors = hub.site.doors
    before = (doors.served, doors.handed_off) if doors is not None else None
    raw = await raw_exchange(port_of(hub), get("/user/alice/echo/x?a=1&token=" + token, token,
                                               "Cookie: gateway-login=abc; theirs=1", "X-Forwarded-For: 6.6.6.6",
                                               "Connection: keep-alive, X-Drop", "X-Drop: 1"))
    status, headers, body = split_response(raw)
    assert status == 200, raw
    if doors is not None:
        assert (doors.served - before[0], doors.handed_off - before[1]) == (1, 0)
    seen = json.loads(body)
    sent = {k.lower(): v for k, v in seen["headers"]}
    assert seen["path"] == "/user/alice/echo/x?a=1"  # our credential never reaches the backend
    assert sent["authorization"] == f"token {SECRET}"
    assert sent["cookie"] == "theirs=1"
    assert sent["x-forwarded-for"] == "127.0.0.1" and sent["x-forwarded-host"] == "gw.test"
    assert sent["host"] == "gw.test" and "x-drop" not in sent
    assert headers["x-backend"] == ["yes"] and headers["content-length"] == [str(len(body))]


@LANE_ONLY
async def test_both_paths_send_and_answer_the_same(start_hub, backend):
    """The same request through a front door and through aiohttp's path: same bytes to the
    backend, same status, headers and body to the client (Date aside)."""
    results = []
    for front_door in (True, False):
        hub = await start_hub()
        if not front_door:  # a second gateway listening without front doors
            await hub.site.stop()
            from gateway.wire.frontdoor import listening_site
            hub.site = listening_site(hub.runner, "127.0.0.1", 0, shutdown_timeout=1, lane=None, drains=None)
            await hub.site.start()
            hub.url = f"http://127.0.0.1:{hub.site.port}"
        token = await mount(hub, backend)
        request = ("POST /user/alice/echo/p%20q?x=%2F&y=1 HTTP/1.1\r\nHost: gw.test\r\n"
                   f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 7\r\n"
                   "Accept: */*\r\nX-Custom: a\r\nX-Custom: b\r\n\r\n{\"a\":1}").encode()
        raw = await raw_exchange(port_of(hub), request)
        status, headers, body = split_response(raw)
        headers.pop("date", None)
        seen = json.loads(body)
        results.append((status, headers, seen))
        assert (hub.site.doors is not None) == front_door
    (s1, h1, seen1), (s2, h2, seen2) = results
    assert s1 == s2 == 200
    assert h1.keys() == h2.keys() and h1["content-type"] == h2["content-type"]
    assert seen1 == seen2


async def test_pipelined_requests_are_answered_in_order(hub, backend):
    token = await mount(hub, backend)
    data = b"".join(get(f"/user/alice/echo/{i}", token) for i in range(3))
    raw = await raw_exchange(port_of(hub), data, responses=3)
    assert raw.count(b"HTTP/1.1 200 ") == 3
    paths = [seen["path"] for seen in backend.seen[-3:]]
    assert paths == ["/user/alice/echo/0", "/user/alice/echo/1", "/user/alice/echo/2"]
    assert raw.index(b'"/user/alice/echo/0"') < raw.index(b'"/user/alice/echo/1"') < raw.index(b'"/user/alice/echo/2"')


async def test_hub_request_on_the_same_connection_goes_to_aiohttp(hub, backend):
    token = await mount(hub, backend)
    doors = hub.site.doors
    handed = doors.handed_off if doors is not None else 0
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(hub))
    try:
        for path in ("/user/alice/echo/1", "/hub/api/user", "/user/alice/echo/2"):
            writer.write(get(path, token))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            status, headers, _ = split_response(head)
            body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"][0])), 10)
            assert status == 200, (path, head, body)
            if path == "/hub/api/user":
                assert json.loads(body)["name"] == "alice"
    finally:
        writer.close()
    if doors is not None:
        assert doors.handed_off == handed + 1
    assert [s["path"] for s in backend.seen[-2:]] == ["/user/alice/echo/1", "/user/alice/echo/2"]


async def test_requests_the_lane_does_not_take_get_aiohttps_answers(hub, backend):
    token = await mount(hub, backend)
    port = port_of(hub)
    doors = hub.site.doors
    served = doors.served if doors is not None else 0
    # no credentials, browser-like: the login redirect
    assert status_of(await raw_exchange(port, get("/user/alice/echo", None, "Accept: text/html"))) == 302
    # no credentials, API-like
    assert status_of(await raw_exchange(port, get("/user/alice/api/x", None))) == 403
    # the server's own secret is not a visitor's credential
    assert status_of(await raw_exchange(port, get("/user/alice/api/x", SECRET))) == 403
    # another user's token: 403 on a running server
    other = await hub.new_token("bob")
    assert status_of(await raw_exchange(port, get("/user/alice/echo", other))) == 403
    # an unknown token
    assert status_of(await raw_exchange(port, get("/user/alice/api/x", "f" * 64))) == 403
    # path tricks
    assert status_of(await raw_exchange(port, get("/user/alice/%2e%2e/bob/", token))) == 400
    # /user/alice -> /user/alice/
    assert status_of(await raw_exchange(port, get("/user/alice", token))) == 302
    # not plain: chunked body, Expect
    chunked = (f"POST /user/alice/echo HTTP/1.1\r\nHost: h\r\nAuthorization: token {token}\r\n"
               "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n").encode()
    assert status_of(await raw_exchange(port, chunked)) == 200
    assert backend.seen[-1]["length"] == 3
    if doors is not None:
        assert doors.served == served  # every one of them answered by aiohttp's path


async def test_body_arriving_in_pieces_and_connection_close(hub, backend):
    token = await mount(hub, backend)
    body = b"0123456789" * 1000
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(hub))
    try:
        writer.write((f"PUT /user/alice/echo HTTP/1.1\r\nHost: h\r\nAuthorization: token {token}\r\n"
                      f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body[:100])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(body[100:])
        raw = await asyncio.wait_for(reader.read(), 10)  # until the gateway closes
    finally:
        writer.close()
    status, headers, answer = split_response(raw)
    assert status == 200 and headers["connection"] == ["close"]
    assert json.loads(answer)["body_sha256"] == hashlib.sha256(body).hexdigest()


async def test_response_framing(hub, backend):
    token = await mount(hub, backend)
    port = port_of(hub)
    status, headers, body = split_response(await raw_exchange(port, get("/user/alice/chunked", token), responses=None,
                                                             limit=3))
    assert status == 200 and headers["transfer-encoding"] == ["chunked"] and "content-length" not in headers
    assert dechunk(body) == b"piece-0;piece-1;piece-2;piece-3;piece-4;"
    status, headers, body = split_response(await raw_exchange(port, get("/user/alice/empty", token)))
    assert status == 204 and "content-length" not in headers and body == b""
    head = (f"HEAD /user/alice/echo HTTP/1.1\r\nHost: h\r\nAuthorization: token {token}\r\n\r\n").encode()
    status, headers, body = split_response(await raw_exchange(port, head, responses=None, limit=2))
    assert status == 200 and body == b""
    # Set-Cookie from the backend: its own kept, a gateway cookie and a path outside its prefix dropped
    status, headers, body = split_response(await raw_exchange(port, get("/user/alice/cookies", token)))
    assert headers["set-cookie"] == ["mine=1; Path=/user/alice/"]


async def test_large_response_streams(hub, backend):
    token = await mount(hub, backend)
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(hub))
    try:
        writer.write(get("/user/alice/big", token))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        status, headers, _ = split_response(head)
        assert status == 200 and headers["content-length"] == [str(4 * 1024 * 1024)]
        got = 0
        while got < 4 * 1024 * 1024:
            chunk = await asyncio.wait_for(reader.read(1 << 20), 10)
            assert chunk
            got += len(chunk)
        assert got == 4 * 1024 * 1024
    finally:
        writer.close()


# aiohttp's path does not notice (aiohttp does not cancel handlers of vanished clients): its backend
# request ends at the read timeout
@LANE_ONLY
async def test_client_leaving_drops_the_backend_request(hub, backend):
    token = await mount(hub, backend)
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(hub))
    writer.write(get("/user/alice/slow", token))
    await asyncio.wait_for(backend.slow_started.wait(), 10)
    writer.close()
    # the gateway drops its backend connection at once instead of waiting for the read timeout
    await asyncio.wait_for(backend.slow_gone.wait(), 10)


async def test_dead_backend_answers_503(hub, backend):
    token = await mount(hub, backend)
    await backend.runner.cleanup()
    status, headers, body = split_response(await raw_exchange(port_of(hub), get("/user/alice/echo", token)))
    assert status == 503 and b"not responding" in body and headers["content-type"] == ["text/plain; charset=utf-8"]
    assert "GMT" in headers["date"][0]


@LANE_ONLY
async def test_idle_and_slow_connections_are_closed(hub, backend):
    await mount(hub, backend)
    hub.site.doors.idle_timeout = 0.3
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(hub))
    try:
        writer.write(b"GET /user/alice/echo HTTP/1.1\r\nHost: h\r\n")  # and never the end of the head
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the gateway
    finally:
        writer.close()


@LANE_ONLY
async def test_a_client_that_never_reads_cannot_pile_up_answers(hub, backend):
    """Pipelined requests whose answers are never read: the gateway stops taking requests once
    the connection's write buffer is full, so its memory stays bounded."""
    token = await mount(hub, backend)
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(hub))
    try:
        writer.write(get("/user/alice/blob", token) * 300)  # 30 MB of answers if all were served
        for _ in range(50):  # bounded: until the gateway has stopped taking requests
            before = backend.blobs
            await asyncio.sleep(0.1)
            if backend.blobs == before and before > 0:
                break
        buffered = [d.transport.get_write_buffer_size() for d in hub.site.doors.open if d.transport is not None]
        assert backend.blobs < 100, backend.blobs
        assert max(buffered) < 2 * 1024 * 1024, buffered
        # reading the answers lets it go on with the rest
        got = b""
        while got.count(b"HTTP/1.1 200 ") < 300:
            chunk = await asyncio.wait_for(reader.read(1 << 20), 10)
            assert chunk
            got += chunk
        assert backend.blobs == 300
    finally:
        writer.close()


async def test_named_server_without_its_slash_is_redirected(hub, backend):
    token = await mount(hub, backend)
    hub.app[keys.ROUTES].add(Route(prefix="/user/alice/nb/", target=f"http://127.0.0.1:{backend.port}", kind="user",
                                   user="alice", server_name="nb", service=None, secret=SECRET))
    status, headers, _ = split_response(await raw_exchange(port_of(hub), get("/user/alice/nb", token)))
    assert (status, headers["location"]) == (302, ["/user/alice/nb/"])
    status, _, body = split_response(await raw_exchange(port_of(hub), get("/user/alice/nb/x", token)))
    assert status == 200 and json.loads(body)["path"] == "/user/alice/nb/x"


async def test_whitespace_in_the_target_is_refused(hub, backend):
    token = await mount(hub, backend)
    raw = await raw_exchange(port_of(hub), get("/user/alice/echo?a\tHTTP/1.0\tb", token))
    assert status_of(raw) == 400
    assert backend.seen == []


async def test_stopping_lets_a_request_in_flight_finish(make_settings, backend):
    from tests.helpers.hub import start_hub_with

    hub = await start_hub_with(make_settings())
    try:
        token = await mount(hub, backend)
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(hub))
        writer.write(get("/user/alice/late", token))
        await asyncio.wait_for(backend.slow_started.wait(), 10)
        stopping = asyncio.ensure_future(hub.runner.cleanup())
        raw = await asyncio.wait_for(reader.read(), 20)  # the answer, then the close
        writer.close()
        await asyncio.wait_for(stopping, 30)
    finally:
        await hub.session.close()
    status, headers, body = split_response(raw)
    assert (status, body) == (200, b"late")
    assert headers["connection"] == ["close"]


@LANE_ONLY
async def test_a_failure_in_the_lane_answers_500_and_closes(hub, backend):
    """An unexpected error before any byte of the answer: 500 (as aiohttp answers), then the close."""
    token = await mount(hub, backend)
    doors = hub.site.doors
    real = doors.lane

    class Broken:
        def wants(self, head):
            return real.wants(head)

        async def serve(self, door, head, body):
            raise RuntimeError("a bug")

    doors.lane = Broken()
    try:
        raw = await raw_exchange(port_of(hub), get("/user/alice/echo", token) * 2, responses=None, limit=5)
    finally:
        doors.lane = real
    status, headers, body = split_response(raw)
    assert (status, headers["connection"], body) == (500, ["close"], b"500 Internal Server Error")
    assert raw.count(b"HTTP/1.1 ") == 1  # the pipelined second request is not answered on a broken connection


async def test_metrics_count_body_bytes_on_both_paths(hub, backend):
    """One metrics call for both paths: body bytes out, whole or streamed (never the head's)."""
    from tests.ops.test_metrics import scrape, value

    token = await mount(hub, backend)
    admin = await hub.new_token("root", admin=True)
    before = await scrape(hub, admin)
    assert split_response(await raw_exchange(port_of(hub), get("/user/alice/blob", token)))[0] == 200
    raw = await raw_exchange(port_of(hub), get("/user/alice/chunked", token), responses=None, limit=3)
    assert dechunk(split_response(raw)[2]) == b"piece-0;piece-1;piece-2;piece-3;piece-4;"
    after = await scrape(hub, admin)
    sent = value(after, "gateway_proxy_bytes_total", direction="out") - value(before, "gateway_proxy_bytes_total",
                                                                                 direction="out")
    assert sent == 100_000 + len(b"piece-0;") * 5
    ok = value(after, "gateway_proxy_requests_total", status="2xx") - value(before, "gateway_proxy_requests_total",
                                                                             status="2xx")
    assert ok == 2
