"""Rows to models, and the pieces of SQL the store modules share. No I/O here."""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Iterable
from typing import Any, NamedTuple, TypedDict

from gateway.vocab.models import Group, Role, Server, Service, Token, User


class UserListing(NamedTuple):
    """One row of a user listing: the user, its group and role names, and whether it has server records.
    (A NamedTuple rather than a frozen dataclass: listings build thousands of these per second.)"""

    user: User
    groups: tuple[str, ...]
    roles: tuple[str, ...]
    has_servers: bool


class StoreError(Exception):
    """A write the database refused (read-only file, disk full ...); the message says which."""


class Conflict(Exception):
    """A unique name is already taken."""


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _user(row: sqlite3.Row) -> User:
    info = row["user_info"]
    return User(
        id=row["id"],
        name=row["name"],
        admin=bool(row["admin"]),
        created=row["created"],
        last_activity=row["last_activity"],
        user_info=json.loads(info) if info else None,
    )


def _group(row: sqlite3.Row) -> Group:
    return Group(id=row["id"], name=row["name"], properties=json.loads(row["properties"]))


def _role(row: sqlite3.Row) -> Role:
    return Role(id=row["id"], name=row["name"], description=row["description"], scopes=tuple(json.loads(row["scopes"])))


def _service(row: sqlite3.Row) -> Service:
    return Service(
        id=row["id"],
        name=row["name"],
        admin=bool(row["admin"]),
        url=row["url"],
        info=json.loads(row["info"]),
        display=bool(row["display"]),
        from_config=bool(row["from_config"]),
        oauth_client_id=row["oauth_client_id"],
        oauth_redirect_uri=row["oauth_redirect_uri"],
        oauth_no_confirm=bool(row["oauth_no_confirm"]),
        oauth_client_allowed_scopes=tuple(json.loads(row["oauth_client_allowed_scopes"])),
        command=tuple(json.loads(row["command"])),
        pid=row["pid"],
    )


def _server(row: sqlite3.Row) -> Server:
    options = row["user_options"]
    return Server(
        id=row["id"],
        user_id=row["user_id"],
        user_name=row["user_name"],
        name=row["name"],
        display_name=row["display_name"],
        url=row["url"],
        state=json.loads(row["state"]),
        started=row["started"],
        last_activity=row["last_activity"],
        user_options=json.loads(options) if options else None,
        created=row["created"],
    )


def _token(row: sqlite3.Row) -> Token:
    return Token(
        id=row["id"],
        prefix=row["prefix"],
        owner_kind="user" if row["user_id"] is not None else "service",
        owner_id=row["user_id"] if row["user_id"] is not None else row["service_id"],
        owner_name=row["owner_name"],
        note=row["note"],
        scopes=tuple(json.loads(row["scopes"])),
        created=row["created"],
        last_activity=row["last_activity"],
        expires_at=row["expires_at"],
        session_id=row["session_id"],
        client_id=row["client_id"],
        server_id=row["server_id"],
    )


TOKEN_SELECT = """
    SELECT tokens.*, COALESCE(users.name, services.name) AS owner_name
    FROM tokens LEFT JOIN users ON users.id = tokens.user_id
    LEFT JOIN services ON services.id = tokens.service_id
"""
SERVER_SELECT = "SELECT servers.*, users.name AS user_name FROM servers JOIN users ON users.id = servers.user_id"

USER_SORTS = {"id": "users.id", "name": "users.name", "last_activity": "users.last_activity"}


@functools.lru_cache(maxsize=4096)
def _names(json_array: str) -> tuple[str, ...]:
    """A JSON array of names, decoded once per distinct value (most users share a few role/group sets)."""
    return tuple(json.loads(json_array))


class UserFilters(TypedDict, total=False):
    """The filters of a user listing (``Store.list_users``, ``Store.list_users_detailed``); see ``_user_query``."""

    name_filter: str
    sort: str
    state: str
    names: Iterable[str] | None
    group_ids: Iterable[int] | None


def _user_query(name_filter: str = "", state: str = "", names: Iterable[str] | None = None,
                group_ids: Iterable[int] | None = None, sort: str = "id") -> tuple[str, list[Any], str]:
    """WHERE clause, its parameters and ORDER BY terms of a user listing. ``name_filter``: part of the name;
    ``state``: '' | 'active' | 'ready' | 'inactive' (by server records); ``names``/``group_ids`` restrict to
    listed users or members (for post-filtered scopes); ``sort``: a ``USER_SORTS`` key, '-' first for descending."""
    where: list[str] = []
    params: list[Any] = []
    if name_filter:
        where.append("users.name LIKE ? ESCAPE '\\'")
        escaped = name_filter.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params.append(f"%{escaped}%")
    if state == "active":
        where.append("EXISTS (SELECT 1 FROM servers WHERE servers.user_id = users.id AND (servers.url != '' OR servers.started IS NOT NULL))")
    elif state == "inactive":
        where.append("NOT EXISTS (SELECT 1 FROM servers WHERE servers.user_id = users.id AND (servers.url != '' OR servers.started IS NOT NULL))")
    elif state == "ready":
        where.append("EXISTS (SELECT 1 FROM servers WHERE servers.user_id = users.id AND servers.url != '')")
    if names is not None or group_ids is not None:
        alternatives = []
        names, group_ids = list(names or ()), list(group_ids or ())
        if names:
            alternatives.append(f"users.name IN ({','.join('?' * len(names))})")
            params.extend(names)
        if group_ids:
            alternatives.append(
                f"users.id IN (SELECT user_id FROM group_members WHERE group_id IN ({','.join('?' * len(group_ids))}))")
            params.extend(group_ids)
        where.append("(" + " OR ".join(alternatives) + ")" if alternatives else "0")
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    descending = sort.startswith("-")
    column = USER_SORTS[sort.lstrip("-")]
    # JupyterHub: ascending puts NULLs first, descending puts them last.
    order = f"{column} DESC NULLS LAST" if descending else f"{column} ASC NULLS FIRST"
    return clause, params, order


def _limit_offset(offset: int, limit: int | None) -> str:
    """The LIMIT/OFFSET part of a listing (no limit: -1)."""
    return f" LIMIT {int(limit) if limit is not None else -1} OFFSET {int(offset)}"
