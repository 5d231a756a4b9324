"""Hub information: version, info, whoami, health."""

from __future__ import annotations

import functools
import sys

from aiohttp import ChainMapProxy, web

from gateway import JUPYTERHUB_API_VERSION, __version__, keys
from gateway.identity import server_view
from gateway.auth import authenticated, current_identity, public, requires_scope
from gateway.authenticators.builtin import AUTHENTICATORS
from gateway.errors import ApiError, json_response
from gateway.routes.apiutil import mount_api
from gateway.routes.common import user_server_models
from gateway.spawners.local import spawner_class_for
from gateway.vocab import scopes
from gateway.vocab.serialize import service_model, user_model

routes = web.RouteTableDef()


def class_path(cls: type) -> str:
    """Where a class is imported from, as JupyterHub reports its spawner and authenticator classes."""
    return f"{cls.__module__}.{cls.__qualname__}"


def authenticator_info(app: ChainMapProxy) -> dict[str, str]:
    settings = app[keys.SETTINGS]
    if settings.authenticator_class != "plugin":
        return {"class": class_path(AUTHENTICATORS[settings.authenticator_class]), "version": __version__}
    cls = type(app[keys.AUTHENTICATOR].plugin)  # a JupyterHub Authenticator plugin, as JupyterHub reports it
    package = sys.modules.get(cls.__module__.split(".")[0])
    return {"class": f"{cls.__module__}.{cls.__name__}", "version": getattr(package, "__version__", "unknown")}


@routes.get("/")
@public
async def root(request: web.Request) -> web.Response:
    return json_response({"version": JUPYTERHUB_API_VERSION}, headers={"Access-Control-Allow-Origin": "*"})


def _spawner_info(settings) -> dict:
    plugin = settings.spawner_plugin
    if settings.spawner_class == "plugin" and plugin is not None:
        module = sys.modules.get(plugin.__module__.split(".")[0])
        return {"class": f"{plugin.__module__}.{plugin.__qualname__}",
                "version": getattr(module, "__version__", "unknown")}
    return {"class": class_path(spawner_class_for(settings.spawner_class)), "version": __version__}


@routes.get("/info")
@requires_scope("read:hub")
async def info(request: web.Request) -> web.Response:
    settings = request.config_dict[keys.SETTINGS]
    return json_response({
        "version": JUPYTERHUB_API_VERSION,
        "gateway_version": __version__,
        "python": sys.version,
        "sys_executable": sys.executable,
        "spawner": _spawner_info(settings),
        "authenticator": authenticator_info(request.config_dict),
    })


@routes.get("/user")
@authenticated
async def whoami(request: web.Request) -> web.Response:
    identity = current_identity(request)
    if identity.anonymous:
        raise ApiError(403)
    store = request.config_dict[keys.STORE]
    base_url = request.config_dict[keys.SETTINGS].base_url
    held = list(_held(identity.scopes.expanded))  # reported without the identify scopes added below
    own_view = _with_identify(identity.scopes, identity.kind, identity.name)
    if identity.kind == "user":
        user = identity.user
        roles = await store.role_names_of_user_cached(user.id)
        fields = _own_fields(own_view, user.name, identity.groups)
        servers_model = await _own_servers(request, user, fields)
        model = user_model(user, fields=fields | {"kind", "name"}, base_url=base_url, roles=roles,
                           groups=sorted(identity.groups), **servers_model)
    else:
        service = identity.service
        roles = await store.role_names_of_service(service.id)
        fields = own_view.fields_for_service(service.name)
        model = service_model(service, fields=fields | {"kind", "name", "admin"}, base_url=base_url, roles=roles)
    model["token_id"] = identity.token.api_id if identity.token else None
    model["session_id"] = identity.session_id
    model["scopes"] = held
    return json_response(model)


# Cached: a token's scopes and its owner's fields are the same on every call (the hot path of
# every single-user server and service that checks who a token belongs to).
@functools.lru_cache(maxsize=4096)
def _held(expanded: frozenset[str]) -> tuple[str, ...]:
    return tuple(sorted(scopes.reduce_scopes(expanded)))


@functools.lru_cache(maxsize=4096)
def _with_identify(scope_set: scopes.Scopes, kind: str, name: str) -> scopes.Scopes:
    """Every credential may read its owner's identity here (JupyterHub's identify scopes)."""
    return scopes.Scopes.from_expanded(scope_set.expanded | scopes.identify_scopes(kind, name))


@functools.lru_cache(maxsize=4096)
def _own_fields(scope_set: scopes.Scopes, name: str, groups: frozenset[str]) -> frozenset[str]:
    return scope_set.fields_for_user(name, groups)


async def _own_servers(request: web.Request, user, fields: frozenset[str]) -> dict:
    """Server fields of the whoami model, from the server manager when one runs."""
    manager = request.config_dict.get(keys.SERVERS)
    if manager is None or not ({"servers", "server", "pending"} & fields):
        return {}
    return await user_server_models(manager, user, request[keys.IDENTITY])


async def health(request: web.Request) -> web.Response:
    return web.Response(text="", content_type="text/html")


def setup(app: web.Application) -> None:
    mount_api(app, routes)
    api = app[keys.API_APP]
    api.router.add_get("", public(root))  # <base_url>hub/api, the sub-app's own prefix
    api.router.add_get(server_view.route_prefix(""), public(root))  # version check
    for part in (app[keys.HUB_APP], api):  # /hub/health and /hub/api/health
        part.router.add_get("/health", public(health))
