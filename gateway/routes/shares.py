"""Shares REST API (JupyterHub 5+ ``apihandlers/shares.py``): grant, list, revoke, and share codes.

- ``/shares/{owner}[/{server}]``: the owner side (``read:shares`` to list, ``shares`` to change);
- ``/users/{name}/shared[/{owner}/{server}]``, ``/groups/{name}/shared[...]``: the recipient side
  (``read:users:shares`` / ``users:shares``, the group equivalents);
- ``/share-codes/{owner}[/{server}]``: codes anyone holding one can exchange at ``/hub/accept-share``.

Every listing answers in the paginated shape (``items`` + ``_pagination``), with or without the
pagination Accept header, as JupyterHub does. Who may share: whoever holds ``shares`` on the server
(plain users do not by default; see :mod:`gateway.identity.shares`).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from aiohttp import web

from gateway import keys
from gateway.auth import current_identity, requires_scope
from gateway.errors import ApiError, json_response
from gateway.identity.shares import (
    CODE_EXPIRES_MAX,
    CODE_EXPIRES_MIN,
    DEFAULT_CODE_EXPIRES_IN,
    Share,
    ShareCode,
    Shares,
    bases_for_request,
)
from gateway.routes.apiutil import json_body, mount_api, paginated_response, pagination
from gateway.routes.common import shown
from gateway.vocab.models import Identity, Server, User
from gateway.vocab.serialize import iso, user_url

routes = web.RouteTableDef()
SERVER = "{server_name:[^/]*}"  # '' is the default server
SHARED = "{owner}/{shared_server:[^/]*}"
CODE_ID = re.compile(r"sc_(\d+)")
MESSAGE_LIMIT = 400


def shares_of(request: web.Request) -> Shares:
    return Shares(request.config_dict[keys.STORE])


# ---------------------------------------------------------------- models


def server_part(request: web.Request, owner: str, server_name: str) -> dict[str, Any]:
    settings = request.config_dict[keys.SETTINGS]
    manager = request.config_dict.get(keys.SERVERS)
    url = user_url(settings.base_url, owner, server_name)
    return {"user": {"name": owner}, "name": server_name, "url": url,
            "full_url": settings.public_url.rstrip("/") + url if settings.public_url else None,
            "ready": manager is not None and manager.status(owner, server_name) == "ready"}


def share_model(request: web.Request, share: Share) -> dict[str, Any]:
    return {"server": server_part(request, share.owner_name, share.server_name), "scopes": share.scopes,
            "user": {"name": share.user_name} if share.user_name is not None else None,
            "group": {"name": share.group_name} if share.group_name is not None else None,
            "kind": share.kind, "created_at": iso(share.created)}


def code_model(request: web.Request, code: ShareCode, plaintext: str | None = None) -> dict[str, Any]:
    model: dict[str, Any] = {
        "server": server_part(request, code.owner_name, code.server_name), "scopes": code.scopes,
        "id": code.api_id, "created_at": iso(code.created), "expires_at": iso(code.expires_at),
        "exchange_count": code.exchange_count, "last_exchanged_at": iso(code.last_exchanged_at)}
    if plaintext is not None:
        settings = request.config_dict[keys.SETTINGS]
        model["code"] = plaintext
        model["accept_url"] = f"{settings.hub_prefix}accept-share?code={plaintext}"
        model["full_accept_url"] = settings.public_url.rstrip("/") + model["accept_url"] if settings.public_url else None
    return model


async def page_of(request: web.Request, fetch: Callable[..., Awaitable[tuple[list, int]]],
                  model: Callable[[web.Request, Any], dict[str, Any]]) -> web.Response:
    """The requested page of a listing, always in the paginated shape: ``fetch(offset=, limit=)`` gives the
    items found and the total, ``model(request, item)`` serialises each."""
    offset, limit, _ = pagination(request)
    found, total = await fetch(offset=offset, limit=limit)
    items = [model(request, item) for item in found]
    return paginated_response(request, items, offset=offset, limit=limit, total=total, paginated=True)


# ---------------------------------------------------------------- lookups


async def owner_or_404(request: web.Request, name: str, message: str | None = None) -> User:
    user = await request.config_dict[keys.STORE].get_user(name)
    if user is None:
        raise ApiError(404, message)
    return user


async def server_or_404(request: web.Request, owner: str, server_name: str) -> Server:
    store = request.config_dict[keys.STORE]
    user = await store.get_user(owner)
    server = await store.get_server(user.id, server_name) if user is not None else None
    if server is None:
        raise ApiError(404, f"No such server: {shown(owner)}/{shown(server_name)}")
    return server


async def may_grant(request: web.Request, identity: Identity, bases: tuple[str, ...], owner: str, server: str) -> None:
    """A share (or code) may only pass on what the caller holds on that server."""
    groups = await request.config_dict[keys.AUTHORIZER].groups_of(owner)
    for base in bases:
        if not identity.scopes.has(base, server=f"{owner}/{server}", user_groups=groups):
            raise ApiError(403, f"Do not have permission to grant share with scope {base}!server={owner}/{server}")


def request_body(data: Any, allowed: set[str]) -> dict[str, Any]:
    """The validation JupyterHub does with pydantic (extra keys forbidden, scopes a list of strings)."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ApiError(400, "Input should be a valid dictionary")
    extra = sorted(set(data) - allowed)
    if extra:
        raise ApiError(400, f"{extra[0]}: Extra inputs are not permitted")
    value = data.get("scopes")
    if value is not None and (not isinstance(value, list) or not all(isinstance(s, str) for s in value)):
        raise ApiError(400, "scopes: Input should be a valid list of strings")
    return data


def recipient_of(body: dict[str, Any]) -> tuple[str, str]:
    user, group = body.get("user"), body.get("group")
    for value in (user, group):
        if value is not None and not isinstance(value, str):
            raise ApiError(400, "Input should be a valid string")
    if user and group:
        raise ApiError(400, "Value error, Expected exactly one of `user` or `group`, not both.")
    if not user and not group:
        raise ApiError(400, "Value error, Specify exactly one of `user` or `group`")
    return ("user", user) if user else ("group", group)


def requested_bases(body: dict[str, Any], owner: str, server_name: str) -> tuple[str, ...]:
    try:
        return bases_for_request(body.get("scopes"), owner, server_name)
    except ValueError as e:  # ScopeNotFound too; the message quotes the scope, so bound it
        message = str(e)
        raise ApiError(400, message if len(message) <= MESSAGE_LIMIT else message[:MESSAGE_LIMIT] + "...") from None


# ---------------------------------------------------------------- owner side


@routes.get("/shares/{user_name}")
@requires_scope("read:shares")
async def list_owner_shares(request: web.Request) -> web.Response:
    owner = await owner_or_404(request, request.match_info["user_name"])
    return await page_of(request, partial(shares_of(request).of_owner, owner.id), share_model)


@routes.get(f"/shares/{{user_name}}/{SERVER}")
@requires_scope("read:shares")
async def list_server_shares(request: web.Request) -> web.Response:
    server = await server_or_404(request, request.match_info["user_name"], request.match_info["server_name"])
    return await page_of(request, partial(shares_of(request).of_server, server.id), share_model)


@routes.post(f"/shares/{{user_name}}/{SERVER}")
@requires_scope("shares")
async def grant_share(request: web.Request) -> web.Response:
    owner, server_name = request.match_info["user_name"], request.match_info["server_name"]
    body = request_body(await json_body(request), {"scopes", "user", "group"})
    kind, name = recipient_of(body)
    bases = requested_bases(body, owner, server_name)
    server = await server_or_404(request, owner, server_name)
    identity = current_identity(request)
    await may_grant(request, identity, bases, owner, server_name)
    store = request.config_dict[keys.STORE]
    if kind == "user":
        if not identity.scopes.has("read:users:name", user=name,
                                   user_groups=await request.config_dict[keys.AUTHORIZER].groups_of(name)):
            raise ApiError(403, "Need scope 'read:users:name' to share with users by name")
        target = await store.get_user(name)
        if target is None:
            raise ApiError(400, f"No such user: {shown(name)}")
        share = await shares_of(request).grant(server.id, bases, user_id=target.id)
    else:
        if not identity.scopes.has("read:groups:name", group=name):
            raise ApiError(403, "Need scope 'read:groups:name' to share with groups by name")
        group = await store.get_group(name)
        if group is None:
            raise ApiError(400, f"No such group: {shown(name)}")
        share = await shares_of(request).grant(server.id, bases, group_id=group.id)
    return json_response(share_model(request, share))


@routes.patch(f"/shares/{{user_name}}/{SERVER}")
@requires_scope("shares")
async def revoke_share(request: web.Request) -> web.Response:
    owner, server_name = request.match_info["user_name"], request.match_info["server_name"]
    body = request_body(await json_body(request), {"scopes", "user", "group"})
    kind, name = recipient_of(body)
    server = await server_or_404(request, owner, server_name)
    store, shares = request.config_dict[keys.STORE], shares_of(request)
    if kind == "user":
        target = await store.get_user(name)
        share = await shares.find(server.id, user_id=target.id) if target else None
    else:
        group = await store.get_group(name)
        share = await shares.find(server.id, group_id=group.id) if group else None
    if share is None:
        return json_response({})  # nothing shared: revoking is a no-op, as JupyterHub
    revoked = body.get("scopes")
    bases = None if not revoked else {s.partition("!")[0] for s in revoked
                                      if s.partition("!")[2] in ("", f"server={owner}/{server_name}")}
    left = await shares.revoke(share, bases)
    return json_response(share_model(request, left) if left is not None else {})


@routes.delete(f"/shares/{{user_name}}/{SERVER}")
@requires_scope("shares")
async def delete_server_shares(request: web.Request) -> web.Response:
    server = await server_or_404(request, request.match_info["user_name"], request.match_info["server_name"])
    await shares_of(request).delete_server_shares(server.id)
    return web.Response(status=204)


# ---------------------------------------------------------------- recipient side


@routes.get("/users/{user_name}/shared")
@requires_scope("read:users:shares")
async def shared_with_user(request: web.Request) -> web.Response:
    name = request.match_info["user_name"]
    user = await owner_or_404(request, name, f"No such user: {shown(name)}")
    return await page_of(request, partial(shares_of(request).shared_with_user, user.id), share_model)


async def group_or_404(request: web.Request):
    name = request.match_info["group_name"]
    group = await request.config_dict[keys.STORE].get_group(name)
    if group is None:
        raise ApiError(404, f"No such group: {shown(name)}")
    return group


async def recipient_share_or_404(request: web.Request, kind: str) -> Share:
    """The share the URL names: to the ``kind`` ('user' or 'group') ``{kind}_name``, on ``owner``/``shared_server``.
    An unknown group is its own 404; an unknown user, owner or server is 'no such share'."""
    name, owner, server_name = (request.match_info[k] for k in (f"{kind}_name", "owner", "shared_server"))
    store = request.config_dict[keys.STORE]
    recipient = await group_or_404(request) if kind == "group" else await store.get_user(name)
    owner_user = await store.get_user(owner)
    server = await store.get_server(owner_user.id, server_name) if owner_user else None
    share = await shares_of(request).find(server.id, **{f"{kind}_id": recipient.id}) if recipient and server else None
    if share is None:
        raise ApiError(404, f"No such share for {kind} {shown(name)} on {shown(owner)}/{shown(server_name)}")
    return share


def add_recipient_share_routes(kind: str) -> None:
    """GET and DELETE ``/{kind}s/{name}/shared/{owner}/{server}``, ``kind`` 'user' or 'group'."""
    path = f"/{kind}s/{{{kind}_name}}/shared/{SHARED}"

    @routes.get(path)
    @requires_scope(f"read:{kind}s:shares")
    async def get_share(request: web.Request) -> web.Response:
        return json_response(share_model(request, await recipient_share_or_404(request, kind)))

    @routes.delete(path)
    @requires_scope(f"{kind}s:shares")
    async def delete_share(request: web.Request) -> web.Response:
        await shares_of(request).revoke(await recipient_share_or_404(request, kind), None)
        return web.Response(status=204)


add_recipient_share_routes("user")


@routes.get("/groups/{group_name}/shared")
@requires_scope("read:groups:shares")
async def shared_with_group(request: web.Request) -> web.Response:
    group = await group_or_404(request)
    return await page_of(request, partial(shares_of(request).shared_with_group, group.id), share_model)


add_recipient_share_routes("group")


# ---------------------------------------------------------------- share codes


@routes.get("/share-codes/{user_name}")
@requires_scope("read:shares")
async def list_owner_codes(request: web.Request) -> web.Response:
    owner = await owner_or_404(request, request.match_info["user_name"])
    return await page_of(request, partial(shares_of(request).codes, owner_id=owner.id), code_model)


@routes.get(f"/share-codes/{{user_name}}/{SERVER}")
@requires_scope("read:shares")
async def list_server_codes(request: web.Request) -> web.Response:
    server = await server_or_404(request, request.match_info["user_name"], request.match_info["server_name"])
    return await page_of(request, partial(shares_of(request).codes, server_id=server.id), code_model)


@routes.post(f"/share-codes/{{user_name}}/{SERVER}")
@requires_scope("shares")
async def create_code(request: web.Request) -> web.Response:
    owner, server_name = request.match_info["user_name"], request.match_info["server_name"]
    body = request_body(await json_body(request), {"scopes", "expires_in"})
    expires_in = body.get("expires_in", DEFAULT_CODE_EXPIRES_IN)
    if isinstance(expires_in, bool) or not isinstance(expires_in, int):
        raise ApiError(400, "expires_in: Input should be a valid integer")
    if not CODE_EXPIRES_MIN <= expires_in <= CODE_EXPIRES_MAX:
        bound = ("greater than or equal to", CODE_EXPIRES_MIN) if expires_in < CODE_EXPIRES_MIN \
            else ("less than or equal to", CODE_EXPIRES_MAX)
        raise ApiError(400, f"expires_in: Input should be {bound[0]} {bound[1]}")
    bases = requested_bases(body, owner, server_name)
    await may_grant(request, current_identity(request), bases, owner, server_name)
    server = await server_or_404(request, owner, server_name)
    code, plaintext = await shares_of(request).new_code(server.id, bases, expires_in)
    return json_response(code_model(request, code, plaintext))


@routes.delete(f"/share-codes/{{user_name}}/{SERVER}")
@requires_scope("shares")
async def delete_codes(request: web.Request) -> web.Response:
    server = await server_or_404(request, request.match_info["user_name"], request.match_info["server_name"])
    shares = shares_of(request)
    code, code_id = request.query.get("code"), request.query.get("id")
    if code:
        found = await shares.find_code(code, server.id)
        if found is None:
            raise ApiError(404, "No matching code found")
        await shares.delete_codes(server.id, found.id)
    elif code_id:
        match = CODE_ID.fullmatch(code_id)
        if match is None or not await shares.delete_codes(server.id, int(match.group(1))):
            raise ApiError(404, f"No code found matching id={shown(code_id)}")
    else:
        await shares.delete_codes(server.id)
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    mount_api(app, routes)
