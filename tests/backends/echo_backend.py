"""An echo backend for proxy tests: reflects what it received.

Run as a process: ``python tests/backends/echo_backend.py PORT`` (prints ``ready``).
Every path is answered; the last path segment picks the behaviour:

``.../download?n=N[&chunked=1]``  N bytes of body (``x``), streamed
``.../headers``                   fixed response headers: CSP, several Set-Cookie
                                  (``?cookies=`` selects), a gzip Content-Encoding body
``.../sleep?s=S``                 answer after S seconds
``.../hang-body``                 head and part of a body, then nothing
``.../ws``                        websocket echo: first message is
                                  ``{"protocol": <chosen>}``; ``close:<code>`` closes
                                  with that code; ``ping:<data>`` sends a ping
``.../last-close``                ``{"code": <close code the last ws client sent>}``
anything else                     JSON: method, raw path, query, headers (list of
                                  pairs), body length and sha256 (body read streaming)
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import sys

from aiohttp import WSMsgType, web

STATE = web.AppKey("state", dict)


async def echo(request: web.Request) -> web.StreamResponse:
    digest = hashlib.sha256()
    length = 0
    async for chunk in request.content.iter_chunked(256 * 1024):
        digest.update(chunk)
        length += len(chunk)
    return web.json_response(
        {
            "method": request.method,
            "path": request.raw_path.split("?", 1)[0],
            "raw_path": request.raw_path,
            "query": request.query_string,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body_length": length,
            "body_sha256": digest.hexdigest(),
            "version": f"{request.version.major}.{request.version.minor}",
            "peer_port": request.transport.get_extra_info("peername")[1],  # which backend connection
        }
    )


async def download(request: web.Request) -> web.StreamResponse:
    n = int(request.query.get("n", "0"))
    resp = web.StreamResponse()
    resp.content_type = "application/octet-stream"
    if request.query.get("chunked"):
        resp.enable_chunked_encoding()
    else:
        resp.content_length = n
    await resp.prepare(request)
    block = b"x" * (256 * 1024)
    while n > 0:
        piece = block if n >= len(block) else block[:n]
        await resp.write(piece)
        n -= len(piece)
    await resp.write_eof()
    return resp


async def headers(request: web.Request) -> web.StreamResponse:
    resp = web.Response(body=gzip.compress(b"compressed body"))
    resp.headers["Content-Encoding"] = "gzip"
    resp.headers["Content-Type"] = "text/plain"
    resp.headers["Content-Security-Policy"] = "frame-ancestors 'self'; sandbox allow-scripts"
    resp.headers["X-Backend"] = "echo"
    for value in request.query.getall("cookie", []):
        resp.headers.add("Set-Cookie", value)
    return resp


async def sleep(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(float(request.query.get("s", "1")))
    return web.Response(text="slept")


async def hang_body(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    resp.content_length = 1000
    await resp.prepare(request)
    await resp.write(b"y" * 100)
    await asyncio.sleep(3600)
    return resp


async def ws(request: web.Request) -> web.StreamResponse:
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    chosen = [p for p in offered if p != "unsupported"][:1]
    sock = web.WebSocketResponse(protocols=chosen, autoping=False, max_msg_size=0)
    await sock.prepare(request)
    await sock.send_str(json.dumps({"protocol": sock.ws_protocol}))
    async for msg in sock:
        if msg.type == WSMsgType.TEXT:
            if msg.data.startswith("close:"):
                await sock.close(code=int(msg.data[6:]), message=b"bye")
                break
            if msg.data.startswith("ping:"):
                await sock.ping(msg.data[5:].encode())
                continue
            await sock.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await sock.send_bytes(msg.data)
        elif msg.type == WSMsgType.PING:
            await sock.pong(msg.data)
        elif msg.type == WSMsgType.PONG:
            await sock.send_str("pong:" + msg.data.decode())
    request.app[STATE]["last_close"] = sock.close_code
    return sock


async def last_close(request: web.Request) -> web.StreamResponse:
    return web.json_response({"code": request.app[STATE].get("last_close")})


HANDLERS = {
    "download": download,
    "headers": headers,
    "sleep": sleep,
    "hang-body": hang_body,
    "ws": ws,
    "last-close": last_close,
}


async def dispatch(request: web.Request) -> web.StreamResponse:
    last = request.path.rstrip("/").rsplit("/", 1)[-1]
    return await HANDLERS.get(last, echo)(request)


def make_app() -> web.Application:
    app = web.Application(client_max_size=2**40)
    app[STATE] = {}
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app


async def main(port: int) -> None:
    runner = web.AppRunner(make_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
