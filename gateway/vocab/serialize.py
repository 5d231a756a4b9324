"""JSON models in JupyterHub's shapes, filtered field by field by the caller's scopes.

Each ``*_model`` function takes the record(s) it needs, already loaded (no I/O here), and the
set of visible keys that ``Scopes.fields_for_*`` computed for that resource.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from gateway.vocab.models import Group, Server, Service, Token, User


def iso(ts: float | None) -> str | None:
    """JupyterHub's timestamp format: naive UTC ISO-8601 with a 'Z'."""
    if ts is None:
        return None
    return _iso(ts)


@functools.lru_cache(maxsize=1 << 16)
def _iso(ts: float) -> str:
    # Cached: listings format the same creation and activity times over and over.
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).replace(tzinfo=None).isoformat() + "Z"


ALL_USER_FIELDS = frozenset(
    {"kind", "name", "admin", "roles", "groups", "server", "pending", "created", "last_activity",
     "user_info", "servers", "auth_state"}
)


def url_path_escape(name: str) -> str:
    return quote(name, safe="@~")


def user_url(base_url: str, user_name: str, server_name: str = "") -> str:
    url = f"{base_url}user/{url_path_escape(user_name)}/"
    return url + f"{url_path_escape(server_name)}/" if server_name else url


SERVER_API_SEGMENT = "_server"  # see gateway.identity.server_view


def server_api_url(hub_api_url: str, server_id: int) -> str:
    """The JUPYTERHUB_API_URL a server is given: its own view of the hub API."""
    return f"{hub_api_url.rstrip('/')}/{SERVER_API_SEGMENT}/{server_id}"


def progress_url(base_url: str, user_name: str, server_name: str = "") -> str:
    user = url_path_escape(user_name)
    if server_name:
        return f"{base_url}hub/api/users/{user}/servers/{url_path_escape(server_name)}/progress"
    return f"{base_url}hub/api/users/{user}/server/progress"


def server_model(server: Server, *, base_url: str, pending: str | None, ready: bool,
                 include_state: bool = False) -> dict[str, Any]:
    active = ready or pending is not None
    model: dict[str, Any] = {
        "name": server.name,
        "display_name": server.display_name or server.name,
        "full_name": server.full_name,
        "last_activity": iso(server.last_activity),
        "started": iso(server.started) if active else None,
        "pending": pending,
        "ready": ready,
        "stopped": not active,
        "url": user_url(base_url, server.user_name, server.name),
        "user_options": dict(server.user_options) if server.user_options is not None else None,
        "progress_url": progress_url(base_url, server.user_name, server.name),
        "full_url": None,
        "full_progress_url": None,
    }
    if include_state:
        # the spawner's state only: the server's (encrypted) secret stays out of every answer
        model["state"] = dict(server.state.get("spawner", {}))
    return model


def user_model(
    user: User,
    *,
    fields: frozenset[str],
    base_url: str,
    roles: Sequence[str] = (),
    groups: Sequence[str] = (),
    servers: Mapping[str, dict[str, Any]] | None = None,
    default_ready: bool = False,
    default_pending: str | None = None,
    auth_state: Any = None,
) -> dict[str, Any]:
    """``servers`` maps server name to an already built server model (only the visible ones).

    Only the visible keys are computed: listings build hundreds of these per request.
    """
    if fields >= ALL_USER_FIELDS:  # the common admin case, in one go
        return {
            "kind": "user", "name": user.name, "admin": user.admin, "roles": list(roles), "groups": list(groups),
            "server": user_url(base_url, user.name) if default_ready else None, "pending": default_pending,
            "created": iso(user.created), "last_activity": iso(user.last_activity),
            "user_info": dict(user.user_info) if user.user_info is not None else None,
            "servers": dict(servers) if servers else {}, "auth_state": auth_state,
        }
    model: dict[str, Any] = {}
    if "kind" in fields:
        model["kind"] = "user"
    if "name" in fields:
        model["name"] = user.name
    if "admin" in fields:
        model["admin"] = user.admin
    if "roles" in fields:
        model["roles"] = list(roles)
    if "groups" in fields:
        model["groups"] = list(groups)
    if "server" in fields:
        model["server"] = user_url(base_url, user.name) if default_ready else None
    if "pending" in fields:
        model["pending"] = default_pending
    if "created" in fields:
        model["created"] = iso(user.created)
    if "last_activity" in fields:
        model["last_activity"] = iso(user.last_activity)
    if "user_info" in fields:
        model["user_info"] = dict(user.user_info) if user.user_info is not None else None
    if "servers" in fields:
        model["servers"] = dict(servers or {})
    if "auth_state" in fields:
        model["auth_state"] = auth_state
    return model


def group_model(group: Group, *, fields: frozenset[str], users: Iterable[str] = (), roles: Iterable[str] = ()) -> dict[str, Any]:
    full = {"kind": "group", "name": group.name, "users": list(users), "roles": list(roles),
            "properties": dict(group.properties)}
    return {k: v for k, v in full.items() if k in fields}


def service_model(service: Service, *, fields: frozenset[str], base_url: str, roles: Iterable[str] = ()) -> dict[str, Any]:
    full = {
        "kind": "service",
        "name": service.name,
        "admin": service.admin,
        "roles": list(roles),
        "url": service.url,
        "prefix": f"{base_url}services/{url_path_escape(service.name)}/" if service.url else "",
        "command": list(service.command),
        "pid": service.pid,
        "info": dict(service.info),
        "display": service.display,
    }
    return {k: v for k, v in full.items() if k in fields}


def token_model(token: Token, *, effective_scopes: Iterable[str], oauth_client: str = "JupyterHub") -> dict[str, Any]:
    return {
        token.owner_kind: token.owner_name,
        "id": token.api_id,
        "kind": "api_token",
        "roles": [],
        "scopes": sorted(effective_scopes),
        "created": iso(token.created),
        "last_activity": iso(token.last_activity),
        "expires_at": iso(token.expires_at),
        "note": token.note,
        "session_id": token.session_id,
        "oauth_client": oauth_client,
    }
