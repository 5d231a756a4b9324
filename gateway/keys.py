"""Every typed key for shared state: app-wide objects (web.AppKey) and per-request values (web.RequestKey).

Defined in one place so that no module reaches into the app with a bare string.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from gateway.config import Settings  # noqa: F401 (named in the keys' type strings)
    from gateway.identity.caches import Authorizer  # noqa: F401
    from gateway.store import Store  # noqa: F401
    from gateway.vocab.models import Identity  # noqa: F401
    from gateway.vocab.security import CookieCipher  # noqa: F401

SETTINGS = web.AppKey("settings", "Settings")
STORE = web.AppKey("store", "Store")
AUTHORIZER = web.AppKey("authorizer", "Authorizer")
COOKIE_CIPHER = web.AppKey("cookie_cipher", "CookieCipher")
COOKIE_SECRET = web.AppKey("cookie_secret", bytes)
# Filled by the capabilities that own them (servers, proxy, pages, services, metrics):
SERVERS = web.AppKey("servers", Any)
ROUTES = web.AppKey("routes", Any)
PROXY = web.AppKey("proxy", Any)
FRONT_LANE = web.AppKey("front_lane", Any)  # gateway.wire.frontdoor.Lane for plain proxied requests
FRONT_DRAINS = web.AppKey("front_drains", set)  # front doors finishing their requests at shutdown
AUTHENTICATOR = web.AppKey("authenticator", Any)
SERVICES = web.AppKey("services", Any)
METRICS = web.AppKey("metrics", Any)
ACTIVITY = web.AppKey("activity", Any)
SHUTDOWN = web.AppKey("shutdown", Any)  # callable(servers: bool) that stops the gateway

IDENTITY = web.RequestKey("identity", "Identity")
