"""create_app(settings): all wiring in one factory, used by the CLI and the tests alike.

Lifecycle runs through ``app.cleanup_ctx`` in dependency order (store, then secrets and the
authorizer, then each capability's own context); aiohttp unwinds them in reverse.
Capabilities register themselves through a ``setup(app)`` function listed in CAPABILITIES.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
from collections.abc import AsyncIterator

from aiohttp import web

from gateway import keys
from gateway.auth import make_identity_middleware
from gateway.config import Settings
from gateway.errors import make_error_middleware
from gateway.identity.caches import Authorizer
from gateway.ops.activity import ActivityRecorder
from gateway.ops.bootstrap import sync_config
from gateway.ops.logs import access_log_args
from gateway.pages.redirects import make_base_spelling_middleware
from gateway.proxy import body_limit
from gateway.store import Store
from gateway.vocab import security
from gateway.wire.httpstrict import make_strict_middleware, server_handler_args

log = logging.getLogger("gateway")

# Modules with a setup(app) function, in the order their routes and contexts are added.
CAPABILITIES = (
    "gateway.ops.metrics",  # first: sets app[METRICS] for the contexts below and times every hub request
    "gateway.routes.info",
    "gateway.routes.hub",
    "gateway.routes.users",
    "gateway.routes.tokens",
    "gateway.routes.groups",
    "gateway.routes.services",
    "gateway.proxy",
    "gateway.routes.servers",
    "gateway.services.managed",  # service routes and processes (after the proxy's route table exists)
    "gateway.routes.oauth",
    "gateway.routes.shares",
    "gateway.authenticators.builtin",
    "gateway.pages.kit",
    "gateway.pages.login",
    "gateway.pages.redirect_login",  # an OAuth plugin's /hub/oauth_login and /hub/oauth_callback
    "gateway.pages.home",
    "gateway.pages.spawn",
    "gateway.pages.admin",
    "gateway.pages.accept_share",
    "gateway.ops.culler",  # after servers: its context stops before the ServerManager closes
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


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[
            # route forms: the middlewares compare them with request.path, which aiohttp decodes
            make_error_middleware(settings.api_route, settings.hub_route),
            # after the error middleware, so that its refusals get the API's JSON shape under /hub/api
            make_strict_middleware(body_limit(settings)),
            make_identity_middleware(settings.hub_route),
        ],
        client_max_size=settings.max_body_size,
        # Parser limits (above the 414/431 thresholds httpstrict answers) and the access logger ride in
        # handler_args, which override the runner's arguments: the CLI and the tests run the same server.
        handler_args={**server_handler_args(), **access_log_args()},
    )
    app[keys.SETTINGS] = settings
    app.cleanup_ctx.append(store_context)
    app.cleanup_ctx.append(auth_context)
    for name in CAPABILITIES:
        importlib.import_module(name).setup(app)
    if settings.base_url != "/":  # base_url may be spelt two ways (escaped or not): one for browsers
        app.middlewares.insert(0, make_base_spelling_middleware(settings.base_url, settings.base_route))
    return app
