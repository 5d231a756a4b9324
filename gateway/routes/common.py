"""Helpers shared by the REST resource modules: lookups that 404, privilege tests, and user models in bulk.

Vocabulary
----------
visible fields
    The keys of a model the caller may see on one resource (``Scopes.fields_for_user`` ...);
    an empty set means the resource is hidden from the caller.
server part
    The ``servers``, ``server`` and ``pending`` keys of a user model. They come from the
    server manager (``app[keys.SERVERS]``) when one runs, else from the store's server records
    (a record with a URL is a ready server; there is no pending state without a manager).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from aiohttp import web

from gateway import keys
from gateway.authenticators.auth_state import load_auth_state
from gateway.errors import ApiError
from gateway.servers import ServerManager
from gateway.store import UserListing
from gateway.vocab import scopes
from gateway.vocab.models import Identity, Server, User
from gateway.vocab.serialize import server_model, user_model

log = logging.getLogger("gateway.api")

SHOWN_NAME_LIMIT = 80
SERVER_FIELDS = frozenset({"servers", "server", "pending"})


def shown(text: object) -> str:
    """A name as quoted in messages and logs, cut short: attacker input stays bounded (CVE-2026-54338)."""
    text = str(text)
    return text if len(text) <= SHOWN_NAME_LIMIT else text[:SHOWN_NAME_LIMIT] + "..."


def is_admin(identity: Identity) -> bool:
    """JupyterHub's ``current_user.admin``: the owner's admin flag, whatever the token's scopes."""
    if identity.user is not None:
        return identity.user.admin
    if identity.service is not None:
        return identity.service.admin
    return False


def is_self(identity: Identity, user: User) -> bool:
    return identity.kind == "user" and identity.user is not None and identity.user.id == user.id


async def user_or_404(request: web.Request, name: str, message: str | None = None) -> User:
    user = await request.config_dict[keys.STORE].get_user(name)
    if user is None:
        raise ApiError(404, message)
    return user


def empty_response(status: int = 200) -> web.Response:
    """JupyterHub's bodiless answers (activity, proxy sync, service delete) carry no JSON."""
    return web.Response(status=status, content_type="text/plain")


def string_list(value: Any, what: str) -> list[str]:
    """A JSON list of strings, else 400 naming the field."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(400, f"{what} must be a list of strings")
    return value


# ---------------------------------------------------------------- user models


def constant_fields(scope_set: scopes.Scopes, table: Any) -> frozenset[str] | None:
    """The visible fields when they are the same for every resource (no filtered read scope), else None."""
    fields: set[str] = set()
    for scope, keys_ in table.items():
        held = scope_set.list_filter(scope)
        if held is None:
            continue
        if not held.all:
            return None
        fields |= keys_
    return frozenset(fields)


class UserModels:
    """Builds many user models for one caller: one query per kind of data (groups, roles, servers), or a
    single one for a listing page that ``Store.list_users_detailed`` already joined."""

    def __init__(self, request: web.Request, *, include_stopped: bool = False,
                 extra_fields: frozenset[str] = frozenset()):
        self.app = request.config_dict
        self.store = request.config_dict[keys.STORE]
        self.identity: Identity = request[keys.IDENTITY]
        self.base_url = request.config_dict[keys.SETTINGS].base_url
        self.include_stopped = include_stopped
        self.scopes: scopes.Scopes = self.identity.scopes
        self.extra_fields = extra_fields  # shown on every user whatever the scopes (identify scopes)
        self._user_fields = constant_fields(self.scopes, scopes.USER_FIELDS)
        read_servers = self.scopes.list_filter("read:servers")
        self._all_servers = read_servers is not None and read_servers.all
        state = self.scopes.list_filter("admin:server_state")
        self._all_state = state is not None and state.all

    def fields(self, user: User, groups: Iterable[str]) -> frozenset[str]:
        if self._user_fields is not None:
            return self._user_fields | self.extra_fields
        return self.scopes.fields_for_user(user.name, frozenset(groups)) | self.extra_fields

    async def build(self, users: Sequence[User], *, listing: Sequence[UserListing] | None = None) -> list[dict[str, Any]]:
        """Models in the order given; a user the caller may not see at all gets an empty dict.

        ``listing`` (from ``Store.list_users_detailed``) saves the group, role and server queries.
        """
        if not users:
            return []
        if listing is not None:
            groups = {row.user.id: row.groups for row in listing}
            roles = {row.user.id: row.roles for row in listing}
            with_servers = {row.user.id for row in listing if row.has_servers}
        else:
            ids = [u.id for u in users]
            groups = await self.store.groups_of_users(ids)
        fields = {u.id: self.fields(u, groups[u.id]) for u in users}
        wanted = set().union(*fields.values())
        if listing is None:
            roles = await self.store.role_names_of_users(ids) if "roles" in wanted else {}
            with_servers = None
        # Servers are looked up when the caller may see any: a server-filtered read:servers shows
        # that server even on a user whose own fields do not include 'servers'.
        need_servers = bool(SERVER_FIELDS & wanted) or self.scopes.list_filter("read:servers") is not None
        parts = await self._server_parts(users, groups, fields, with_servers) if need_servers and wanted else {}
        base_url = self.base_url
        models = []
        for user in users:
            visible = fields[user.id]
            if not visible:
                models.append({})
                continue
            part = parts.get(user.id)
            if part is None:
                models.append(user_model(user, fields=visible, base_url=base_url, roles=roles.get(user.id, ()),
                                         groups=groups[user.id]))
                continue
            model = user_model(user, fields=visible, base_url=base_url, roles=roles.get(user.id, ()),
                               groups=groups[user.id], servers=part.get("servers"),
                               default_ready=part.get("default_ready", False),
                               default_pending=part.get("default_pending"))
            if part.get("servers") and "servers" not in model:
                model["servers"] = dict(part["servers"])  # visible servers show even without user-level read:servers
            models.append(model)
        crypt = getattr(self.app.get(keys.AUTHENTICATOR), "crypt", None)
        if crypt is not None and "auth_state" in wanted:  # admin:auth_state: decrypted for those who hold it
            for user, model in zip(users, models):
                if "auth_state" in model:
                    model["auth_state"] = await load_auth_state(self.store, crypt, user.name)
        return models

    async def one(self, user: User) -> dict[str, Any]:
        return (await self.build([user]))[0]

    # ------------------------------------------------------------ server parts

    async def _server_parts(self, users: Sequence[User], groups: dict[int, list[str]],
                            fields: dict[int, frozenset[str]], with_servers: set[int] | None) -> dict[int, dict[str, Any]]:
        shown_users = [u for u in users if fields[u.id]]
        if with_servers is not None:
            shown_users = [u for u in shown_users if u.id in with_servers]  # no records: nothing to show
            if not shown_users:
                return {}
        records = await self.store.servers_of_users([u.id for u in shown_users])
        manager = self.app.get(keys.SERVERS)
        if manager is None:
            return {u.id: self._from_records(records[u.id], frozenset(groups[u.id])) for u in shown_users}
        # The manager keeps a store record for every server it knows (as JupyterHub keeps an orm
        # Spawner), so users without records have nothing to ask it about.
        parts = {}
        for user in shown_users:
            if records[user.id]:
                parts[user.id] = await user_server_models(manager, user, self.identity,
                                                         include_stopped=self.include_stopped)
        return parts

    def _from_records(self, records: list[Server], user_groups: frozenset[str]) -> dict[str, Any]:
        servers = {}
        default_ready = False
        for server in records:
            ready = bool(server.url)
            if server.name == "" and ready:
                default_ready = True
            if not (ready or self.include_stopped):
                continue
            if not (self._all_servers or self.scopes.has("read:servers", server=server.full_name,
                                                         user_groups=user_groups)):
                continue
            state = self._all_state or self.scopes.has("admin:server_state", server=server.full_name,
                                                       user_groups=user_groups)
            servers[server.name] = server_model(server, base_url=self.base_url, pending=None, ready=ready,
                                                include_state=state)
        return {"servers": servers, "default_ready": default_ready, "default_pending": None}


def live_server_model(manager: ServerManager, server: Server, *, include_state: bool = False) -> dict[str, Any]:
    """A server's JSON model with the manager's live status (pending, ready)."""
    entry = manager.entry(server.user_name, server.name)
    pending = entry.pending if entry else None
    ready = bool(entry and entry.ready and not entry.pending)
    return server_model(server, base_url=manager.settings.base_url, pending=pending, ready=ready,
                        include_state=include_state)


async def user_server_models(manager: ServerManager, user: User, identity: Identity, include_stopped: bool = False,
                             servers: list[Server] | None = None) -> dict[str, Any]:
    """The server parts of a user model, filtered by what ``identity`` may read."""
    if servers is None:
        servers = await manager.list_servers(user)
    models = {}
    for server in servers:
        active = manager.status(user.name, server.name) is not None
        if not active and not include_stopped:
            continue
        check = dict(user=user.name, server=server.full_name, user_groups=identity.groups if identity.user and
                     identity.user.id == user.id else frozenset())
        if identity.scopes is None or not identity.scopes.has("read:servers", **check):
            continue
        state = identity.scopes.has("admin:server_state", **check)
        models[server.name] = live_server_model(manager, server, include_state=state)
    status = manager.status(user.name, "")
    return {"servers": models, "default_ready": status == "ready", "default_pending": status
            if status in ("spawn", "stop") else None}
