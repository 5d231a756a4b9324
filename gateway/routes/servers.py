"""Servers API: start, create, rename, stop, read and watch a user's default and named servers.

Thin handlers: parse, check scope (decorators), call the ServerManager, answer with JupyterHub's
status codes (201 ready within 10 s / 202 pending; 204 stopped / 202 stopping).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from gateway import keys
from gateway.auth import Handler, current_identity, requires_scope
from gateway.authenticators.builtin import require_fresh_auth
from gateway.config import hub_api_url
from gateway.errors import ApiError, json_response
from gateway.routes.apiutil import json_body, mount_api
from gateway.routes.common import live_server_model
from gateway.servers import (
    NAMED_SERVERS_DISABLED,
    SLOW_SPAWN_TIMEOUT,
    SLOW_STOP_TIMEOUT,
    ServerManager,
    describe,
    encode_event,
    last_ready_event,
)
from gateway.store import Conflict
from gateway.vocab.models import User
from gateway.vocab.names import valid_display_name, valid_server_name

routes = web.RouteTableDef()
# set when the gateway begins stopping: progress streams end then (cleanly, with the stream's
# end), instead of holding the shutdown until the spawn ends or a keepalive finds the reader gone
KEEPALIVE_SECONDS = 8.0
DEFAULT = "/users/{user_name}/server"
NAMED = "/users/{user_name}/servers/{server_name}"
DEFAULT_SLASH = "/users/{user_name}/servers/"


def route_all(method: str, *paths: str) -> Callable[[Handler], Handler]:
    """Register the decorated handler for ``method`` on each of ``paths`` (default and named server URLs)."""

    def register(handler: Handler) -> Handler:
        for path in paths:
            routes.route(method, path)(handler)
        return handler

    return register


def manager(request: web.Request) -> ServerManager:
    return request.config_dict[keys.SERVERS]


def server_name_of(request: web.Request) -> str:
    return request.match_info.get("server_name", "")


async def target_user(request: web.Request) -> User:
    user = await request.config_dict[keys.STORE].get_user(request.match_info["user_name"])
    if user is None:
        raise ApiError(404)
    return user


def server_request_body(body: Any) -> tuple[dict[str, Any] | None, str | None]:
    """JupyterHub's ServerRequest: {display_name?, user_options?}, or (pre-6) the whole body is user_options."""
    if body is None:
        return None, None
    if not isinstance(body, dict):
        raise ApiError(400, "user_options must be an object or null")
    if "display_name" not in body and "user_options" not in body:
        return body, None
    display_name = body.get("display_name")
    if display_name is not None and not isinstance(display_name, str):
        raise ApiError(400, f"display_name must be a string, not {type(display_name).__name__}")
    options = body.get("user_options")
    if options is not None and not isinstance(options, dict):
        raise ApiError(400, "user_options must be an object or null")
    return options, display_name


def empty(status: int) -> web.Response:
    return web.Response(status=status, content_type="text/plain")


@route_all("POST", DEFAULT, DEFAULT_SLASH, NAMED)
@requires_scope("start:servers")
async def start_server(request: web.Request) -> web.Response:
    user = await target_user(request)
    options, display_name = server_request_body(await json_body(request))
    authenticator = request.config_dict.get(keys.AUTHENTICATOR)
    if authenticator is not None:
        await require_fresh_auth(authenticator, request, current_identity(request), user, before="start")
    entry, began = await manager(request).start(user, server_name_of(request), user_options=options,
                                                display_name=display_name)
    if not began:
        return empty(202)
    await manager(request).wait(entry, SLOW_SPAWN_TIMEOUT)
    if entry.ready:
        return empty(201)
    if entry.pending is None and entry.failure:
        raise ApiError(entry.failure_status, entry.failure)
    return empty(202)


@route_all("PUT", NAMED, DEFAULT)
@requires_scope("start:servers")
async def create_server(request: web.Request) -> web.Response:
    user = await target_user(request)
    options, display_name = server_request_body(await json_body(request))
    server = await manager(request).create(user, server_name_of(request), display_name=display_name,
                                           user_options=options)
    return json_response(live_server_model(manager(request), server), 201)


@route_all("PATCH", NAMED, DEFAULT)
@requires_scope("start:servers")
async def edit_server(request: web.Request) -> web.Response:
    user = await target_user(request)
    body = await json_body(request)
    if not body:
        raise ApiError(400, "Must specify at least one field to modify.")
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON dict")
    unknown = set(body) - {"name", "display_name", "user_options"}
    if unknown:
        raise ApiError(400, f"Unknown field(s): {', '.join(sorted(unknown))}")
    name = server_name_of(request)
    mgr = manager(request)
    new_name = body.get("name")
    if new_name is not None and (not isinstance(new_name, str) or not valid_server_name(new_name)):
        raise ApiError(400, f"Invalid server_name: {new_name!r}")
    if (name or new_name is not None) and not request.config_dict[keys.SETTINGS].allow_named_servers:
        raise ApiError(400, NAMED_SERVERS_DISABLED)
    display_name = body.get("display_name")
    if display_name is not None and (not isinstance(display_name, str) or not valid_display_name(display_name)):
        raise ApiError(400, f"Invalid display_name: {display_name!r}")
    options = body.get("user_options")
    if "user_options" in body and not isinstance(options, dict):
        raise ApiError(400, "user_options must be an object")
    store = request.config_dict[keys.STORE]
    server = await store.get_server(user.id, name)
    if server is None:
        raise ApiError(404, f"User {user.name} has no such server {name}")
    if mgr.status(user.name, name) is not None:
        raise ApiError(400, f"{describe(user.name, name)} is active. Please stop it before modifying it.")
    changes: dict[str, Any] = {}
    if new_name is not None and new_name != name:
        if not name:
            raise ApiError(400, "Cannot rename the default server")
        changes["name"] = new_name
    if display_name is not None:
        changes["display_name"] = display_name
    if "user_options" in body:
        changes["user_options"] = options
    try:
        updated = await store.update_server(server.id, **changes)
    except Conflict:
        raise ApiError(409, f"User {user.name} already has server {new_name!r}") from None
    if "name" in changes:
        await mgr.rename(user, name, new_name)
    return json_response(live_server_model(mgr, updated))


@route_all("DELETE", DEFAULT, DEFAULT_SLASH, NAMED)
@requires_scope("delete:servers")
async def stop_server(request: web.Request) -> web.Response:
    user = await target_user(request)
    body = await json_body(request)
    remove = bool(body.get("remove")) if isinstance(body, dict) else False
    name = server_name_of(request)
    manager(request).check_named_allowed(name)
    if not name and remove:
        raise ApiError(400, "Cannot delete the default server")
    store = request.config_dict[keys.STORE]
    if name and await store.get_server(user.id, name) is None:
        raise ApiError(404, f"{user.name} has no server named '{name}'")
    authenticator = request.config_dict.get(keys.AUTHENTICATOR)
    if authenticator is not None and manager(request).status(user.name, name) is not None:  # a stop will happen
        await require_fresh_auth(authenticator, request, current_identity(request), user, before="stop")
    entry = await manager(request).stop(user, name, remove=remove)
    if entry is None:
        return empty(204)
    await manager(request).wait(entry, SLOW_STOP_TIMEOUT)
    return empty(202 if entry.pending == "stop" else 204)


@route_all("GET", DEFAULT, NAMED)
@requires_scope("read:servers")
async def get_server(request: web.Request) -> web.Response:
    user = await target_user(request)
    server = await request.config_dict[keys.STORE].get_server(user.id, server_name_of(request))
    if server is None:
        raise ApiError(404)
    identity = request[keys.IDENTITY]
    state = identity.scopes.has("admin:server_state", user=user.name, server=server.full_name)
    return json_response(live_server_model(manager(request), server, include_state=state))


@route_all("GET", DEFAULT + "/progress", NAMED + "/progress")
@requires_scope("read:servers")
async def progress(request: web.Request) -> web.StreamResponse:
    user = await target_user(request)
    name = server_name_of(request)
    mgr = manager(request)
    entry = mgr.entry(user.name, name)
    # As JupyterHub 6.1.1: a server that is not running nor starting (never started, or stopped) is 404;
    # one that is stopping is "not starting"; a ready one gets its ready event alone, not the history.
    if entry is None or (not entry.pending and not entry.ready and not entry.failure):
        raise ApiError(404)
    if entry.pending != "spawn" and not entry.ready and not entry.failure:
        raise ApiError(400, f"{describe(user.name, name)} is not starting...")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    if entry.pending == "spawn":
        events = mgr.progress(user.name, name)
    elif entry.ready:
        events = _one(last_ready_event(request.config_dict[keys.SETTINGS].base_url, entry))
    else:
        events = _last_failure(entry)
    try:
        await response.write(b"\n\n")
        async with contextlib.aclosing(_with_keepalives(events, request.config_dict[keys.STOPPING])) as stream:
            async for event in stream:
                await response.write(encode_event(event) if event is not None else b"\n\n")
        await response.write_eof()
    except ConnectionResetError:
        pass  # the reader left (the spawn page closes its EventSource once it sees the ready event)
    return response


async def _last_failure(entry) -> AsyncIterator[dict[str, Any]]:
    yield entry.events[-1] if entry.events else {"progress": 100, "failed": True, "message": entry.failure}


async def _one(event: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    yield event


async def _with_keepalives(events: AsyncIterator[dict[str, Any]],
                           stopping: asyncio.Event) -> AsyncIterator[dict[str, Any] | None]:
    """The events, with None between them whenever KEEPALIVE_SECONDS pass without one; ends
    early once ``stopping`` is set."""
    iterator = events.__aiter__()
    next_event = asyncio.ensure_future(iterator.__anext__())
    stop = asyncio.ensure_future(stopping.wait())
    try:
        while True:
            done, _ = await asyncio.wait({next_event, stop}, timeout=KEEPALIVE_SECONDS,
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done:
                yield None
                continue
            if next_event not in done:  # stopping (an event ready at the same time is still sent)
                return
            try:
                event = next_event.result()
            except StopAsyncIteration:
                return
            yield event
            next_event = asyncio.ensure_future(iterator.__anext__())
    finally:
        stop.cancel()
        next_event.cancel()
        with contextlib.suppress(BaseException):
            await next_event


async def servers_context(app: web.Application):
    settings = app[keys.SETTINGS]
    mgr = ServerManager(app[keys.STORE], settings, cipher=app[keys.COOKIE_CIPHER], hub_api_url=hub_api_url(settings),
                        routes=app.get(keys.ROUTES), activity=app.get(keys.ACTIVITY), metrics=app.get(keys.METRICS))
    app[keys.SERVERS] = mgr
    await mgr.recover()
    await mgr.run()
    yield
    await mgr.close()


async def end_progress_streams(app: web.Application) -> None:
    app[keys.STOPPING].set()


def setup(app: web.Application) -> None:
    mount_api(app, routes)
    app[keys.STOPPING] = asyncio.Event()
