"""Who is calling (identity) and may they (authorization), per request.

- The identity middleware resolves every request once (through the ``Authorizer`` and its caches in
  ``gateway.identity.caches``) and never raises.
- ``requires_scope`` declares what an API handler needs; the filter (``!user=``, ``!server=``,
  ``!group=``, ``!service=``) is built from the URL's ``user_name``/``server_name``/... .
- XSRF: cookie-authenticated state changes need a token bound to the login session.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

from gateway import keys
from gateway.errors import MISSING_CREDENTIALS, ApiError
from gateway.identity import server_view
from gateway.identity.caches import SESSION_COOKIE
from gateway.vocab import scopes, security
from gateway.vocab.models import ANONYMOUS, Identity
from gateway.wire.forward import is_websocket_upgrade as websocket_handshake

AUTH_HEADER = re.compile(r"^(?:token|bearer)\s+([^\s]+)$", re.IGNORECASE)


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if not header:
        return None
    match = AUTH_HEADER.match(header.strip())
    return match.group(1) if match else None


def is_websocket_upgrade(request: web.Request) -> bool:
    """The handshake the proxy tunnels (GET, ``Connection: upgrade``, ``Upgrade: websocket``)."""
    return websocket_handshake(request.method, request.headers)


def query_token_allowed(request: web.Request) -> bool:
    """``?token=`` counts only on a browser's complete websocket handshake: a key and
    ``Sec-Fetch-Mode: websocket`` (what jupyter-server 2 requires too). On anything less, a token
    in a URL (history, logs, Referer) would open plain HTTP requests."""
    headers = request.headers
    return (is_websocket_upgrade(request) and bool(headers.get("Sec-WebSocket-Key"))
            and headers.get("Sec-Fetch-Mode", "").lower() == "websocket")


async def resolve_identity(request: web.Request, *, allow_query_token: bool = False,
                           not_a_credential: str | None = None) -> Identity:
    """Token header first, then (browser websocket handshakes only, when allowed) ?token=, then the login cookie.

    A token equal to ``not_a_credential`` counts as no token (the proxy passes a server's own
    secret: jupyterhub-singleuser hands it to the browser in JupyterLab's page config)."""
    authorizer = request.config_dict[keys.AUTHORIZER]
    token = bearer_token(request)
    if token is None and allow_query_token and query_token_allowed(request):
        token = request.query.get("token")
    if token is not None and not_a_credential and security.constant_time_equals(token, not_a_credential):
        token = None
    if token is not None:
        identity = await authorizer.identify_token(token)
        return identity or ANONYMOUS
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        session_id = authorizer.session_id_from_cookie(cookie)
        if session_id:
            identity = await authorizer.identify_session(session_id)
            if identity is not None:
                return identity
    return ANONYMOUS


def make_identity_middleware():
    """Resolve the identity of hub requests once (a middleware of the hub's sub-apps). Proxied paths
    resolve their own (they accept ?token= on upgrades)."""

    @web.middleware
    async def identity_middleware(request: web.Request, handler):
        request[keys.IDENTITY] = await server_view.own_credentials_only(
            request, await resolve_identity(request), request.config_dict[keys.STORE])
        return await handler(request)

    return identity_middleware


def current_identity(request: web.Request) -> Identity:
    return request.get(keys.IDENTITY, ANONYMOUS)


# JupyterHub exempts HEAD/OPTIONS from XSRF on the API (GET is checked too, except plain navigations).
XSRF_SAFE_METHODS = frozenset({"HEAD", "OPTIONS"})


def presented_xsrf(request: web.Request) -> str | None:
    return (request.headers.get("X-XSRFToken") or request.headers.get("X-CSRFToken")
            or request.query.get("_xsrf"))


def api_cookie_check(request: web.Request, identity: Identity) -> Identity:
    """Cookie-authenticated API calls: XSRF token and JSON content type, else treated as unauthenticated/forbidden."""
    if identity.via != "cookie" or request.method in XSRF_SAFE_METHODS:
        return identity
    fetch_mode = request.headers.get("Sec-Fetch-Mode", "navigate")
    if request.method == "GET" and fetch_mode in ("navigate", "websocket"):
        return identity  # a plain navigation cannot read the answer cross-site
    if request.method in ("POST", "PUT", "PATCH", "DELETE") and request.body_exists \
            and request.content_type != "application/json":
        return ANONYMOUS  # as JupyterHub: a cookie-authenticated form post to the API is not authenticated
    authorizer = request.config_dict[keys.AUTHORIZER]
    if not authorizer.check_xsrf(identity, presented_xsrf(request), request.config_dict[keys.SETTINGS].hub_prefix):
        raise ApiError(403, f"'_xsrf' argument missing from {request.method}" if not presented_xsrf(request)
                       else "'_xsrf' argument invalid")
    return identity


# ---------------------------------------------------------------- requires_scope


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def resource_of(request: web.Request) -> dict[str, object]:
    """The resource a URL names, as keyword arguments for ``Scopes.check``."""
    match = request.match_info
    resource: dict[str, object] = {}
    user = match.get("user_name")
    if user is not None:
        resource["user"] = user
        resource["user_groups"] = await request.config_dict[keys.AUTHORIZER].groups_of(user)
        if "server_name" in match:
            resource["server"] = f"{user}/{match['server_name']}"
    if "group_name" in match:
        resource["group"] = match["group_name"]
    if "service_name" in match:
        resource["service"] = match["service_name"]
    return resource


def authorize(identity: Identity, required: Iterable[str], resource: dict[str, object]) -> None:
    """Raise JupyterHub's 403/404 unless ``identity`` holds one of ``required`` for ``resource``."""
    required = tuple(required)
    if identity.anonymous:
        raise ApiError(403, MISSING_CREDENTIALS)
    decision = identity.scopes.check(required, **resource)
    if decision == "ok":
        return
    if decision == "other" and resource:
        raise ApiError(404, scopes.SCOPE_MESSAGE_NOT_FOUND)
    raise ApiError(403, scopes.missing_scope_message(required))


def requires_scope(*required: str, post_filter: bool = False) -> Callable[[Handler], Handler]:
    """Declare the scopes an API handler needs (any of). Unknown scopes fail at import time.

    With ``post_filter`` (list endpoints) a scope held only with filters passes; the handler
    filters its results with ``identity.scopes.list_filter(...)``.
    """
    for scope in required:
        if scope not in scopes.SCOPE_DEFINITIONS:
            raise ValueError(f"requires_scope: unknown scope {scope!r}")

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(request: web.Request) -> web.StreamResponse:
            identity = api_cookie_check(request, current_identity(request))
            request[keys.IDENTITY] = identity
            if post_filter:
                if identity.anonymous:
                    raise ApiError(403, MISSING_CREDENTIALS)
                if not any(identity.scopes.list_filter(s) is not None for s in required):
                    raise ApiError(403, scopes.missing_scope_message(required))
            else:
                authorize(identity, required, await resource_of(request))
            return await handler(request)

        wrapper.__required_scopes__ = required  # type: ignore[attr-defined]
        return wrapper

    return decorate


def authenticated(handler: Handler) -> Handler:
    """For API handlers that any valid credential may call (GET /user), or that check scopes inside."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        identity = api_cookie_check(request, current_identity(request))
        request[keys.IDENTITY] = identity
        return await handler(request)

    wrapper.__required_scopes__ = ("(authenticated)",)  # type: ignore[attr-defined]
    return wrapper


def public(handler: Handler) -> Handler:
    """Mark an API handler that needs no credentials (version, health); the meta-test checks every route is marked."""
    handler.__required_scopes__ = ()  # type: ignore[attr-defined]
    return handler
