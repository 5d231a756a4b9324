"""Users: list, create, read, modify, delete, activity (JupyterHub 6.1.1 ``apihandlers/users.py`` behaviour).

Server start/stop/progress live with the server manager; here a user's server part of the model
comes through :class:`gateway.routes.common.UserModels`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web

from gateway import keys
from gateway.auth import current_identity, requires_scope
from gateway.authenticators.auth_state import save_auth_state
from gateway.errors import ApiError, json_response
from gateway.ops.accounts import admit_users, remove_user
from gateway.routes.apiutil import (
    check_keys,
    json_body,
    mount_api,
    paginated_response,
    pagination,
    parse_timestamp,
    query_flag,
)
from gateway.routes.common import UserModels, empty_response, is_admin, is_self, shown, string_list, user_or_404
from gateway.store import Conflict
from gateway.vocab.names import MAX_NAME_LENGTH, normalize_username, validate_username
from gateway.vocab.serialize import iso

log = logging.getLogger("gateway.api.users")
routes = web.RouteTableDef()

# JupyterHub's accepted user-model keys and their types (``_user_model_types``).
USER_KEYS: dict[str, type] = {"name": str, "admin": bool, "groups": list, "roles": list, "auth_state": dict}
STATES = ("active", "ready", "inactive")
SORTS = ("id", "name", "last_activity")
FUTURE_ACTIVITY_LIMIT = 59 * 60  # seconds: JupyterHub refuses activity from more than ~an hour ahead


def check_user_body(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, f"Invalid JSON data: {shown(repr(body))}")
    check_keys(body, USER_KEYS, "user")
    return body


def ignore_unused(body: dict[str, Any], who: str) -> None:
    # JupyterHub accepts these keys on creation and does nothing with them; so do we, loudly.
    for key in ("groups", "roles", "auth_state", "name"):
        if key in body:
            log.warning("Ignoring %r in a request to create %s", key, shown(who))


def admin_roles(admin: bool) -> tuple[str, ...]:
    return ("user", "admin") if admin else ("user",)


@routes.get("/users")
@requires_scope("list:users", post_filter=True)
async def list_users(request: web.Request) -> web.Response:
    store = request.config_dict[keys.STORE]
    identity = current_identity(request)
    state = request.query.get("state", "")
    if state and state not in STATES:
        raise ApiError(400, f"Unrecognized state filter: {shown(repr(state))}")
    sort = request.query.get("sort", "id")
    if (sort[1:] if sort.startswith("-") else sort) not in SORTS:
        raise ApiError(400, f"sort must be 'id', 'name', or 'last_activity', not '{shown(sort)}'")
    name_filter = request.query.get("name_filter", "")
    offset, limit, paginated = pagination(request)
    allowed = identity.scopes.list_filter("list:users")
    names = group_ids = None
    if not allowed.all:
        if allowed.kinds - {"user", "group"}:
            raise ApiError(403)  # a !server= filter must not widen to every user
        names = allowed.users
        group_ids = (await store.group_ids(allowed.groups)).values()
    if len(name_filter) > MAX_NAME_LENGTH:
        listing, total = [], 0  # no name is that long
    else:
        listing, total = await store.list_users_detailed(
            offset=offset, limit=limit, name_filter=name_filter, sort=sort,
            state=state, names=names, group_ids=group_ids)
    users = [row.user for row in listing]
    builder = UserModels(request, include_stopped=query_flag(request, "include_stopped_servers"))
    models = await builder.build(users, listing=listing)
    # 'ready' (a server with a URL) is filtered in the query, so pages are full and the total is right
    # (JupyterHub cuts 'active' pages down afterwards: short pages, a total that counts pending users).
    items = [m for m in models if m]
    if not paginated and offset == 0 and total > len(users):
        log.warning("Truncated user list in request that does not expect pagination: %d of %d users",
                    len(users), total)
    return paginated_response(request, items, offset=offset, limit=limit, total=total, paginated=paginated)


@routes.post("/users")
@requires_scope("admin:users")
async def create_users(request: web.Request) -> web.Response:
    settings = request.config_dict[keys.SETTINGS]
    store = request.config_dict[keys.STORE]
    body = await json_body(request)
    if not body or not isinstance(body, dict) or not body.get("usernames"):
        raise ApiError(400, "Must specify at least one user to create")
    usernames = string_list(body.pop("usernames"), "usernames")
    check_user_body(body)
    admin = body.get("admin", False)
    if admin and not is_admin(current_identity(request)):
        raise ApiError(403, "Only admins can grant admin permissions")
    ignore_unused(body, "users")
    wanted: list[str] = []
    invalid: list[str] = []
    for raw in usernames:
        name = normalize_username(raw, settings)
        if not validate_username(name, settings):
            invalid.append(shown(name))
        elif name not in wanted:
            wanted.append(name)
    if invalid:
        if len(invalid) == 1:
            raise ApiError(400, f"Invalid username: {invalid[0]}")
        raise ApiError(400, f"Invalid usernames: {', '.join(invalid[:20])}")
    existing = await store.get_users(wanted)
    to_create = [n for n in wanted if n not in existing]
    if not to_create:
        raise ApiError(409, f"All {len(usernames)} users already exist")
    created = await store.create_users(to_create, admin=admin, roles=admin_roles(admin))
    await admit_users(store, request.config_dict[keys.AUTHENTICATOR], created)
    log.info("Created users %s", ", ".join(shown(u.name) for u in created[:20]))
    return json_response(await UserModels(request).build(created), 201)


@routes.get("/users/{user_name}")
@requires_scope("read:users", "read:users:name", "read:servers", "read:users:groups", "read:users:activity",
                "read:roles:users")
async def get_user(request: web.Request) -> web.Response:
    user = await user_or_404(request, request.match_info["user_name"])
    builder = UserModels(request, include_stopped=query_flag(request, "include_stopped_servers"))
    return json_response(await builder.one(user))


@routes.post("/users/{user_name}")
@requires_scope("admin:users")
async def create_user(request: web.Request) -> web.Response:
    name = request.match_info["user_name"]
    settings = request.config_dict[keys.SETTINGS]
    store = request.config_dict[keys.STORE]
    body = await json_body(request)
    if await store.get_user(name) is not None:
        raise ApiError(409, f"User {shown(name)} already exists")
    admin = False
    if body is not None:
        check_user_body(body)  # an array (even an empty one) is a 400 here, unlike JupyterHub's silent pass
        admin = body.get("admin", False)
        if admin and not is_admin(current_identity(request)):
            raise ApiError(403, "Only admins can grant admin permissions")
        ignore_unused(body, name)
    # As JupyterHub, the name in the URL is taken as it is (not normalised), only validated.
    if not validate_username(name, settings):
        raise ApiError(400, f"Failed to create user: {shown(name)}")
    try:
        user = await store.create_user(name, admin=admin, roles=admin_roles(admin))
    except Conflict:
        raise ApiError(409, f"User {shown(name)} already exists") from None
    await admit_users(store, request.config_dict[keys.AUTHENTICATOR], [user])
    log.info("Created user %s", shown(name))
    return json_response(await UserModels(request).one(user), 201)


@routes.patch("/users/{user_name}")
@requires_scope("admin:users")
async def modify_user(request: web.Request) -> web.Response:
    settings = request.config_dict[keys.SETTINGS]
    store = request.config_dict[keys.STORE]
    identity = current_identity(request)
    user = await user_or_404(request, request.match_info["user_name"])
    data = check_user_body(await json_body(request))
    for key in ("groups", "roles"):
        if key in data:
            raise ApiError(400, f"user.{key} cannot be changed here; use the groups API and load_roles")
    crypt = getattr(request.config_dict.get(keys.AUTHENTICATOR), "crypt", None)
    if "auth_state" in data:
        if crypt is None:
            raise ApiError(400, "user.auth_state cannot be set: auth state is not enabled")
        models = UserModels(request)
        if "auth_state" not in models.fields(user, (await store.groups_of_users([user.id]))[user.id]):
            raise ApiError(403, "Action is not authorized with current scopes; requires any of [admin:auth_state]")
    new_name = None
    if "name" in data and data["name"] != user.name:
        new_name = normalize_username(data["name"], settings)
        if not validate_username(new_name, settings):
            raise ApiError(400, f"Invalid username: {shown(new_name)}")
        if await store.get_user(new_name) is not None:
            raise ApiError(400, f"User {shown(new_name)} already exists, username must be unique")
    if not is_admin(identity):
        # CVE-2024-41942: admin:users alone must not lead to admin rights.
        if user.admin:
            raise ApiError(403, "Only admins can modify other admins")
        if data.get("admin"):
            raise ApiError(403, "Only admins can grant admin permissions")
        if new_name is not None and is_self(identity, user):
            raise ApiError(403, "Only admins can rename themselves")
        if new_name is not None and new_name in {normalize_username(n, settings) for n in settings.all_admin_users}:
            raise ApiError(403, "Only admins can grant admin permissions")  # admin_users would make it admin at start
    admin = data.get("admin")
    if new_name is not None or (admin is not None and admin != user.admin):
        try:
            user = await store.update_user(user.id, name=new_name, admin=admin) or user
        except Conflict:
            raise ApiError(400, f"User {shown(new_name)} already exists, username must be unique") from None
        log.info("%s changed user %s: %s", shown(identity.name), shown(request.match_info["user_name"]),
                 ", ".join(f"{k}={shown(repr(v))}" for k, v in data.items()))
    if "auth_state" in data:
        await save_auth_state(store, crypt, user.id, data["auth_state"])
        log.info("%s replaced the auth_state of user %s", shown(identity.name), shown(user.name))
    model = await UserModels(request).one(user)
    if crypt is None:
        model["auth_state"] = None
    return json_response(model)


@routes.delete("/users/{user_name}")
@requires_scope("delete:users")
async def delete_user(request: web.Request) -> web.Response:
    store = request.config_dict[keys.STORE]
    user = await user_or_404(request, request.match_info["user_name"])
    if is_self(current_identity(request), user):
        raise ApiError(400, "Cannot delete yourself!")
    await remove_user(store, request.config_dict[keys.SERVERS], request.config_dict.get(keys.AUTHENTICATOR), user)
    log.info("Deleted user %s", shown(user.name))
    return web.Response(status=204)


# ---------------------------------------------------------------- activity


def activity_time(value: Any, now: float) -> float:
    try:
        ts = parse_timestamp(value)
        iso(ts)  # must be representable when read back
    except (ValueError, TypeError, OverflowError, OSError):
        raise ApiError(400, f"Not a valid timestamp: {shown(repr(value))}") from None
    if ts - now > FUTURE_ACTIVITY_LIMIT:
        raise ApiError(400, f"Rejecting activity from more than an hour in the future: {iso(ts)}")
    return ts


@routes.post("/users/{user_name}/activity")
@requires_scope("users:activity")
async def post_activity(request: web.Request) -> web.Response:
    store = request.config_dict[keys.STORE]
    name = request.match_info["user_name"]
    body = await json_body(request)
    user = await user_or_404(request, name, f"No such user: {shown(repr(name))}")
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a json dict")
    unknown = set(body) - {"last_activity", "servers"}
    if unknown:
        raise ApiError(400, f"Invalid JSON keys: {shown(sorted(unknown))}")
    last_activity, servers = body.get("last_activity"), body.get("servers")
    if not last_activity and not servers:
        raise ApiError(400, "body must contain at least one of `last_activity` or `servers`")
    now = time.time()
    server_times: dict[int, float] = {}
    if servers:
        shape = "servers must be a dict of the form {server_name: {last_activity: timestamp}}"
        if not isinstance(servers, dict):
            raise ApiError(400, shape)
        records = {s.name: s for s in (await store.servers_of_users([user.id]))[user.id]}
        for server_name, info in servers.items():
            if server_name not in records:
                raise ApiError(400, f"No such server '{shown(server_name)}' for user {shown(user.name)}")
            if not isinstance(info, dict) or "last_activity" not in info:
                raise ApiError(400, shape)
            server_times[records[server_name].id] = activity_time(info["last_activity"], now)
    if last_activity:
        await store.touch_users({user.id: activity_time(last_activity, now)})  # only ever moves forward
    await store.touch_servers(server_times)
    return empty_response(200)


@routes.post("/users/{user_name}/admin-access")
@requires_scope("servers")
async def admin_access(request: web.Request) -> web.Response:
    """Deprecated since JupyterHub 0.8; kept for its answers."""
    log.warning("POST /users/{name}/admin-access is deprecated and does nothing")
    if not request.config_dict[keys.SETTINGS].admin_access:
        raise ApiError(403, "admin access to user servers disabled")
    await user_or_404(request, request.match_info["user_name"])
    return empty_response(200)


def setup(app: web.Application) -> None:
    mount_api(app, routes)
