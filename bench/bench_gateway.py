"""The gateway's forwarder as a standalone app, for the benchmark.

What a proxied request costs in the real gateway minus the identity lookup:
the strictness middleware, canonical path + route lookup, a token compared
per request, then :class:`gateway.proxy.ProxyForwarder`.

Usage: ``python bench_gateway.py PORT BACKEND_PORT TOKEN``; with
``GATEWAY_BENCH_UVLOOP=1`` it runs on uvloop (if installed).
"""

import asyncio
import hmac
import os
import sys

from aiohttp import web

from gateway.httpstrict import check_request, server_handler_args
from gateway.proxy import ProxyForwarder
from gateway.routing import BadPath, Route, RouteTable, canonical_target, user_prefix

FORWARDER = web.AppKey("forwarder", ProxyForwarder)
ROUTES = web.AppKey("routes", RouteTable)
TOKEN = web.AppKey("token", str)
MAX_BODY = 512 * 1024 * 1024


async def proxy_handler(request: web.Request) -> web.StreamResponse:
    # the strictness checks run here instead of in a middleware: aiohttp's
    # middleware chain alone costs ~5 us per request (measured)
    problem = check_request(request, MAX_BODY)
    if problem is not None:
        raise problem
    try:
        target = canonical_target(request.raw_path, "/")
    except BadPath:
        raise web.HTTPBadRequest(text="Bad path") from None
    route = request.app[ROUTES].lookup(*target) if target else None
    if route is None:
        raise web.HTTPNotFound()
    if not hmac.compare_digest(request.headers.get("Authorization", ""), request.app[TOKEN]):
        raise web.HTTPForbidden()
    return await request.app[FORWARDER].forward(request, route)


def make_app(backend_port: int, token: str) -> web.Application:
    app = web.Application()
    table = RouteTable()
    table.add(Route(user_prefix("/", "bench"), f"http://127.0.0.1:{backend_port}", "user", "bench", "", None, "backend-secret"))
    app[ROUTES] = table
    app[TOKEN] = "token " + token

    async def forwarder_ctx(app: web.Application):
        app[FORWARDER] = ProxyForwarder(
            gateway_cookie_names=frozenset({"gateway-session"}),
            max_body_size=MAX_BODY,
            connect_timeout=5,
            read_timeout=60,
            on_activity=lambda route: None,
            on_backend_error=lambda route: None,
        )
        yield
        await app[FORWARDER].close()

    app.cleanup_ctx.append(forwarder_ctx)
    app.router.add_route("*", "/user/{tail:.*}", proxy_handler)
    return app


async def main(port: int, backend_port: int, token: str) -> None:
    runner = web.AppRunner(make_app(backend_port, token), access_log=None, **server_handler_args())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    print("ready", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    coro = main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
    if os.environ.get("GATEWAY_BENCH_UVLOOP"):
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)
