"""HTTP framing, smuggling and limits over raw sockets (security-cases H1-H8).

Each case notes whether aiohttp 3.14's parser already refuses it or whether
gateway.httpstrict does.
"""

from __future__ import annotations

import asyncio
import re
import socket

import pytest

from gateway.wire.httpstrict import server_handler_args
from tests.helpers.proxy_harness import make_app
from tests.helpers.wire import SECRETS, TOKENS, VICTIM, raw_exchange, status_of, user_routes

V = VICTIM
GOOD = f"GET /user/{V}/api/status HTTP/1.1\r\nHost: h\r\nAuthorization: token tok-v\r\nConnection: close\r\n\r\n".encode()


@pytest.fixture
async def gw(aiohttp_server, echo_port):
    app = make_app(routes=user_routes("/", echo_port), tokens=TOKENS, max_body_size=1024**3)
    return await aiohttp_server(app, **server_handler_args(keepalive_timeout=1.0))


async def still_serves(port: int) -> None:
    assert status_of(await raw_exchange(port, GOOD)) == 200


def post(headers: str, body: bytes = b"") -> bytes:
    return f"POST /user/{V}/x HTTP/1.1\r\nHost: h\r\nAuthorization: token tok-v\r\n{headers}\r\n".encode() + body


SMUGGLED = f"GET /user/{V}/smuggled HTTP/1.1\r\nHost: h\r\nAuthorization: token tok-v\r\n\r\n".encode()

FRAMING = {
    # H1 (aiohttp)
    "CL+TE smuggling": (post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n" + SMUGGLED), {400}),
    # H2 (aiohttp)
    "duplicate CL": (post("Content-Length: 2\r\nContent-Length: 5\r\n", b"abcde"), {400}),
    "equal duplicate CL": (post("Content-Length: 2\r\nContent-Length: 2\r\n", b"ab"), {400}),
    "CL list": (post("Content-Length: 2, 5\r\n", b"abcde"), {400}),
    "TE chunked, identity": (post("Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\n"), {400}),
    "TE xchunked": (post("Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"), {400}),
    "TE space before colon": (post("Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"), {400}),
    "two TE headers": (post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"), {400}),
    "CL -1": (post("Content-Length: -1\r\n"), {400}),
    "CL +2": (post("Content-Length: +2\r\n", b"ab"), {400}),
    "CL 0x2": (post("Content-Length: 0x2\r\n", b"ab"), {400}),
    # gateway.wire.httpstrict: aiohttp accepts it and would pass gzip bytes on as identity
    "TE gzip, chunked": (post("Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"), {501}),
    # H3 (aiohttp)
    "chunk size zz": (post("Transfer-Encoding: chunked\r\n", b"zz\r\nab\r\n0\r\n\r\n"), {400}),
    "chunk without CRLF": (post("Transfer-Encoding: chunked\r\n", b"2\r\nabXX0\r\n\r\n"), {400}),
    # H4 (aiohttp for a missing Host, gateway.httpstrict for an empty one)
    "no Host": (b"GET /user/x/ HTTP/1.1\r\n\r\n", {400}),
    "empty Host": (b"GET /user/x/ HTTP/1.1\r\nHost:\r\n\r\n", {400}),
    "two Hosts": (b"GET /user/x/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", {400}),
    # obs-fold, bare LF, control characters (aiohttp)
    "obs-fold": (b"GET /user/x/ HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", {400}),
    "bare LF": (b"GET /user/x/ HTTP/1.1\nHost: a\n\n", {400}),
    "CR in value": (b"GET /user/x/ HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", {400}),
    "NUL in target": (b"GET /user/a\x00b HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    # H5: limits (431/414 from gateway.httpstrict, 400 for lines over the parser caps)
    "one 100 KB header": (b"GET /user/x/ HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n", {400, 431}),
    "1000 small headers": (b"GET /user/x/ HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"a" * 90) for i in range(1000)) + b"\r\n", {400, 431}),
    "24 KB header block": (b"GET /user/x/ HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"a" * 190) for i in range(120)) + b"\r\n", {431}),
    "100 KB URL": (b"GET /user/" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", {400, 414}),
    "9 KB URL": (b"GET /user/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", {414}),
    # H8 (gateway.httpstrict) / authority-form (aiohttp)
    "CONNECT": (b"CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n", {405}),
    "authority-form GET": (b"GET 127.0.0.1:1 HTTP/1.1\r\nHost: h\r\n\r\n", {400}),
}


@pytest.mark.parametrize("case", FRAMING)
async def test_framing_and_limits(gw, case):
    raw, expected = FRAMING[case]
    response = await raw_exchange(gw.port, raw, responses=None, limit=10)
    assert status_of(response) in expected, response[:200]
    # one answer only: a smuggled request is never answered
    assert len(re.findall(rb"(?:^|\r\n)HTTP/1\.[01] \d{3} ", response)) == 1
    assert SECRETS[V].encode() not in response
    await still_serves(gw.port)


async def test_limits_just_below_are_served(gw):
    url = f"/user/{V}/" + "a" * 8000
    response = await raw_exchange(gw.port, f"GET {url} HTTP/1.1\r\nHost: h\r\nAuthorization: token tok-v\r\nConnection: close\r\n\r\n".encode())
    assert status_of(response) == 200
    headers = "".join(f"X-H{i}: {'a' * 100}\r\n" for i in range(100))  # ~11 KB
    response = await raw_exchange(gw.port, f"GET /user/{V}/ HTTP/1.1\r\nHost: h\r\nAuthorization: token tok-v\r\n{headers}Connection: close\r\n\r\n".encode())
    assert status_of(response) == 200


async def test_declared_huge_bodies_refused_without_reading(aiohttp_server, echo_port):
    """H6: only the head is sent; the answer must not wait for the body."""
    app = make_app(routes=user_routes("/", echo_port), tokens=TOKENS, max_body_size=512 * 1024 * 1024)
    server = await aiohttp_server(app, **server_handler_args())
    for path, size in ((f"/user/{V}/api/contents/huge.txt", 2 * 1024**3), ("/hub/api/users/x/tokens", 200 * 1024**2)):
        response = await raw_exchange(
            server.port,
            f"PUT {path} HTTP/1.1\r\nHost: h\r\nAuthorization: token tok-v\r\nContent-Length: {size}\r\n\r\n".encode(),
            limit=10,
        )
        assert status_of(response) == 413
    await still_serves(server.port)


@pytest.fixture
def listener():
    """A loopback listener that must never be connected to (SSRF probe)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    yield sock
    sock.close()


def was_contacted(sock: socket.socket) -> bool:
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


async def test_absolute_form_routes_by_path_only(gw, listener):
    """H7: never a forward proxy."""
    port = listener.getsockname()[1]
    for target in (f"http://127.0.0.1:{port}/probe", f"http://127.0.0.1:{port}/user/{V}/x"):
        response = await raw_exchange(
            gw.port,
            f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: token tok-v\r\nConnection: close\r\n\r\n".encode(),
        )
        assert status_of(response) in (200, 404)
    await asyncio.sleep(0.1)
    assert not was_contacted(listener)
    # the routed one reached the backend with the origin-form path
    assert b'"raw_path": "/user/sxxxxv/x"' in response


async def test_connect_is_refused(gw, listener):
    """H8."""
    port = listener.getsockname()[1]
    response = await raw_exchange(gw.port, f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode(), responses=None)
    assert status_of(response) == 405
    await asyncio.sleep(0.1)
    assert not was_contacted(listener)


async def test_idle_and_half_sent_connections_are_closed(gw):
    """keepalive_timeout (1 s here) also bounds a request head that never ends."""
    for data in (b"", b"GET /user/x/ HTTP/1.1\r\nHost: h\r\nX-Slow: "):
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(data)
        try:
            async with asyncio.timeout(20):  # bound; the server closes after ~1 s
                assert await reader.read() == b""
        finally:
            writer.close()


def test_handler_args_are_accepted_by_aiohttp():
    """aiohttp silently falls back to defaults when a handler argument is unknown."""
    import inspect

    from aiohttp.web_protocol import RequestHandler

    params = inspect.signature(RequestHandler.__init__).parameters
    assert set(server_handler_args()) <= set(params)
