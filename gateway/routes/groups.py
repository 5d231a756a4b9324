"""Groups: list, create, read, delete, membership and properties (JupyterHub 6.1.1 ``apihandlers/groups.py``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from gateway import keys
from gateway.auth import current_identity, requires_scope
from gateway.errors import ApiError, json_response
from gateway.routes.apiutil import check_keys, json_body, mount_api, paginated_response, pagination
from gateway.routes.common import shown, string_list
from gateway.store import Conflict
from gateway.vocab.models import Group
from gateway.vocab.names import normalize_username, valid_group_name
from gateway.vocab.serialize import group_model

log = logging.getLogger("gateway.api.groups")
routes = web.RouteTableDef()

# JupyterHub's accepted group-model keys (``_group_model_types``); only ``users`` does anything.
GROUP_KEYS: dict[str, type] = {"name": str, "users": list, "roles": list}


def check_group_body(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, f"Invalid JSON data: {shown(repr(body))}")
    check_keys(body, GROUP_KEYS, "group")
    return body


async def group_models(request: web.Request, groups: Sequence[Group]) -> list[dict[str, Any]]:
    """Models filtered by the caller's scopes, with one query each for members and roles."""
    store = request.config_dict[keys.STORE]
    scope_set = current_identity(request).scopes
    ids = [g.id for g in groups]
    members = await store.group_member_names(ids)
    roles = await store.role_names_of_groups(ids)
    return [group_model(g, fields=scope_set.fields_for_group(g.name), users=members[g.id], roles=roles[g.id])
            for g in groups]


async def group_or_404(request: web.Request) -> Group:
    name = request.match_info["group_name"]
    group = await request.config_dict[keys.STORE].get_group(name)
    if group is None:
        raise ApiError(404, f"No such group: {shown(name)}")
    return group


async def user_ids(request: web.Request, usernames: Any) -> list[int]:
    """Ids of the named (normalised) users; 400 naming the first unknown one."""
    settings = request.config_dict[keys.SETTINGS]
    names = [normalize_username(n, settings) for n in string_list(usernames, "users")]
    found = await request.config_dict[keys.STORE].get_users(names)
    for name in names:
        if name not in found:
            raise ApiError(400, f"No such user: {shown(name)}")
    return list(dict.fromkeys(found[n].id for n in names))


def check_group_name(name: str) -> None:
    if not valid_group_name(name):
        raise ApiError(400, f"Invalid group name: {shown(name)}")


@routes.get("/groups")
@requires_scope("list:groups", post_filter=True)
async def list_groups(request: web.Request) -> web.Response:
    offset, limit, paginated = pagination(request)
    allowed = current_identity(request).scopes.list_filter("list:groups")
    names = None
    if not allowed.all:
        if allowed.kinds - {"group"}:
            raise ApiError(403)  # only !group= filters make sense here
        names = allowed.groups
    groups, total = await request.config_dict[keys.STORE].list_groups(offset=offset, limit=limit, names=names)
    return paginated_response(request, await group_models(request, groups), offset=offset, limit=limit,
                              total=total, paginated=paginated)


@routes.post("/groups")
@requires_scope("admin:groups")
async def create_groups(request: web.Request) -> web.Response:
    body = await json_body(request)
    if not body or not isinstance(body, dict) or not body.get("groups"):
        raise ApiError(400, "Must specify at least one group to create")
    names = string_list(body.pop("groups"), "groups")
    check_group_body(body)
    for name in names:
        check_group_name(name)
    members = await user_ids(request, body.get("users", []))
    try:
        groups = await request.config_dict[keys.STORE].create_groups(list(dict.fromkeys(names)), members)
    except Conflict as e:
        raise ApiError(409, shown(e)) from None
    log.info("Created groups %s with %d users", ", ".join(shown(g.name) for g in groups[:20]), len(members))
    return json_response(await group_models(request, groups), 201)


@routes.get("/groups/{group_name}")
@requires_scope("read:groups", "read:groups:name", "read:roles:groups")
async def get_group(request: web.Request) -> web.Response:
    group = await group_or_404(request)
    return json_response((await group_models(request, [group]))[0])


@routes.post("/groups/{group_name}")
@requires_scope("admin:groups")
async def create_group(request: web.Request) -> web.Response:
    name = request.match_info["group_name"]
    body = await json_body(request)
    body = {} if body is None else check_group_body(body)
    store = request.config_dict[keys.STORE]
    if await store.get_group(name) is not None:
        raise ApiError(409, f"Group {shown(name)} already exists")
    check_group_name(name)
    members = await user_ids(request, body.get("users", []))
    try:
        group = (await store.create_groups([name], members))[0]
    except Conflict:
        raise ApiError(409, f"Group {shown(name)} already exists") from None
    log.info("Created group %s with %d users", shown(name), len(members))
    return json_response((await group_models(request, [group]))[0], 201)


@routes.delete("/groups/{group_name}")
@requires_scope("delete:groups")
async def delete_group(request: web.Request) -> web.Response:
    group = await group_or_404(request)
    await request.config_dict[keys.STORE].delete_group(group.id)
    log.info("Deleted group %s", shown(group.name))
    return web.Response(status=204)


async def change_members(request: web.Request, *, add: bool) -> web.Response:
    group = await group_or_404(request)
    data = check_group_body(await json_body(request))
    if "users" not in data:
        raise ApiError(400, "Must specify users to add" if add else "Must specify users to delete")
    ids = await user_ids(request, data["users"])
    store = request.config_dict[keys.STORE]
    await store.change_group_members(group.id, add=ids if add else (), remove=() if add else ids)
    log.info("%s %d users %s group %s", "Added" if add else "Removed", len(ids), "to" if add else "from",
             shown(group.name))
    return json_response((await group_models(request, [group]))[0])


@routes.post("/groups/{group_name}/users")
@requires_scope("groups")
async def add_members(request: web.Request) -> web.Response:
    return await change_members(request, add=True)


@routes.delete("/groups/{group_name}/users")
@requires_scope("groups")
async def remove_members(request: web.Request) -> web.Response:
    return await change_members(request, add=False)


@routes.put("/groups/{group_name}/properties")
@requires_scope("groups")
async def set_properties(request: web.Request) -> web.Response:
    group = await group_or_404(request)
    data = await json_body(request)
    if not isinstance(data, dict):
        raise ApiError(400, "Must specify properties")
    store = request.config_dict[keys.STORE]
    await store.set_group_properties(group.id, data)
    group = await store.get_group(group.name) or group
    return json_response((await group_models(request, [group]))[0])


def setup(app: web.Application) -> None:
    mount_api(app, routes)
