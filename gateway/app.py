"""create_app(settings): all wiring in one factory, used by the CLI and the tests alike.

Everything the gateway mounts is imported here by name. Three ordered lists say how it runs:
MIDDLEWARES (outermost first), the routes each part mounts (ROUTE_SETUPS, in registration order), and
CONTEXTS: the start-up/cleanup contexts in dependency order (aiohttp unwinds them in reverse).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from gateway import keys, proxy
from gateway.auth import make_identity_middleware
from gateway.authenticators.auth_state import load_auth_state
from gateway.authenticators.builtin import end_blocked_sessions, ensure_first_admin, make_authenticator
from gateway.config import Settings, hub_api_url
from gateway.errors import make_error_middleware
from gateway.identity.caches import Authorizer
from gateway.ops.activity import ActivityRecorder
from gateway.ops.bootstrap import sync_config
from gateway.ops.culler import IdleCuller
from gateway.ops.lifecycle import RELOADABLE, changed_fields
from gateway.ops.logs import access_log_args, set_level
from gateway.ops.metrics import Metrics, make_timing_middleware
from gateway.ops.accounts import remove_user
from gateway.pages import accept_share, admin, home, kit, login, plugin_pages, redirect_login, spawn
from gateway.pages.redirects import make_base_spelling_middleware
from gateway.routes import batchspawner, groups, hub, info, metrics, oauth, servers, services, shares, tokens, users
from gateway.services.managed import ServiceManager
from gateway.store import Store
from gateway.vocab import security
from gateway.vocab.models import User
from gateway.wire.httpstrict import make_strict_middleware, make_unrouted_middleware, server_handler_args
from gateway.wire.routing import RouteTable

log = logging.getLogger("gateway")

# Each part's routes (and the app state its handlers share), in the order aiohttp matches them.
ROUTE_SETUPS = (
    metrics.setup,
    info.setup,
    hub.setup,
    users.setup,
    tokens.setup,
    groups.setup,
    services.setup,
    proxy.setup,
    servers.setup,
    batchspawner.setup,  # batchspawner's port report (plugin spawners)
    oauth.setup,
    shares.setup,
    kit.setup,  # templates, static files, the HTML error page
    login.setup,  # leaves /login to an authenticator plugin's own page when it has one
    redirect_login.setup,  # an OAuth plugin's /hub/oauth_login and /hub/oauth_callback
    home.setup,
    spawn.setup,
    admin.setup,
    accept_share.setup,
    plugin_pages.setup,  # an authenticator plugin's own pages, after gateway's (which they never replace)
)


async def store_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    store = await Store.open(settings.db_path)
    try:
        await sync_config(store, settings)
    except BaseException:
        await store.close()
        raise
    app[keys.STORE] = store
    yield
    await store.close()


def cookie_secret(settings: Settings) -> bytes:
    env = os.environ.get("JPY_COOKIE_SECRET")
    if settings.cookie_secret:
        return settings.cookie_secret
    if env:
        return bytes.fromhex(env)
    return security.load_or_create_cookie_secret(settings.cookie_secret_file)


async def auth_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    secret = cookie_secret(settings)
    activity = ActivityRecorder(app[keys.STORE], interval=max(1, settings.activity_resolution))
    app[keys.ACTIVITY] = activity
    app[keys.COOKIE_SECRET] = secret
    app[keys.COOKIE_CIPHER] = security.CookieCipher(secret)
    app[keys.AUTHORIZER] = Authorizer(
        app[keys.STORE],
        cipher=app[keys.COOKIE_CIPHER],
        cookie_secret=secret,
        session_max_age=settings.cookie_max_age_days * 86400,
        activity=activity,
    )
    activity.start()
    watcher = asyncio.create_task(app[keys.STORE].watch_other_writers(), name="store-watch")
    yield
    watcher.cancel()
    await activity.stop()


async def services_context(app: web.Application) -> AsyncIterator[None]:
    """Managed services: their routes in the proxy's table, their processes started in the background."""
    settings = app[keys.SETTINGS]
    manager = ServiceManager(app[keys.STORE], settings, app[keys.ROUTES], hub_api_url(settings))
    app[keys.SERVICES] = manager
    await manager.prepare()
    starter = asyncio.create_task(manager.start(), name="start services")
    yield
    starter.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await starter
    await manager.close()


async def authenticator_context(app: web.Application) -> AsyncIterator[None]:
    settings, store = app[keys.SETTINGS], app[keys.STORE]
    if settings.authenticator_class == "plugin":
        from gateway.authenticators.plugin import start_plugin  # imports jupyterhub: only when configured

        async def remove_invalid(user: User) -> None:  # delete_invalid_users: the plugin has refused them
            await remove_user(store, app[keys.SERVERS], None, user)

        authenticator = await start_plugin(settings, store, app[keys.COOKIE_SECRET], remove_invalid)
    else:
        authenticator = make_authenticator(settings, store)
    authenticator.warn_about_config()
    if authenticator.manages_passwords and settings.create_first_admin:
        await ensure_first_admin(store, settings)
    await end_blocked_sessions(store, authenticator.blocked_users)
    app[keys.AUTHENTICATOR] = authenticator
    # Spawners see the JupyterHub plugin (if any) as spawner.authenticator, and read auth_state through it.
    crypt = authenticator.crypt
    app[keys.SERVERS].set_authenticator(
        getattr(authenticator, "plugin", None),
        None if crypt is None else functools.partial(load_auth_state, store, crypt))
    yield


async def culler_context(app: web.Application) -> AsyncIterator[None]:
    # Always running (a cheap sleep loop), so SIGHUP can turn culling on without a restart.
    culler = IdleCuller(lambda: app[keys.SETTINGS], app[keys.STORE], app[keys.SERVERS], app[keys.ACTIVITY],
                        app[keys.AUTHENTICATOR])
    app[keys.CULLER] = culler
    culler.start()
    yield
    await culler.stop()  # before the ServerManager closes: no stop begins during shutdown


# Start-up/cleanup contexts in dependency order; aiohttp unwinds them in reverse.
CONTEXTS = (
    store_context,  # the store, with the config synchronised into it
    auth_context,  # cookie secret, activity recorder, the Authorizer and its caches
    proxy.proxy_context,  # the forwarder (and the front-door lane): before servers are routed
    servers.servers_context,  # the ServerManager: finds running servers, routes them
    services_context,
    oauth.oauth_context,
    authenticator_context,
    culler_context,  # stops before the ServerManager closes
)
ON_STARTUP = (metrics.record_startup,)  # after every context has started
ON_SHUTDOWN = (proxy.close_websockets, servers.end_progress_streams)  # listener closed, contexts still up


def caller_name(request: web.BaseRequest) -> str:
    """The access log's user part: the caller's user or service name, '-' when anonymous."""
    identity = request.get(keys.IDENTITY)  # set by a hub part's middleware or by the proxy
    return "-" if identity is None or identity.anonymous else identity.name


def hub_part(settings: Settings, app_metrics: Metrics, *, api: bool) -> web.Application:
    """One part of the hub, as an aiohttp sub-app with its own middlewares (outermost first)."""
    return web.Application(middlewares=[
        make_timing_middleware(app_metrics),  # sees the status the error middleware made
        make_error_middleware(api, None if api else kit.error_page),  # JSON for the API, HTML pages
        # after the error middleware, so that its refusals get the part's error shape
        make_strict_middleware(lambda request: settings.max_body_size),
        make_identity_middleware(),
    ])


def make_hub_port_middleware(settings: Settings) -> Callable[..., Awaitable[web.StreamResponse]]:
    """With TLS, the plain-http listener on hub_port is for servers and services: it answers the hub API
    and nothing else (no login pages or proxied servers in the clear), like JupyterHub's hub port."""
    api_route, hub_port = settings.api_route, settings.hub_port

    @web.middleware
    async def hub_port_api_only(request: web.Request,
                                handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
        if sockname and sockname[1] == hub_port and not request.path.startswith(api_route):
            raise web.HTTPNotFound(text="This port serves the hub API to servers and services only.\n")
        return await handler(request)

    return hub_port_api_only


def create_app(settings: Settings) -> web.Application:
    """The root app holds the proxy's routes (``proxy.proxied`` checks strictness itself), the
    ``<base_url>`` redirect and everything app-wide; ``<base_url>hub/api`` and ``<base_url>hub`` are
    sub-apps with the hub's middlewares."""
    app_metrics = Metrics()
    middlewares = [make_unrouted_middleware(lambda request: settings.max_body_size)]
    if settings.base_url != "/":  # base_url may be spelt two ways (escaped or not): one for browsers
        middlewares.insert(0, make_base_spelling_middleware(settings.base_url, settings.base_route))
    if settings.tls:
        middlewares.insert(0, make_hub_port_middleware(settings))
    app = web.Application(
        middlewares=middlewares,
        client_max_size=settings.max_body_size,
        # Parser limits (above the 414/431 thresholds httpstrict answers) and the access logger ride in
        # handler_args, which override the runner's arguments: the CLI and the tests run the same server.
        handler_args={**server_handler_args(), **access_log_args(caller_name)},
    )
    app[keys.SETTINGS] = settings
    app[keys.METRICS] = app_metrics  # before any context: the ServerManager records into it
    app[keys.ROUTES] = RouteTable()
    app[keys.FRONT_DRAINS] = set()
    app[keys.API_APP] = hub_part(settings, app_metrics, api=True)
    app[keys.HUB_APP] = hub_part(settings, app_metrics, api=False)
    for setup in ROUTE_SETUPS:  # shared state on the root app; routes on the root app or a part
        setup(app)
    # Sub-app prefixes in route form (aiohttp matches the decoded path); mounted once their routes are in.
    # aiohttp tries the longer prefix first: /hub/api/... reaches the API, never the pages.
    app.add_subapp(settings.api_route.rstrip("/"), app[keys.API_APP])
    app.add_subapp(settings.hub_route.rstrip("/"), app[keys.HUB_APP])
    app.cleanup_ctx.extend(CONTEXTS)
    app.on_startup.extend(ON_STARTUP)
    app.on_shutdown.extend(ON_SHUTDOWN)
    return app


async def reload_settings(app: web.Application, new: Settings) -> tuple[set[str], set[str]]:
    """Apply ``new`` to the running app as far as possible; return (applied, needs_restart) key names.

    Keys that need a restart keep their running values. Raises ConfigError (nothing applied)
    if the new config cannot be synchronised into the store."""
    old = app[keys.SETTINGS]
    changed = changed_fields(old, new)
    applied = changed & RELOADABLE
    restart = changed - RELOADABLE - {"config_file"}
    merged = old.replace(**{name: getattr(new, name) for name in applied})
    await sync_config(app[keys.STORE], merged)
    with warnings.catch_warnings():
        # aiohttp frowns on changing a started app's state; replacing the settings object is the
        # point of a reload, and every handler reads app[SETTINGS] per request.
        warnings.simplefilter("ignore", DeprecationWarning)
        app[keys.SETTINGS] = merged
    servers = app.get(keys.SERVERS)
    if servers is not None:
        servers.apply_settings(merged)
    services = app.get(keys.SERVICES)
    if services is not None:
        await services.apply_settings(merged)
    set_level(merged.log_level)
    return applied, restart
