"""A small gateway for proxy tests: ProxyForwarder behind a static RouteTable
and a stand-in authorization (a fixed token per user, or none).

The real identity and scope checks are wired elsewhere; what matters here is
that route choice and the ownership check use the same canonical target, as
they must in the real gateway.

Run as a process (for memory measurements): ``python -m tests.helpers.proxy_harness
PORT BACKEND_PORT`` serves ``/user/big/`` to the backend, token ``tok-big``.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field

from aiohttp import web

from gateway.wire.forward import ProxyForwarder
from gateway.wire.httpstrict import (
    make_expect_handler,
    make_strict_middleware,
    server_handler_args,
)
from gateway.wire.routing import BadPath, Route, RouteTable, canonical_target

GATEWAY_COOKIES = frozenset({"gateway-session", "gateway-xsrf"})
HUB_BODY_LIMIT = 1024 * 1024


@dataclass
class Events:
    """What the forwarder reported through its hooks."""

    activity: list[str] = field(default_factory=list)
    backend_errors: list[str] = field(default_factory=list)


ROUTES = web.AppKey("routes", RouteTable)
FORWARDER = web.AppKey("forwarder", ProxyForwarder)
TOKENS = web.AppKey("tokens", dict)
BASE_URL = web.AppKey("base_url", str)
EVENTS = web.AppKey("events", Events)


def _caller(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    token = auth[6:] if auth.startswith("token ") else None
    if token is None and request.headers.get("Upgrade", "").lower() == "websocket":
        token = request.query.get("token")  # accepted for upgrades only
    return request.app[TOKENS].get(token) if token else None


async def proxy_handler(request: web.Request) -> web.StreamResponse:
    try:
        target = canonical_target(request.raw_path, request.app[BASE_URL])
    except BadPath as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    if target is None:
        raise web.HTTPNotFound(text="not a proxied path")
    route = request.app[ROUTES].lookup(*target)
    if route is None:
        raise web.HTTPNotFound(text="no such server")
    user = _caller(request)
    if user is None:
        raise web.HTTPForbidden(text="missing or invalid credentials")
    if route.kind == "user" and route.user != user:
        raise web.HTTPForbidden(text="not yours")
    return await request.app[FORWARDER].forward(request, route)


def make_app(
    *,
    routes: list[Route],
    tokens: dict[str, str],
    base_url: str = "/",
    events: Events | None = None,
    max_body_size: int = 64 * 1024 * 1024,
    connect_timeout: float = 5.0,
    read_timeout: float = 30.0,
) -> web.Application:
    events = events if events is not None else Events()
    table = RouteTable()
    for route in routes:
        table.add(route)

    def body_limit(request: web.Request) -> int:
        return max_body_size if canonical_target_or_none(request, base_url) else HUB_BODY_LIMIT

    app = web.Application(middlewares=[make_strict_middleware(body_limit)])
    app[ROUTES] = table
    app[TOKENS] = tokens
    app[BASE_URL] = base_url
    app[EVENTS] = events

    async def forwarder_ctx(app: web.Application):
        app[FORWARDER] = ProxyForwarder(
            gateway_cookie_names=GATEWAY_COOKIES,
            max_body_size=max_body_size,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            on_activity=lambda route: events.activity.append(route.prefix),
            on_backend_error=lambda route: events.backend_errors.append(route.prefix),
        )
        yield
        await app[FORWARDER].close()

    app.cleanup_ctx.append(forwarder_ctx)
    app.router.add_route("*", "/{tail:.*}", proxy_handler, expect_handler=make_expect_handler(body_limit))
    return app


def canonical_target_or_none(request: web.Request, base_url: str) -> tuple[str, str, str] | None:
    try:
        return canonical_target(request.raw_path, base_url)
    except BadPath:
        return None


async def _main(port: int, backend_port: int) -> None:
    route = Route("/user/big/", f"http://127.0.0.1:{backend_port}", "user", "big", "", None, "secret-big")
    app = make_app(routes=[route], tokens={"tok-big": "big"}, max_body_size=2**40)
    runner = web.AppRunner(app, access_log=None, **server_handler_args())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1]), int(sys.argv[2])))
