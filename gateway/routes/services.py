"""Services: list and read; add and remove services at runtime (JupyterHub 6.1.1 ``apihandlers/services.py``).

Services from the config file are fixed (405 on delete); services added through the API are
external ones (a URL and/or a token, never a ``command``: managed services start only from config).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from gateway import keys
from gateway.auth import current_identity, requires_scope
from gateway.errors import ApiError, json_response
from gateway.routes.apiutil import check_keys, json_body, mount_api
from gateway.routes.common import empty_response, shown
from gateway.store import Conflict
from gateway.vocab import scopes, security
from gateway.vocab.models import Service
from gateway.vocab.names import validate_username
from gateway.vocab.serialize import service_model

log = logging.getLogger("gateway.api.services")
routes = web.RouteTableDef()

# JupyterHub's accepted service keys and their types (``_service_model_types``).
SERVICE_KEYS: dict[str, type] = {
    "name": str, "admin": bool, "url": str, "oauth_client_allowed_scopes": list, "api_token": str, "info": dict,
    "display": bool, "oauth_no_confirm": bool, "command": list, "cwd": str, "environment": dict, "user": str,
    "oauth_client_id": str, "oauth_redirect_uri": str,
}
TOKEN_MIN_LENGTH = 8  # as JupyterHub's config tokens


async def model_of(request: web.Request, service: Service) -> dict[str, Any]:
    fields = current_identity(request).scopes.fields_for_service(service.name)
    roles = await request.config_dict[keys.STORE].role_names_of_service(service.id) if "roles" in fields else ()
    return service_model(service, fields=fields, base_url=request.config_dict[keys.SETTINGS].base_url, roles=roles)


@routes.get("/services")
@requires_scope("list:services", post_filter=True)
async def list_services(request: web.Request) -> web.Response:
    allowed = current_identity(request).scopes.list_filter("list:services")
    services = await request.config_dict[keys.STORE].list_services()
    return json_response({s.name: await model_of(request, s) for s in services if allowed.allows_service(s.name)})


@routes.get("/services/{service_name}")
@requires_scope("read:services", "read:services:name", "read:roles:services")
async def get_service(request: web.Request) -> web.Response:
    name = request.match_info["service_name"]
    service = await request.config_dict[keys.STORE].get_service(name)
    if service is None:
        raise ApiError(404, f"No such service: {shown(name)}")
    return json_response(await model_of(request, service))


def service_fields(name: str, spec: dict[str, Any], base_url: str) -> dict[str, Any]:
    """Store columns for a runtime service, or 400 "Failed to create service" as JupyterHub says."""
    failed = ApiError(400, f"Failed to create service {shown(name)}")
    if not validate_username(name):
        raise failed
    url = spec.get("url") or ""
    if url and (urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc):
        raise failed
    client_id = spec.get("oauth_client_id") or f"service-{name}"
    if not client_id.startswith("service-"):
        raise failed
    allowed = spec.get("oauth_client_allowed_scopes") or []
    if not all(isinstance(s, str) for s in allowed):
        raise failed
    return {
        "admin": bool(spec.get("admin", False)),
        "url": url,
        "info": dict(spec.get("info") or {}),
        "display": bool(spec.get("display", True)),
        "from_config": False,
        "oauth_client_id": client_id,
        "oauth_redirect_uri": spec.get("oauth_redirect_uri")
        or (f"{base_url}services/{name}/oauth_callback" if url else ""),
        "oauth_no_confirm": bool(spec.get("oauth_no_confirm", False)),
        "oauth_client_allowed_scopes": tuple(allowed),
    }


async def check_grantable(request: web.Request, spec: dict[str, Any]) -> None:
    """A caller may only create a service holding scopes the caller holds (admin role, client scopes)."""
    wanted: list[str] = []
    if spec.get("admin"):
        wanted += scopes.default_roles(request.config_dict[keys.SETTINGS].admin_access)["admin"].scopes
    wanted += [s for s in spec.get("oauth_client_allowed_scopes") or [] if isinstance(s, str)]
    if not wanted:
        return
    identity = current_identity(request)
    known = {identity.name: identity.groups} if identity.kind == "user" else {}
    try:
        scopes.check_token_request(wanted, owner_scopes=identity.scopes.expanded, owner_kind=identity.kind or "user",
                                   owner_name=identity.name, groups_of=lambda n: known.get(n, frozenset()))
    except scopes.ScopeNotFound as e:
        raise ApiError(400, shown(str(e))) from None
    except scopes.ScopesNotHeld as e:
        raise ApiError(400, str(e)) from None


@routes.post("/services/{service_name}")
@requires_scope("admin:services")
async def create_service(request: web.Request) -> web.Response:
    name = request.match_info["service_name"]
    store = request.config_dict[keys.STORE]
    data = await json_body(request)
    if await store.get_service(name) is not None:
        raise ApiError(409, f"Service {shown(name)} already exists")
    if not data or not isinstance(data, dict):
        raise ApiError(400, "Invalid service data")
    data["name"] = name
    check_keys(data, SERVICE_KEYS, "service")
    await check_grantable(request, data)
    if data.get("command"):
        raise ApiError(400, f"Can not create managed service {shown(name)} at runtime")
    fields = service_fields(name, data, request.config_dict[keys.SETTINGS].base_url)
    token = data.get("api_token")
    if token is not None and (not security.TOKEN_MAX_LENGTH >= len(token) >= TOKEN_MIN_LENGTH
                              or await store.find_token(token) is not None):
        raise ApiError(400, f"Failed to create service {shown(name)}")
    try:
        service = await store.add_service(name, token=token, roles=("admin",) if fields["admin"] else (), **fields)
    except Conflict:
        raise ApiError(409, f"Service {shown(name)} already exists") from None
    manager = request.config_dict.get(keys.SERVICES)
    if manager is not None:
        manager.add_route(service)  # JupyterHub adds a runtime service with a url to the proxy too
    log.info("Added service %s at runtime", shown(name))
    return json_response(await model_of(request, service), 201)


@routes.delete("/services/{service_name}")
@requires_scope("admin:services")
async def delete_service(request: web.Request) -> web.Response:
    name = request.match_info["service_name"]
    store = request.config_dict[keys.STORE]
    service = await store.get_service(name)
    if service is None:
        raise ApiError(404, f"Service {shown(name)} does not exist")
    if service.from_config:
        raise ApiError(405, f"Service {shown(name)} is not modifiable at runtime")
    await store.delete_service(service.id)  # its tokens and role grants go with it
    manager = request.config_dict.get(keys.SERVICES)
    if manager is not None:
        manager.remove_route(name)
    log.info("Removed service %s", shown(name))
    return empty_response(200)


def setup(app: web.Application) -> None:
    mount_api(app, routes)
