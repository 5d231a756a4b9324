"""Start-up synchronisation of config into the store, with JupyterHub's semantics.

Order: default roles; config services (removed ones deleted); users named in config
(admin_users, allowed_users, api_tokens owners); config tokens; load_groups; load_roles
(exact membership for the kinds a role lists); then the admin flag follows the admin role, as in JupyterHub. Problems are collected into one ConfigError
so the CLI can report them all and exit 2 before the gateway binds.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from gateway.config import ConfigError, Settings
from gateway.store import Store
from gateway.vocab import scopes
from gateway.vocab.names import normalize_username, validate_username

log = logging.getLogger("gateway.bootstrap")


async def sync_config(store: Store, settings: Settings) -> None:
    problems: list[str] = []
    await _default_roles(store, settings, problems)
    await _services(store, settings, problems)
    await _config_users(store, settings, problems)
    await _config_tokens(store, settings, problems)
    await _load_groups(store, settings, problems)
    await _load_roles(store, settings, problems)
    admin_spec = next((spec for spec in settings.load_roles if spec["name"] == "admin"), {})
    await store.sync_admin_flags(exact_users="users" in admin_spec, exact_services="services" in admin_spec)
    if problems:
        raise ConfigError(problems)


async def _default_roles(store: Store, settings: Settings, problems: list[str]) -> None:
    for role in scopes.default_roles(settings.admin_access).values():
        role_scopes = list(role.scopes)
        if role.name == "user":
            try:
                scopes.validate_scopes(settings.extra_user_scopes)
            except scopes.ScopeNotFound as e:
                problems.append(f"JupyterHub.extra_user_scopes: {e}")
            role_scopes += list(settings.extra_user_scopes)
        await store.upsert_role(role.name, role.description, role_scopes)


async def _services(store: Store, settings: Settings, problems: list[str]) -> None:
    admin_role = await store.get_role("admin")
    configured = set()
    for spec in settings.services:
        name = spec["name"]
        configured.add(name)
        url = spec.get("url") or ""
        fields: dict[str, Any] = {
            "admin": bool(spec.get("admin", False)),
            "url": url,
            "info": dict(spec.get("info") or {}),
            "display": bool(spec.get("display", True)),
            "from_config": True,
            "oauth_client_id": spec.get("oauth_client_id") or f"service-{name}",
            "oauth_redirect_uri": spec.get("oauth_redirect_uri")
            or (f"{settings.base_url}services/{name}/oauth_callback" if url else ""),
            "oauth_no_confirm": bool(spec.get("oauth_no_confirm", False)),
            "oauth_client_allowed_scopes": tuple(spec.get("oauth_client_allowed_scopes") or ()),
            "command": tuple(spec.get("command") or ()),
        }
        service, created = await store.upsert_service(name, **fields)
        if fields["admin"] and admin_role is not None:
            log.warning("Service %s sets `admin: True`, which is deprecated; gateway grants it the admin role", name)
            await store.grant_role(admin_role.id, service_id=service.id)
        token = spec.get("api_token")
        if token:
            await _register_token(store, "service", service.id, token, problems, f"service {name}")
    for service in await store.list_services():
        if service.from_config and service.name not in configured:
            log.info("Removing service %s: no longer in config", service.name)
            await store.delete_service(service.id)
            if service.oauth_client_id:  # browser logins it obtained end with it
                await store.delete_tokens(client_id=service.oauth_client_id)


async def _ensure_user(store: Store, settings: Settings, raw_name: str, problems: list[str], where: str,
                       admin: bool = False) -> int | None:
    name = normalize_username(raw_name, settings)
    if not validate_username(name, settings):
        problems.append(f"{where}: invalid username {raw_name!r}")
        return None
    user = await store.get_user(name)
    if user is None:
        user = await store.create_user(name, admin=admin, roles=("user", "admin") if admin else ("user",))
        log.info("Created user %s from %s", name, where)
    elif admin and not user.admin:
        await store.update_user(user.id, admin=True)
    return user.id


async def _config_users(store: Store, settings: Settings, problems: list[str]) -> None:
    if settings.hub_admin_users and not settings.admin_users:
        log.warning("JupyterHub.admin_users is deprecated; use Authenticator.admin_users")
    for name in sorted(settings.all_admin_users):
        await _ensure_user(store, settings, name, problems, "Authenticator.admin_users", admin=True)
    for name in sorted(settings.allowed_users):
        await _ensure_user(store, settings, name, problems, "Authenticator.allowed_users")


async def _config_tokens(store: Store, settings: Settings, problems: list[str]) -> None:
    if settings.api_tokens:
        log.warning("JupyterHub.api_tokens is deprecated (as in JupyterHub); prefer services or `gateway token`")
    for token, raw_name in settings.api_tokens.items():
        user_id = await _ensure_user(store, settings, raw_name, problems, "JupyterHub.api_tokens")
        if user_id is not None:
            await _register_token(store, "user", user_id, token, problems, f"user {raw_name}")


async def _register_token(store: Store, kind: str, owner_id: int, token: str, problems: list[str], owner: str) -> None:
    existing = await store.find_token(token)
    if existing is not None:
        if existing.owner_kind == kind and existing.owner_id == owner_id:
            return
        problems.append(f"A config token for {owner} is already registered to {existing.owner_kind} {existing.owner_name}")
        return
    await store.create_token(kind, owner_id, note="from config", token=token)  # type: ignore[arg-type]


async def _load_groups(store: Store, settings: Settings, problems: list[str]) -> None:
    for name, spec in settings.load_groups.items():
        members = spec.get("users", []) if isinstance(spec, Mapping) else spec
        properties = spec.get("properties", {}) if isinstance(spec, Mapping) else {}
        group = await store.get_group(name)
        if group is None:
            group = (await store.create_groups([name], properties=properties))[0]
        elif properties:
            await store.set_group_properties(group.id, properties)
        ids = [uid for m in members if (uid := await _ensure_user(store, settings, m, problems, f"load_groups[{name}]"))]
        await store.change_group_members(group.id, add=ids)


async def _load_roles(store: Store, settings: Settings, problems: list[str]) -> None:
    defaults = scopes.default_roles(settings.admin_access)
    for spec in settings.load_roles:
        name = spec["name"]
        if not scopes.validate_role_name(name):
            problems.append(f"load_roles: invalid role name {name!r}")
            continue
        if name == "admin" and ("scopes" in spec or "description" in spec):
            problems.append("load_roles: the admin role's scopes and description cannot be changed")
            continue
        role_scopes = spec.get("scopes")
        if role_scopes is not None:
            try:
                scopes.validate_scopes(role_scopes)
            except scopes.ScopeNotFound as e:
                problems.append(f"load_roles[{name}]: {e}")
                continue
        default = defaults.get(name)
        merged_scopes = list(role_scopes) if role_scopes is not None else list(default.scopes if default else ())
        description = spec.get("description", default.description if default else "")
        role = await store.upsert_role(name, description, merged_scopes)
        user_ids = None
        if "users" in spec or (name != "user"):
            user_ids = []
            for m in spec.get("users", []):
                uid = await _ensure_user(store, settings, m, problems, f"load_roles[{name}]")
                if uid is not None:
                    user_ids.append(uid)
            if name == "admin" and "users" not in spec:
                user_ids = None  # legacy: admins from flags stay in the admin role
            if name == "admin":
                user_ids = None if user_ids is None else sorted(set(user_ids) | await _admin_ids(store, settings))
        group_ids = None
        if "groups" in spec or name not in ("user", "admin"):
            existing = await store.group_ids(spec.get("groups", []))
            missing = [g for g in spec.get("groups", []) if g not in existing]
            if missing:
                created = await store.create_groups(missing)
                existing.update({g.name: g.id for g in created})
            group_ids = list(existing.values())
        service_ids = None
        if "services" in spec or name not in ("user", "admin"):
            service_ids = []
            for service_name in spec.get("services", []):
                service = await store.get_service(service_name)
                if service is None:
                    problems.append(f"load_roles[{name}]: no such service {service_name!r}")
                else:
                    service_ids.append(service.id)
        await store.set_role_members(role.id, user_ids=user_ids, group_ids=group_ids, service_ids=service_ids)
    keep = set(defaults) | {spec["name"] for spec in settings.load_roles}
    removed = await store.delete_roles_except(keep)
    for name in removed:
        log.info("Removed role %s: no longer in load_roles", name)


async def _admin_ids(store: Store, settings: Settings) -> set[int]:
    users = await store.get_users(normalize_username(n, settings) for n in settings.all_admin_users)
    return {u.id for u in users.values()}
