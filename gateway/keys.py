"""Every typed key for shared state: app-wide objects (web.AppKey) and per-request values (web.RequestKey).

Defined in one place so that no module reaches into the app with a bare string. Each key's type is its
annotation (``web.AppKey[Store]``): type checkers read it, and this module imports nothing of the gateway
when it runs, so any module may import it. A module whose class is named here must not import this module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from gateway.authenticators.builtin import Authenticator
    from gateway.config import Settings
    from gateway.errors import HtmlRenderer
    from gateway.identity.caches import Authorizer
    from gateway.ops.activity import ActivityRecorder
    from gateway.ops.culler import IdleCuller
    from gateway.ops.metrics import Metrics
    from gateway.servers import ServerManager
    from gateway.services.managed import ServiceManager
    from gateway.services.oauth import OAuthProvider
    from gateway.store import Store
    from gateway.vocab.models import Identity
    from gateway.vocab.security import CookieCipher
    from gateway.wire.forward import ProxyForwarder
    from gateway.wire.frontdoor import Lane
    from gateway.wire.routing import RouteTable

# Set by app.create_app and its contexts, in the order they start:
SETTINGS: web.AppKey[Settings] = web.AppKey("settings")  # replaced as a whole on SIGHUP
# The two parts of the hub, aiohttp sub-apps mounted at <base_url>hub/api and <base_url>hub: setups add routes to them
API_APP: web.AppKey[web.Application] = web.AppKey("api_app")
HUB_APP: web.AppKey[web.Application] = web.AppKey("hub_app")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
ROUTES: web.AppKey[RouteTable] = web.AppKey("routes")  # the proxy's route table
FRONT_DRAINS: web.AppKey[set[asyncio.Task[None]]] = web.AppKey("front_drains")  # front doors finishing at shutdown
STORE: web.AppKey[Store] = web.AppKey("store")
ACTIVITY: web.AppKey[ActivityRecorder] = web.AppKey("activity")
COOKIE_SECRET: web.AppKey[bytes] = web.AppKey("cookie_secret")
COOKIE_CIPHER: web.AppKey[CookieCipher] = web.AppKey("cookie_cipher")
AUTHORIZER: web.AppKey[Authorizer] = web.AppKey("authorizer")
PROXY: web.AppKey[ProxyForwarder] = web.AppKey("proxy")
# The proxy's lane for plain proxied requests (gateway.proxy.ProxyLane), handed to the listening site's front doors.
FRONT_LANE: web.AppKey[Lane] = web.AppKey("front_lane")
SERVERS: web.AppKey[ServerManager] = web.AppKey("servers")
SERVICES: web.AppKey[ServiceManager] = web.AppKey("services")
OAUTH: web.AppKey[OAuthProvider] = web.AppKey("oauth")
AUTHENTICATOR: web.AppKey[Authenticator] = web.AppKey("authenticator")
CULLER: web.AppKey[IdleCuller] = web.AppKey("culler")
# Pages and REST handlers:
ERROR_PAGE: web.AppKey[HtmlRenderer] = web.AppKey("error_page")  # HTML error pages (the pages' template)
STATIC_VERSIONS: web.AppKey[dict[str, str]] = web.AppKey("static_versions")  # file name -> content hash
PLUGIN_PAGES: web.AppKey[frozenset[str]] = web.AppKey("plugin_pages")  # an auth plugin's own pages (hub paths)
SHUTDOWN_TASKS: web.AppKey[set[asyncio.Task[None]]] = web.AppKey("shutdown_tasks")  # POST /hub/api/shutdown
STOPPING: web.AppKey[asyncio.Event] = web.AppKey("progress_streams_stopping")  # ends progress event streams
# Set by the CLI: stop the gateway; ``servers`` (POST /hub/api/shutdown) overrides cleanup_servers.
SHUTDOWN: web.AppKey[Callable[..., None]] = web.AppKey("shutdown")

IDENTITY: web.RequestKey[Identity] = web.RequestKey("identity")
