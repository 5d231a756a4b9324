"""The hub itself: shutdown, and the routing table in configurable-http-proxy's shape (``/proxy``).

The gateway is its own proxy, so ``GET /proxy`` reads the in-process route table
(``app[keys.ROUTES]``) and adds the hub's default route; ``POST``/``PATCH /proxy`` re-sync the
routes with the servers the manager knows (there is no separate proxy to point at).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import ChainMapProxy, web

from gateway import JUPYTERHUB_API_VERSION, keys
from gateway.auth import requires_scope
from gateway.errors import API_CSP, ApiError, json_response
from gateway.routes.apiutil import json_body, mount_api, paginated_response, pagination
from gateway.routes.common import empty_response, shown

log = logging.getLogger("gateway.api.hub")
routes = web.RouteTableDef()



@routes.post("/shutdown")
@requires_scope("shutdown")
async def shutdown(request: web.Request) -> web.StreamResponse:
    settings = request.config_dict[keys.SETTINGS]
    data = await json_body(request)
    servers = settings.cleanup_servers
    if data is not None:
        if not isinstance(data, dict):
            raise ApiError(400, "Request body must be a JSON dict")
        unknown = set(data) - {"servers", "proxy"}
        if unknown:
            raise ApiError(400, f"Invalid JSON keys: {shown(sorted(unknown))}")
        for key in ("proxy", "servers"):  # proxy: accepted for compatibility; the gateway is its own proxy
            if key in data and not isinstance(data[key], bool):
                raise ApiError(400, f"{key} must be true or false, got {shown(repr(data[key]))}")
        servers = data.get("servers", servers)
    response = json_response({"message": "Shutting down Hub"}, 202)
    # Sent here rather than by the error middleware, which leaves prepared responses alone.
    response.headers["X-JupyterHub-Version"] = JUPYTERHUB_API_VERSION
    response.headers["Content-Security-Policy"] = API_CSP
    await response.prepare(request)
    await response.write_eof()  # the answer is out before anything stops
    log.info("Shutdown requested through the API (servers=%s)", servers)
    tasks = request.config_dict[keys.SHUTDOWN_TASKS]  # holds a reference until the task has run
    task = asyncio.create_task(_shut_down(request.config_dict, servers), name="api-shutdown")
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return response


async def _shut_down(app: ChainMapProxy, servers: bool) -> None:
    manager = app.get(keys.SERVERS)
    if servers and manager is not None:
        try:
            await manager.stop_all_servers()
        except Exception:
            log.exception("Stopping servers before shutdown failed")
    stop = app.get(keys.SHUTDOWN)
    if stop is None:
        log.warning("Shutdown requested, but this gateway was started without a way to stop it")
        return
    stop()


# ---------------------------------------------------------------- routing table


def hub_target(request: web.Request) -> str:
    """Where the hub listens: the socket this request came in on (never the client's Host header)."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if sockname:
        host, port = sockname[0], sockname[1]
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    settings = request.config_dict[keys.SETTINGS]
    return f"http://{settings.listen_host or '127.0.0.1'}:{settings.listen_port}"


def routing_table(request: web.Request) -> dict[str, dict[str, Any]]:
    base_url = request.config_dict[keys.SETTINGS].base_url
    table: dict[str, dict[str, Any]] = {
        base_url: {"routespec": base_url, "target": hub_target(request), "data": {"hub": True}},
    }
    route_table = request.config_dict.get(keys.ROUTES)
    for route in route_table.all() if route_table is not None else ():
        if route.kind == "service" or getattr(route, "service", None):
            data: dict[str, Any] = {"service": route.service}
        else:
            data = {"user": route.user, "server_name": route.server_name}
        table[route.prefix] = {"routespec": route.prefix, "target": route.target, "data": data}
    return table


@routes.get("/proxy")
@requires_scope("proxy")
async def get_routes(request: web.Request) -> web.Response:
    offset, limit, paginated = pagination(request)
    table = routing_table(request)
    page = {key: table[key] for key in sorted(table)[offset:offset + limit]}
    return paginated_response(request, page, offset=offset, limit=limit, total=len(table), paginated=paginated)


async def _resync(request: web.Request) -> None:
    manager = request.config_dict.get(keys.SERVERS)
    if manager is not None:
        await manager.check_routes()


@routes.post("/proxy")
@requires_scope("proxy")
async def sync_routes(request: web.Request) -> web.Response:
    await _resync(request)
    return empty_response(200)


@routes.patch("/proxy")
@requires_scope("proxy")
async def new_proxy(request: web.Request) -> web.Response:
    """JupyterHub points itself at a new proxy here; the gateway is its own proxy, so it only re-syncs."""
    try:
        model = await json_body(request)
    except ApiError as e:
        if e.status != 400:
            raise
        raise ApiError(400, "Request body must be JSON dict") from None
    if model is None:
        raise ApiError(400, "need JSON body")
    if not isinstance(model, dict):
        raise ApiError(400, "Request body must be JSON dict")
    log.info("PATCH /proxy with keys %s: nothing to point at, re-syncing routes", shown(sorted(model)))
    await _resync(request)
    return empty_response(200)


def setup(app: web.Application) -> None:
    app[keys.SHUTDOWN_TASKS] = set()
    mount_api(app, routes)
