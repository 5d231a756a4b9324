"""The data of JupyterHub 6.1.1's RBAC: the scope table, the built-in roles, and which model
keys each read scope reveals. :mod:`gateway.vocab.scopes` re-exports all of it and holds the logic.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class ScopeDefinition:
    """One scope: its description (shown on token and OAuth pages) and direct subscopes."""

    description: str
    subscopes: tuple[str, ...] = ()


def _d(description: str, *subscopes: str) -> ScopeDefinition:
    return ScopeDefinition(description, tuple(subscopes))


# The 6.1.1 table (descriptions are user-visible text, kept as JupyterHub words them).
SCOPE_DEFINITIONS: Mapping[str, ScopeDefinition] = MappingProxyType({
    "(no_scope)": _d("Identify the owner of the requesting entity."),
    "self": _d("Your own resources"),
    "inherit": _d("Anything you have access to"),
    "admin-ui": _d("Access the admin page."),
    "admin:users": _d(
        "Read, modify, create, and delete users and their authentication state, not including"
        " their servers or tokens. This is an extremely privileged scope and should be"
        " considered tantamount to superuser.",
        "admin:auth_state", "users", "read:roles:users", "delete:users"),
    "admin:auth_state": _d("Read a user’s authentication state."),
    "users": _d(
        "Read and write permissions to user models (excluding servers, tokens and"
        " authentication state).",
        "read:users", "list:users", "users:activity"),
    "delete:users": _d("Delete users."),
    "list:users": _d("List users, including at least their names.", "read:users:name"),
    "read:users": _d(
        "Read user models (including the URL of the default server if it is running).",
        "read:users:name", "read:users:groups", "read:users:activity"),
    "read:users:name": _d("Read names of users."),
    "read:users:groups": _d("Read users’ group membership."),
    "read:users:activity": _d("Read time of last user activity."),
    "read:roles": _d(
        "Read role assignments.",
        "read:roles:users", "read:roles:services", "read:roles:groups"),
    "read:roles:users": _d("Read user role assignments."),
    "read:roles:services": _d("Read service role assignments."),
    "read:roles:groups": _d("Read group role assignments."),
    "users:activity": _d("Update time of last user activity.", "read:users:activity"),
    "admin:servers": _d(
        "Read, start, stop, create and delete user servers and their state.",
        "admin:server_state", "servers"),
    "admin:server_state": _d("Read and write users’ server state."),
    "servers": _d(
        "Start and stop user servers.", "read:servers", "start:servers", "delete:servers"),
    "read:servers": _d(
        "Read users’ names and their server models (excluding the server state).",
        "read:users:name"),
    "start:servers": _d("Start and edit users' servers. (added in JupyterHub 6)"),
    "delete:servers": _d("Stop and delete users' servers."),
    "tokens": _d("Read, write, create and delete user tokens.", "read:tokens"),
    "read:tokens": _d("Read user tokens."),
    "admin:groups": _d(
        "Read and write group information, create and delete groups.",
        "groups", "read:roles:groups", "delete:groups"),
    "groups": _d(
        "Read and write group information, including adding/removing any users to/from"
        " groups. Note: adding users to groups may affect permissions.",
        "read:groups", "list:groups"),
    "list:groups": _d("List groups, including at least their names.", "read:groups:name"),
    "read:groups": _d("Read group models.", "read:groups:name"),
    "read:groups:name": _d("Read group names."),
    "delete:groups": _d("Delete groups."),
    "admin:services": _d(
        "Create, read, update, delete services, not including services defined from config"
        " files.",
        "list:services", "read:services", "read:roles:services"),
    "list:services": _d(
        "List services, including at least their names.", "read:services:name"),
    "read:services": _d("Read service models.", "read:services:name"),
    "read:services:name": _d("Read service names."),
    "read:hub": _d("Read detailed information about the Hub."),
    "access:servers": _d("Access user servers via API or browser."),
    "access:services": _d("Access services via API or browser."),
    "users:shares": _d(
        "Read and revoke a user's access to shared servers.", "read:users:shares"),
    "read:users:shares": _d("Read servers shared with a user."),
    "groups:shares": _d(
        "Read and revoke a group's access to shared servers.", "read:groups:shares"),
    "read:groups:shares": _d("Read servers shared with a group."),
    "read:shares": _d("Read information about shared access to servers."),
    "shares": _d(
        "Manage access to shared servers.",
        "access:servers", "read:shares", "users:shares", "groups:shares"),
    "proxy": _d(
        "Read information about the proxy’s routing table, sync the Hub with the proxy and"
        " notify the Hub about a new proxy."),
    "shutdown": _d("Shutdown the hub."),
    "read:metrics": _d("Read prometheus metrics."),
})


# A scope table: SCOPE_DEFINITIONS, or the result of define_custom_scopes.
Definitions = Mapping[str, ScopeDefinition]

_ROLE_NAME = re.compile(r"^[a-z][a-z0-9\-_~\.]{1,253}[a-z0-9]$")


def validate_role_name(name: str) -> bool:
    """True if ``name`` is a valid role name (3-255 chars, lowercase, ``-_~.`` inside)."""
    return bool(_ROLE_NAME.fullmatch(name))


_CUSTOM_SCOPE = re.compile(r"^custom:[a-z0-9][a-z0-9_\-\*:]+[a-z0-9_\*]$")


def define_custom_scopes(custom: Mapping[str, Mapping]) -> Mapping[str, ScopeDefinition]:
    """The built-in table plus ``JupyterHub.custom_scopes``; raise ValueError when invalid.

    Pass the result as ``definitions=`` to the functions of :mod:`gateway.vocab.scopes`.
    """
    table = dict(SCOPE_DEFINITIONS)
    for name, spec in custom.items():
        if not _CUSTOM_SCOPE.fullmatch(name):
            raise ValueError(
                f"Invalid scope name: {name!r}. Custom scopes must start with `custom:` and"
                " contain only lowercase ascii letters, numbers, hyphen, underscore, colon,"
                " and asterisk. The part after `custom:` must start with a letter or number."
                " Scopes may not end with a hyphen or colon."
            )
        if "description" not in spec:
            raise ValueError(f"scope {name}={dict(spec)} missing key 'description'")
        subscopes = spec.get("subscopes", [])
        if not isinstance(subscopes, list) or not all(isinstance(s, str) for s in subscopes):
            raise ValueError(f"subscopes must be a list of scope strings, got {subscopes!r}")
        for sub in subscopes:
            if sub not in custom:
                if sub in SCOPE_DEFINITIONS:
                    raise ValueError(
                        f"non-custom subscope {sub} in {name}={dict(spec)} is not allowed."
                        " Custom scopes may only have custom subscopes."
                        " Roles should be used to assign multiple scopes together."
                    )
                raise ValueError(
                    f"subscope {sub} in {name}={dict(spec)} not found."
                    " All scopes must be defined."
                )
        table[name] = ScopeDefinition(str(spec["description"]), tuple(subscopes))
    return MappingProxyType(table)


# --------------------------------------------------------------------------- default roles

@dataclass(frozen=True)
class RoleSpec:
    """A role: a name and the raw scopes it grants."""

    name: str
    description: str
    scopes: tuple[str, ...]


_ADMIN_SCOPES_JUPYTERHUB = (
    "admin-ui", "admin:users", "admin:servers", "admin:services", "tokens", "admin:groups",
    "list:services", "read:services", "read:hub", "proxy", "shutdown", "access:services",
    "access:servers", "read:roles", "read:metrics", "shares",
)


def default_roles(admin_access: bool) -> dict[str, RoleSpec]:
    """The four built-in roles, by name.

    Without ``admin_access`` the admin role lacks ``access:servers`` and also ``shares``
    (which implies ``access:servers`` and would let an admin share a server with themselves);
    it keeps the read/revoke share scopes instead.
    """
    if admin_access:
        admin = _ADMIN_SCOPES_JUPYTERHUB
    else:
        admin = tuple(s for s in _ADMIN_SCOPES_JUPYTERHUB if s not in ("access:servers", "shares"))
        admin += ("read:shares", "users:shares", "groups:shares")
    roles = (
        RoleSpec("user", "Standard user privileges", ("self",)),
        RoleSpec("admin", "Elevated privileges (can do anything)", admin),
        RoleSpec("server", "Post activity only", ("users:activity!user", "access:servers!server")),
        RoleSpec("token", "Token with same permissions as its owner", ("inherit",)),
    )
    return {r.name: r for r in roles}


# Model keys visible per scope held on the resource (JupyterHub's access maps).
USER_FIELDS: Mapping[str, frozenset[str]] = MappingProxyType({
    "read:users": frozenset({"kind", "name", "user_info", "admin", "roles", "groups", "server",
                             "pending", "created", "last_activity"}),
    "read:users:name": frozenset({"kind", "name", "user_info", "admin"}),
    "read:users:groups": frozenset({"kind", "name", "groups"}),
    "read:users:activity": frozenset({"kind", "name", "last_activity"}),
    "read:servers": frozenset({"kind", "name", "servers"}),
    "read:roles:users": frozenset({"kind", "name", "roles", "admin"}),
    "admin:auth_state": frozenset({"kind", "name", "auth_state"}),
})
GROUP_FIELDS: Mapping[str, frozenset[str]] = MappingProxyType({
    "read:groups": frozenset({"kind", "name", "properties", "users"}),
    "read:groups:name": frozenset({"kind", "name"}),
    "read:roles:groups": frozenset({"kind", "name", "roles"}),
})
SERVICE_FIELDS: Mapping[str, frozenset[str]] = MappingProxyType({
    "read:services": frozenset({"kind", "name", "admin", "url", "prefix", "command", "pid",
                                "info", "display"}),
    "read:services:name": frozenset({"kind", "name", "admin"}),
    "read:roles:services": frozenset({"kind", "name", "roles", "admin"}),
})
