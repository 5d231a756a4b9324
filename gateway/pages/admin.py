"""/hub/admin: users, their servers and last activity; add/delete users, admin flag, passwords, start/stop.

Server-rendered from the store and the server manager (no API round trips, works without script).
Every action is a small form posted to ``/hub/admin/action`` with the hub XSRF token, checked with
the same scope the equivalent REST call needs (add and admin flag ``admin:users``, delete
``delete:users``, set password ``admin:users``, start ``start:servers``, stop ``delete:servers``),
then redirected back (303) to the same page of the list. Privilege rules: only admins change the
admin flag or another admin's password; nobody deletes or demotes themselves here.
The list is paginated (``?offset=&limit=``), searchable (``?name_filter=``), and cut down to the users
the caller may list (``list:users`` filters).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlencode

from aiohttp import web

from gateway import keys
from gateway.authenticators.builtin import require_fresh_auth, set_user_password
from gateway.errors import ApiError
from gateway.ops.accounts import admit_users, remove_user
from gateway.pages.home import STATUS_LABELS
from gateway.pages.kit import (
    mount_pages,
    page,
    redirect,
    render,
    require_scope,
    server_status,
)
from gateway.servers import SLOW_STOP_TIMEOUT
from gateway.vocab import scopes
from gateway.vocab.models import Server, User
from gateway.vocab.names import normalize_username, validate_username

routes = web.RouteTableDef()

NOTICES = {
    "added": "Added {n} user(s).", "exists": "No new users: they all exist already.", "deleted": "User deleted.",
    "admin-on": "Admin rights granted.", "admin-off": "Admin rights removed.", "password": "Password set; "
    "the user's sessions were ended.", "started": "Server starting.", "stopping": "Server stopping.",
    "stopped": "Server stopped.",
}
MAX_FILTER = 255


@dataclass(frozen=True)
class AdminRow:
    user: User
    servers: list[tuple[Server | None, str, str | None]]  # (record, name, status)


def _page_args(source) -> dict[str, str]:
    """offset/limit/name_filter from a query or form, normalised (never free text into a URL)."""
    args = {}
    for key in ("offset", "limit"):
        value = str(source.get(key, "") or "")
        if value.isdigit():
            args[key] = str(int(value))
    name_filter = str(source.get("name_filter", "") or "")[:MAX_FILTER]
    if name_filter:
        args["name_filter"] = name_filter
    return args


async def _require_admin_ui(request: web.Request) -> None:
    if not request[keys.IDENTITY].scopes.has("admin-ui"):
        raise ApiError(403, scopes.missing_scope_message(("admin-ui",)))


async def _listed_users(request: web.Request, offset: int, limit: int, name_filter: str) -> tuple[list[User], int]:
    store = request.config_dict[keys.STORE]
    allowed = request[keys.IDENTITY].scopes.list_filter("list:users")
    if allowed is None:
        return [], 0
    if allowed.all:
        return await store.list_users(offset=offset, limit=limit, name_filter=name_filter, sort="name")
    group_ids = list((await store.group_ids(allowed.groups)).values())
    return await store.list_users(offset=offset, limit=limit, name_filter=name_filter, sort="name",
                                  names=allowed.users, group_ids=group_ids)


async def _rows(request: web.Request, users: list[User]) -> list[AdminRow]:
    records = await request.config_dict[keys.STORE].servers_of_users([u.id for u in users])
    rows = []
    for user in users:
        by_name = {s.name: s for s in records.get(user.id, [])}
        names = sorted(set(by_name) | {""})
        servers = [(by_name.get(n), n, server_status(request.config_dict, user.name, n)) for n in names]
        rows.append(AdminRow(user, servers))
    return rows


@routes.get("/admin")
@page()
async def admin(request: web.Request) -> web.StreamResponse:
    await _require_admin_ui(request)
    settings = request.config_dict[keys.SETTINGS]
    args = _page_args(request.query)
    offset = int(args.get("offset", 0))
    limit = max(1, min(int(args.get("limit", settings.api_page_default_limit)), settings.api_page_max_limit))
    name_filter = args.get("name_filter", "")
    users, total = await _listed_users(request, offset, limit, name_filter)
    notice = NOTICES.get(request.query.get("done", ""), "")
    count = request.query.get("n", "")
    notice = notice.replace("{n}", count if count.isdigit() else "some")

    def page_url(new_offset: int) -> str:
        return "?" + urlencode({**args, "offset": max(0, new_offset), "limit": limit})

    return render(
        request, "admin.html", nav="admin", rows=await _rows(request, users), total=total, offset=offset,
        limit=limit, name_filter=name_filter, notice=notice, page_args=args, status_labels=STATUS_LABELS,
        prev_url=page_url(offset - limit) if offset > 0 else "",
        next_url=page_url(offset + limit) if offset + limit < total else "",
        manages_passwords=request.config_dict[keys.AUTHENTICATOR].manages_passwords,
        me=request[keys.IDENTITY].user, named_servers=settings.allow_named_servers,
    )


# ---------------------------------------------------------------- actions


async def _user(request: web.Request, form) -> User:
    name = str(form.get("user", ""))
    user = await request.config_dict[keys.STORE].get_user(name)
    if user is None:
        raise ApiError(404, f"No such user: {name}")
    return user


async def _add(request: web.Request, form) -> tuple[str, int]:
    identity, store, settings = request[keys.IDENTITY], request.config_dict[keys.STORE], request.config_dict[keys.SETTINGS]
    await require_scope(request, identity, "admin:users")
    make_admin = form.get("admin") == "on"
    if make_admin and not identity.user.admin:
        raise ApiError(403, "Only admins may create admins.")
    raw_names = [n for n in re.split(r"[\s,]+", str(form.get("usernames", ""))) if n][:1000]
    names = sorted({normalize_username(n, settings) for n in raw_names})
    invalid = [n for n in names if not validate_username(n, settings)]
    if not names or invalid:
        raise ApiError(400, f"Invalid usernames: {', '.join(invalid)}" if invalid else "Give at least one username.")
    created = await store.create_users(names, admin=make_admin, roles=("user", "admin") if make_admin else ("user",))
    await admit_users(store, request.config_dict[keys.AUTHENTICATOR], created)
    password = str(form.get("password", ""))
    if password and request.config_dict[keys.AUTHENTICATOR].manages_passwords:
        for user in created:
            await set_user_password(store, user, password)
    return ("added", len(created)) if created else ("exists", 0)


async def _delete(request: web.Request, form) -> tuple[str, int]:
    identity = request[keys.IDENTITY]
    user = await _user(request, form)
    await require_scope(request, identity, "delete:users", user=user.name)
    if user.id == identity.user.id:
        raise ApiError(400, "You cannot delete yourself.")
    config = request.config_dict
    await remove_user(config[keys.STORE], config[keys.SERVERS], config[keys.AUTHENTICATOR], user)
    return "deleted", 0


async def _set_admin(request: web.Request, form) -> tuple[str, int]:
    identity = request[keys.IDENTITY]
    user = await _user(request, form)
    await require_scope(request, identity, "admin:users", user=user.name)
    make_admin = form.get("admin") == "1"
    if not identity.user.admin:
        raise ApiError(403, "Only admins may change admin rights.")  # CVE-2024-41942
    if user.id == identity.user.id and not make_admin:
        raise ApiError(400, "You cannot remove your own admin rights.")
    await request.config_dict[keys.STORE].update_user(user.id, admin=make_admin)
    return ("admin-on" if make_admin else "admin-off"), 0


async def _password(request: web.Request, form) -> tuple[str, int]:
    identity = request[keys.IDENTITY]
    if not request.config_dict[keys.AUTHENTICATOR].manages_passwords:
        raise ApiError(400, "This gateway's authenticator does not keep passwords.")
    user = await _user(request, form)
    await require_scope(request, identity, "admin:users", user=user.name)
    if user.admin and not identity.user.admin:
        raise ApiError(403, "Only admins may set an admin's password.")
    await set_user_password(request.config_dict[keys.STORE], user, str(form.get("password", "")))
    return "password", 0


async def _server(request: web.Request, form, scope: str):
    user = await _user(request, form)
    server = str(form.get("server", ""))
    await require_scope(request, request[keys.IDENTITY], scope, user=user.name, server=server)
    return request.config_dict[keys.SERVERS], user, server


async def _refreshed(request: web.Request, user: User, *, before: str) -> None:
    await require_fresh_auth(request.config_dict[keys.AUTHENTICATOR], request, request[keys.IDENTITY], user,
                             before=before)


async def _start(request: web.Request, form) -> tuple[str, int]:
    manager, user, server = await _server(request, form, "start:servers")
    await _refreshed(request, user, before="start")
    await manager.start(user, server)
    return "started", 0


async def _stop(request: web.Request, form) -> tuple[str, int]:
    manager, user, server = await _server(request, form, "delete:servers")
    if manager.status(user.name, server) is not None:  # refresh only when a stop will happen
        await _refreshed(request, user, before="stop")
    entry = await manager.stop(user, server)
    if entry is not None:  # as the REST API: wait a little, so the page shows the outcome
        await manager.wait(entry, SLOW_STOP_TIMEOUT)
    return ("stopping" if entry is not None and entry.pending == "stop" else "stopped"), 0


ACTIONS = {"add": _add, "delete": _delete, "set-admin": _set_admin, "password": _password,
           "start": _start, "stop": _stop}


@routes.post("/admin/action")
@page()
async def admin_action(request: web.Request) -> web.StreamResponse:
    await _require_admin_ui(request)
    form = await request.post()
    action = ACTIONS.get(str(form.get("action", "")))
    if action is None:
        raise ApiError(400, "Unknown admin action.")
    done, count = await action(request, form)
    query = {**_page_args(form), "done": done}
    if count:
        query["n"] = str(count)
    return redirect(request.config_dict[keys.SETTINGS].hub_prefix + "admin?" + urlencode(query), 303)


def setup(app: web.Application) -> None:
    mount_pages(app, routes)
