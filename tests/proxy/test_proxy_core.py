"""The forwarder end to end: real gateway socket, real echo backend process."""

from __future__ import annotations

import asyncio
import gzip
import json

import aiohttp
import pytest
from yarl import URL

from gateway.wire.routing import Route
from tests.helpers.hub import free_port
from tests.helpers.proxy_harness import FORWARDER, Events, make_app
from tests.helpers.wire import ATTACKER, SECRETS, VICTIM, raw_exchange, start_echo_backend, status_of

A_AUTH = {"Authorization": "token tok-a"}
V_AUTH = {"Authorization": "token tok-v"}


def body_of(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in raw else b""


# security-cases A1: (trick, expected) with A = attacker (prefix of V's name).
# "400": refused as ambiguous; "denied": routed to V and refused (403/404);
# "own": reaches A's own server with the path unchanged (never V's).
A, V = ATTACKER, VICTIM
PATH_TRICKS = [
    (f"user/{V}/api/contents/f", "denied"),
    (f"user/{A}/../{V}/api/contents/f", "400"),
    (f"user/{A}/%2e%2e/{V}/api/contents/f", "400"),
    (f"user/{A}/%2E%2E/{V}/api/contents/f", "400"),
    (f"user/{A}/.%2e/{V}/api/contents/f", "400"),
    (f"user/{A}/%2e./{V}/api/contents/f", "400"),
    (f"user/{A}%2f..%2f{V}/api/contents/f", "400"),
    (f"user/{A}%2F..%2F{V}/api/contents/f", "400"),
    (f"user/{A}/..%2f{V}/api/contents/f", "400"),
    (f"user/{A}/%2e%2e%2f{V}/api/contents/f", "400"),
    (f"user/{A}/%252e%252e/{V}/api/contents/f", "own"),
    (f"/user/{V}/api/contents/f", "400"),  # leading "//"
    (f"user//{V}/api/contents/f", "400"),
    (f"user/{V}//api/contents/f", "denied"),
    (f"user/%73{V[1:]}/api/contents/f", "denied"),  # encoded first character
    (f"user/{V.upper()}/api/contents/f", "404"),
    (f"user/{A}/..\\{V}/api/contents/f", "400"),
    (f"user/{A}\\..\\{V}/api/contents/f", "400"),
    (f"user/{A}/..%5c{V}/api/contents/f", "400"),
    (f"user/{A}/..;/{V}/api/contents/f", "400"),
    (f"hub/../user/{V}/api/contents/f", "400"),
    (f"hub/%2e%2e/user/{V}/api/contents/f", "400"),
    (f"user/{A}/../../user/{V}/api/contents/f", "400"),
    (f"./user/{V}/api/contents/f", "400"),
    (f"user/./{V}/api/contents/f", "400"),
    (f"user/{A}/nb1/../../{V}/api/contents/f", "400"),
    (f"user/{A}%00/../{V}/api/contents/f", "400"),
    (f"user/{V}%2fapi%2fcontents%2ff", "400"),
    (f"user/{A}%23/../{V}/api/contents/f", "400"),
    (f"user/{V}/nb1/api/contents/f", "denied"),  # A4: V's named server
    (f"user/{A}x/", "404"),  # a name A's is a prefix of, with no route
]


@pytest.mark.parametrize("trick, expected", PATH_TRICKS)
async def test_path_confusion(gateway, trick, expected):
    server, events, base = gateway
    path = base + trick
    raw = await raw_exchange(
        server.port,
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: token tok-a\r\nConnection: close\r\n\r\n".encode(),
    )
    status = status_of(raw)
    assert SECRETS[VICTIM].encode() not in raw
    if expected == "400":
        assert status == 400
    elif expected == "denied":
        assert status in (403, 404)
    elif expected == "404":
        assert status == 404
    else:  # own: A's backend saw the raw path unchanged
        assert status == 200
        seen = json.loads(body_of(raw))
        assert seen["path"] == path
        assert ["Authorization", f"token {SECRETS[ATTACKER]}"] in seen["headers"]


async def test_websocket_upgrade_through_path_tricks_never_switches(gateway):
    server, _, base = gateway
    for trick in (f"user/{A}/../{V}/ws", f"user/{A}/%2e%2e/{V}/ws", f"user/{A}%2f..%2f{V}/ws", f"user//{V}/ws", f"user/{V}/ws"):
        raw = await raw_exchange(
            server.port,
            (
                f"GET {base}{trick}?token=tok-a HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode(),
            limit=5,
        )
        assert status_of(raw) in (400, 403, 404), trick


async def test_owner_reaches_own_servers(gateway):
    server, events, base = gateway
    async with aiohttp.ClientSession() as s:
        for path, secret in ((f"user/{V}/api/x?q=1", SECRETS[VICTIM]), (f"user/{V}/nb1/api/x", SECRETS[VICTIM] + "-nb1")):
            async with s.get(URL(f"http://127.0.0.1:{server.port}{base}{path}", encoded=True), headers=V_AUTH) as r:
                assert r.status == 200
                seen = await r.json()
            assert ["Authorization", f"token {secret}"] in seen["headers"]
            assert seen["raw_path"] == base + path
    assert events.activity.count(f"{base}user/{V}/") == 1
    assert events.activity.count(f"{base}user/{V}/nb1/") == 1


async def test_missing_slash_redirects(gateway):
    server, _, base = gateway
    async with aiohttp.ClientSession() as s:
        for path in (f"user/{V}", f"user/{V}/nb1"):
            async with s.get(URL(f"http://127.0.0.1:{server.port}{base}{path}?x=1", encoded=True), headers=V_AUTH, allow_redirects=False) as r:
                assert r.status == 302
                # aiohttp may normalise %40 to @ in Location: the same URL
                assert URL(r.headers["Location"]) == URL(f"{base}{path}/?x=1")


async def test_request_headers(gateway):
    server, _, base = gateway
    request = (
        f"POST {base}user/{V}/api/x?a=%2F HTTP/1.1\r\n"
        "Host: public.example:8000\r\n"
        "Authorization: token tok-v\r\n"
        "Cookie: gateway-session=SESSION; theirs=1; gateway-xsrf=X; more=2\r\n"
        "Connection: keep-alive, X-Hop-Custom\r\n"
        "X-Hop-Custom: drop me\r\n"
        "Keep-Alive: timeout=5\r\n"
        "TE: trailers\r\n"
        "Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"
        "Upgrade: h2c\r\n"
        "X-Forwarded-For: 6.6.6.6\r\n"
        "X-Forwarded-Host: evil.example\r\n"
        "Forwarded: for=6.6.6.6\r\n"
        "X-Custom: Kept  Verbatim\r\n"
        "Content-Type: application/json\r\n"
        "Content-Length: 2\r\n"
        "\r\n{}"
    ).encode()
    raw = await raw_exchange(
        server.port,
        request + f"GET {base}user/{V}/last HTTP/1.1\r\nHost: h\r\nAuthorization: token tok-v\r\nConnection: close\r\n\r\n".encode(),
        responses=2,
    )
    assert status_of(raw) == 200
    seen = json.loads(body_of(raw).split(b"HTTP/1.1")[0])
    headers = {k.lower(): v for k, v in seen["headers"]}
    names = [k.lower() for k, _ in seen["headers"]]
    assert seen["method"] == "POST" and seen["body_length"] == 2
    assert seen["raw_path"] == f"{base}user/{V}/api/x?a=%2F"
    assert headers["host"] == "public.example:8000"
    assert headers["authorization"] == f"token {SECRETS[VICTIM]}"
    assert names.count("authorization") == 1
    assert headers["cookie"] == "theirs=1; more=2"
    for hop in ("x-hop-custom", "keep-alive", "te", "proxy-authorization", "upgrade", "forwarded"):
        assert hop not in headers
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-host"] == "public.example:8000"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-custom"] == "Kept  Verbatim"
    # the pipelined second request on the same client connection was served too
    assert raw.count(b"HTTP/1.1 200") == 2


async def test_only_gateway_cookies_make_cookie_header_vanish(gateway):
    server, _, base = gateway
    async with aiohttp.ClientSession() as s:
        async with s.get(
            f"http://127.0.0.1:{server.port}{base}user/{V}/x",
            headers={**V_AUTH, "Cookie": "gateway-session=S; gateway-xsrf=X"},
        ) as r:
            seen = await r.json()
    assert "cookie" not in {k.lower() for k, _ in seen["headers"]}


async def test_response_headers_and_set_cookie_filter(gateway):
    server, _, base = gateway
    prefix = f"{base}user/{V}/"
    cookies = [
        "ok=1; Path=" + prefix,
        "okdefault=1",
        "oksub=1; Path=" + prefix + "lab",
        "okexact=1; Path=" + prefix.rstrip("/"),
        "gateway-session=stolen; Path=/",
        "gateway-xsrf=x",
        "outside=1; Path=/hub/",
        "root=1; Path=/",
        f"sibling=1; Path={base}user/{V}x/",
        f"escape=1; Path={prefix}../{A}/",
        "lastwins=1; Path=" + prefix + "; Path=/",
    ]
    query = "&".join("cookie=" + c.replace("%", "%25").replace("=", "%3D").replace(";", "%3B").replace(" ", "%20").replace("/", "%2F") for c in cookies)
    raw = await raw_exchange(
        server.port,
        f"GET {prefix}headers?{query} HTTP/1.1\r\nHost: h\r\nAuthorization: token tok-v\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n".encode(),
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    set_cookies = [line.split(": ", 1)[1].split("=", 1)[0] for line in lines if line.lower().startswith("set-cookie:")]
    assert set_cookies == ["ok", "okdefault", "oksub", "okexact"]
    assert "Content-Security-Policy: frame-ancestors 'self'; sandbox allow-scripts" in lines
    assert "Content-Encoding: gzip" in lines
    assert "X-Backend: echo" in lines
    # not decompressed on the way
    assert gzip.decompress(body) == b"compressed body"


async def test_large_upload_and_download_stream(gateway):
    server, _, base = gateway
    size = 64 * 1024 * 1024 + 123

    async def produce():
        block = b"z" * (1024 * 1024)
        left = size
        while left:
            piece = block[: min(left, len(block))]
            left -= len(piece)
            yield piece

    import hashlib

    expected = hashlib.sha256()
    left = size
    while left:
        n = min(left, 1024 * 1024)
        expected.update(b"z" * n)
        left -= n
    url = f"http://127.0.0.1:{server.port}{base}user/{V}/"
    async with aiohttp.ClientSession() as s:
        # chunked upload (no Content-Length)
        async with s.put(url + "upload", data=produce(), headers=V_AUTH) as r:
            seen = await r.json()
        assert seen["body_length"] == size and seen["body_sha256"] == expected.hexdigest()
        assert ["Transfer-Encoding", "chunked"] in seen["headers"]
        # sized upload
        async with s.put(url + "upload", data=produce(), headers={**V_AUTH, "Content-Length": str(size)}) as r:
            seen = await r.json()
        assert seen["body_length"] == size and seen["body_sha256"] == expected.hexdigest()
        for chunked in ("", "&chunked=1"):
            got = 0
            async with s.get(url + f"download?n={size}{chunked}", headers=V_AUTH) as r:
                assert r.status == 200
                async for chunk in r.content.iter_chunked(1024 * 1024):
                    got += len(chunk)
            assert got == size


async def test_head_and_empty_bodies(gateway):
    server, _, base = gateway
    raw = await raw_exchange(
        server.port,
        f"HEAD {base}user/{V}/download?n=12345 HTTP/1.1\r\nHost: h\r\nAuthorization: token tok-v\r\nConnection: close\r\n\r\n".encode(),
    )
    assert status_of(raw) == 200
    assert b"Content-Length: 12345\r\n" in raw
    assert raw.endswith(b"\r\n\r\n")


async def test_body_limit_refused_before_reading(aiohttp_server, echo_port):
    from gateway.wire.httpstrict import server_handler_args
    from tests.helpers.wire import TOKENS, user_routes

    app = make_app(routes=user_routes("/", echo_port), tokens=TOKENS, max_body_size=1000)
    server = await aiohttp_server(app, **server_handler_args())
    for extra in ("", "Expect: 100-continue\r\n"):
        raw = await raw_exchange(
            server.port,
            f"PUT /user/{V}/api/contents/huge.txt HTTP/1.1\r\nHost: h\r\nAuthorization: token tok-v\r\n{extra}Content-Length: 2147483648\r\n\r\n".encode(),
            limit=10,
        )
        assert status_of(raw) == 413
        assert b"100 Continue" not in raw
    # a chunked body is counted while it streams
    async with aiohttp.ClientSession() as s:

        async def produce():
            for _ in range(10):
                yield b"a" * 500

        async with s.put(f"http://127.0.0.1:{server.port}/user/{V}/x", data=produce(), headers=V_AUTH) as r:
            assert r.status == 413


async def test_websocket_relay(gateway):
    server, events, base = gateway
    url = f"http://127.0.0.1:{server.port}{base}user/{V}/ws"
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(url, headers=V_AUTH, protocols=("unsupported", "v1.kernel.websocket.jupyter.org"), autoping=False) as ws:
            assert ws.protocol == "v1.kernel.websocket.jupyter.org"
            hello = json.loads((await ws.receive(timeout=10)).data)
            assert hello == {"protocol": "v1.kernel.websocket.jupyter.org"}
            await ws.send_str("hé")
            assert (await ws.receive(timeout=10)).data == "hé"
            big = bytes(range(256)) * 4096
            await ws.send_bytes(big)
            assert (await ws.receive(timeout=10)).data == big
            await ws.ping(b"cli")
            msg = await ws.receive(timeout=10)
            assert msg.type == aiohttp.WSMsgType.PONG and msg.data == b"cli"
            await ws.send_str("ping:srv")
            msg = await ws.receive(timeout=10)
            assert msg.type == aiohttp.WSMsgType.PING and msg.data == b"srv"
            await ws.pong(b"srv")
            assert (await ws.receive(timeout=10)).data == "pong:srv"
            await ws.close(code=4001, message=b"client done")
        # the backend saw the client's close code
        async with s.get(f"http://127.0.0.1:{server.port}{base}user/{V}/last-close", headers=V_AUTH) as r:
            assert (await r.json())["code"] == 4001
        # and the client sees the backend's
        async with s.ws_connect(url + "?token=tok-v") as ws:
            await ws.receive(timeout=10)
            await ws.send_str("close:4002")
            msg = await ws.receive(timeout=10)
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4002
    assert events.activity.count(f"{base}user/{V}/") >= 8


async def test_backend_refusing_connections_is_503_and_reported(aiohttp_server):
    from gateway.wire.httpstrict import server_handler_args

    port = free_port()  # nothing listens there
    events = Events()
    route = Route("/user/u/", f"http://127.0.0.1:{port}", "user", "u", "", None, "s")
    app = make_app(routes=[route], tokens={"t": "u"}, events=events)
    server = await aiohttp_server(app, **server_handler_args())
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{server.port}/user/u/x", headers={"Authorization": "token t"}) as r:
            assert r.status == 503
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await s.ws_connect(f"http://127.0.0.1:{server.port}/user/u/ws?token=t")
        assert info.value.status == 503
    assert events.backend_errors == ["/user/u/", "/user/u/"]
    assert events.activity == []


async def test_ws_to_dead_backend_is_503(aiohttp_server):
    from gateway.wire.httpstrict import server_handler_args

    route = Route("/user/u/", f"http://127.0.0.1:{free_port()}", "user", "u", "", None, "s")
    server = await aiohttp_server(make_app(routes=[route], tokens={"t": "u"}), **server_handler_args())
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            async with s.ws_connect(f"http://127.0.0.1:{server.port}/user/u/ws?token=t"):
                pass
    assert info.value.status == 503


async def test_backend_killed_mid_request(aiohttp_server):
    from gateway.wire.httpstrict import server_handler_args

    port = free_port()
    backend = start_echo_backend(port)
    events = Events()
    route = Route("/user/u/", f"http://127.0.0.1:{port}", "user", "u", "", None, "s")
    server = await aiohttp_server(make_app(routes=[route], tokens={"t": "u"}, events=events, read_timeout=600), **server_handler_args())
    auth = {"Authorization": "token t"}
    base = f"http://127.0.0.1:{server.port}/user/u/"
    try:
        async with aiohttp.ClientSession() as s:
            waiting = asyncio.ensure_future(s.get(base + "sleep?s=600", headers=auth))
            streaming = await s.get(base + "hang-body", headers=auth)
            assert streaming.status == 200
            await asyncio.sleep(0.2)  # both requests are at the backend now
            backend.kill()
            r = await asyncio.wait_for(waiting, 10)  # a bound, not a timing assertion
            assert r.status == 503
            with pytest.raises(aiohttp.ClientPayloadError):
                await asyncio.wait_for(streaming.read(), 10)
            async with s.get(base + "x", headers=auth) as r2:
                assert r2.status == 503
    finally:
        backend.kill()
    assert events.backend_errors.count("/user/u/") == 3


async def test_silent_backend_times_out(aiohttp_server, echo_port):
    from gateway.wire.httpstrict import server_handler_args

    events = Events()
    route = Route("/user/u/", f"http://127.0.0.1:{echo_port}", "user", "u", "", None, "s")
    server = await aiohttp_server(make_app(routes=[route], tokens={"t": "u"}, events=events, read_timeout=0.5), **server_handler_args())
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{server.port}/user/u/sleep?s=30", headers={"Authorization": "token t"}) as r:
            assert r.status == 504
        # a slow but steady download is not a silent backend
        async with s.get(f"http://127.0.0.1:{server.port}/user/u/download?n=1000000", headers={"Authorization": "token t"}) as r:
            assert len(await r.read()) == 1000000
    assert events.backend_errors == ["/user/u/"]


async def test_abandoned_websocket_handshake_releases_the_backend():
    """A client that gives up while the backend still holds its handshake: the backend connection
    is closed at once, not after the read timeout (600 s here). Served as the gateway serves (aiohttp's
    test server cancels handlers of vanished clients, which the gateway's runner does not)."""
    from aiohttp import web

    from gateway.wire.httpstrict import server_handler_args

    received, closed = asyncio.Event(), asyncio.Event()

    async def silent_backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")  # the handshake, never answered
        received.set()
        await reader.read()  # b"" once the gateway closes its side
        closed.set()
        writer.close()

    backend = await asyncio.start_server(silent_backend, "127.0.0.1", 0)
    port = backend.sockets[0].getsockname()[1]
    route = Route("/user/u/", f"http://127.0.0.1:{port}", "user", "u", "", None, "s")
    runner = web.AppRunner(make_app(routes=[route], tokens={"t": "u"}, read_timeout=600), shutdown_timeout=1,
                           **server_handler_args())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", runner.addresses[0][1])
        writer.write(b"GET /user/u/api/kernels/k/channels HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Authorization: token t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        await writer.drain()
        await asyncio.wait_for(received.wait(), 10)
        writer.close()  # the client gives up
        await asyncio.wait_for(closed.wait(), 10)  # a bound, not a timing assertion
    finally:
        backend.close()
        await runner.cleanup()


async def test_keep_alive_connections_are_reused(gateway):
    server, _, base = gateway
    async with aiohttp.ClientSession() as s:
        ports = set()  # the backend's view: the client port of each request's connection
        for _ in range(20):
            async with s.get(f"http://127.0.0.1:{server.port}{base}user/{V}/x", headers=V_AUTH) as r:
                seen = await r.json()
            ports.add(seen["peer_port"])
    assert len(ports) == 1, ports
    forwarder = server.app[FORWARDER]
    assert len(forwarder._pool._all) == 1
