"""``/user/<name>/[<server>/]...`` and ``/services/<name>/...``: who may pass, then forward.

One function (:func:`decide`) decides for HTTP and websocket upgrades alike, and for both
paths (aiohttp's handler ``proxied`` and the front doors' :class:`ProxyLane`), before any
connection to a backend, on the same canonical target that chose the route:

- identity: ``Authorization: token|bearer``, the login cookie, or ``?token=`` on websocket
  upgrades only (removed from the query before it reaches the backend); the server's own
  secret is not a visitor's credential (JupyterLab sends it back from its page config), so a
  request carrying it is judged by the login cookie;
- users' servers need ``access:servers`` for that server (``!server=u/s``, ``!user=u``, a
  group holding u, or unfiltered); services need ``access:services`` for that service;
- no credentials: 403 JSON for API-looking requests, a login redirect for browsers;
  without access: 403 when the server runs, 404 when it does not (existence hidden);
  the owner of a stopped server: 424 JSON, or the hub's not-running page for browsers;
  a user that does not exist: 404, whoever asks;
- cookie-authenticated traffic (jupyter-server trusts every token-authenticated request, and
  every proxied request is token-authenticated from its point of view): state-changing
  methods need the XSRF token bound to the session and the server's prefix (JupyterLab
  sends it as X-XSRFToken from the ``_xsrf`` cookie the gateway sets on that path),
  websocket upgrades need an Origin equal to the gateway's own, and cross-site
  non-navigation reads are refused (XSSI), and the backend's CORS grants
  (``Access-Control-Allow-Origin``/``-Credentials``) are dropped from its answers.

Services differ on purpose (as behind JupyterHub's proxy): the gateway decides who may reach
them (``access:services``) but does not stand in for them. A service receives the caller's own
``Authorization`` and cookies (the gateway's login cookie excepted) and the raw query, and
authenticates callers itself (``HubAuth``/``HubOAuth`` ask ``/hub/api/user``, browsers log in
through the hub's OAuth provider). So the gateway sets no ``_xsrf`` cookie there and checks no
XSRF token (HubOAuth sets and checks its own); the Origin rules still apply.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlencode

from aiohttp import web

from gateway import keys
from gateway.auth import is_websocket_upgrade, presented_xsrf, resolve_identity
from gateway.errors import MISSING_CREDENTIALS, api_error_response
from gateway.identity.caches import SESSION_COOKIE, XSRF_COOKIE
from gateway.ops.logs import ACCESS_LOGGER, proxied_level, write_access_line
from gateway.store import StoreError
from gateway.vocab.models import Identity
from gateway.vocab.scrub import loggable_url
from gateway.wire.door_relay import relay
from gateway.wire.forward import ProxyForwarder, slash_redirect
from gateway.wire.http1 import PlainRequest
from gateway.wire.httpstrict import MAX_HEADER_BLOCK, MAX_URL, check_request, make_expect_handler
from gateway.wire.routing import BadPath, Route, canonical_target, origin_form

log = logging.getLogger("gateway.proxy")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PROXY_CONNECT_TIMEOUT = 5.0
PROXY_READ_TIMEOUT = 300.0  # long-polling and slow notebook saves; websockets have no read timeout


class Refusal(Exception):
    """An answer the gateway gives instead of forwarding."""

    def __init__(self, response: web.StreamResponse):
        self.response = response


def looks_like_api(request: web.Request, rest: str) -> bool:
    """JupyterHub's test: a path segment 'api', or JSON preferred over HTML, or not a plain GET."""
    if "api" in rest.split("/") or is_websocket_upgrade(request):
        return True
    accept = request.headers.get("Accept", "")
    if "application/json" in accept and "text/html" not in accept:
        return True
    return request.method not in ("GET", "HEAD")


def refuse(status: int, message: str | None) -> Refusal:
    return Refusal(api_error_response(status, message))


def own_origin(request: web.Request) -> str:
    public = request.app[keys.SETTINGS].public_url
    if public:
        parts = public.rstrip("/").split("/")
        return "/".join(parts[:3])
    return f"{request.scheme}://{request.host}"


def check_browser_rules(request: web.Request, identity: Identity, route: Route) -> None:
    """Cookie-authenticated requests only: XSRF for writes, exact Origin for upgrades, no XSSI."""
    if identity.via != "cookie":
        return
    fetch_site = request.headers.get("Sec-Fetch-Site", "")
    fetch_mode = request.headers.get("Sec-Fetch-Mode", "")
    if is_websocket_upgrade(request):
        if request.headers.get("Origin") != own_origin(request):
            raise refuse(403, "Cross-origin websocket connections are not allowed")
        return
    if request.method in SAFE_METHODS:
        if fetch_site == "cross-site" and fetch_mode not in ("navigate", ""):
            raise refuse(403, "Cross-site requests are not allowed")
        return
    origin = request.headers.get("Origin")
    if origin is not None and origin != own_origin(request):
        raise refuse(403, "Cross-origin requests are not allowed")
    if route.kind == "service":
        return  # the service checks its own XSRF token (HubOAuth), bound to its own cookie
    authorizer = request.app[keys.AUTHORIZER]
    if not authorizer.check_xsrf(identity, presented_xsrf(request), route.prefix):
        raise refuse(403, "'_xsrf' argument missing or invalid")


def xsrf_cookie(request: web.Request, identity: Identity, prefix: str) -> tuple[str, ...]:
    """Set our XSRF token as the ``_xsrf`` cookie on the server's path (what JupyterLab reads)."""
    if identity.via != "cookie" or identity.session_id is None:
        return ()
    token = request.app[keys.AUTHORIZER].xsrf_token(identity.session_id, prefix)
    if request.cookies.get(XSRF_COOKIE) == token:
        return ()
    secure = "; Secure" if request.secure else ""
    return (f"{XSRF_COOKIE}={token}; Path={prefix}; SameSite=Lax{secure}",)


def backend_target(request: web.Request, route: Route | None = None) -> str:
    """The target sent to the backend: the raw one, minus a ``token`` query parameter (our credential)
    on user routes; services get it as sent (they authenticate the caller themselves)."""
    return without_token_param(origin_form(request.raw_path), route)


def without_token_param(target: str, route: Route | None) -> str:
    path, _, query = target.partition("?")
    if "token" not in query or (route is not None and route.kind == "service"):
        return target
    pairs = parse_qsl(query, keep_blank_values=True)
    kept = [(k, v) for k, v in pairs if k != "token"]
    if len(kept) == len(pairs):
        return target
    return path + ("?" + urlencode(kept) if kept else "")


def redirect(location: str) -> web.Response:
    """A 302 with the Location exactly as built (web.HTTPFound would re-encode the query)."""
    return web.Response(status=302, headers={"Location": location})


def login_redirect(request: web.Request) -> Refusal:
    settings = request.app[keys.SETTINGS]
    next_url = quote(backend_target(request), safe="")  # never carry a ?token= into next=
    return Refusal(redirect(f"{settings.hub_prefix}login?next={next_url}"))


async def authorize_proxied(request: web.Request, kind: str, name: str, rest: str, route: Route | None) -> Identity:
    """Raise Refusal unless the caller may reach this route (or learn that it is not running)."""
    # A server's own secret is its credential towards the hub, never a visitor's towards the server:
    # jupyterhub-singleuser puts it in JupyterLab's page config, so browsers send it back. Those
    # requests are judged by the visitor's login cookie instead (so revoking a share ends them at once).
    secret = route.secret if route is not None and route.kind == "user" else None
    identity = await resolve_identity(request, allow_query_token=True, not_a_credential=secret)
    request[keys.IDENTITY] = identity  # for the access log
    app = request.app
    if identity.anonymous:
        if looks_like_api(request, rest):
            raise refuse(403, MISSING_CREDENTIALS)
        raise login_redirect(request)
    if kind == "services":
        if route is None or not await may_reach(app, identity, kind, name, ""):
            raise refuse(403 if route is not None else 404, "No access to resources or resources not found")
        return identity
    server_name = route.server_name if route is not None else await stopped_server_name(request, name, rest)
    if not await may_reach(app, identity, kind, name, server_name):
        if route is not None:
            raise refuse(403, "Action is not authorized with current scopes; requires any of [access:servers]")
        raise refuse(404, "No access to resources or resources not found")
    if route is None:
        if await app[keys.STORE].get_user(name) is None:  # "not running" would claim the user exists
            raise refuse(404, f"No such user: {name}")
        raise not_running(request, name, server_name, rest, looks_like_api(request, rest))
    return identity


async def may_reach(app: web.Application, identity: Identity, kind: str, name: str, server_name: str) -> bool:
    """``access:services`` for that service, or ``access:servers`` for that user's server."""
    if kind == "services":
        return identity.scopes.check(["access:services"], service=name) == "ok"
    groups = await app[keys.AUTHORIZER].groups_of(name)
    return identity.scopes.check(["access:servers"], user=name, server=f"{name}/{server_name}",
                                 user_groups=groups) == "ok"


async def stopped_server_name(request: web.Request, user_name: str, rest: str) -> str:
    """Which server a request for a non-running route meant: a named one if the first segment names it."""
    first = rest.lstrip("/").split("/", 1)[0]
    if not first or not request.app[keys.SETTINGS].allow_named_servers:
        return ""
    store = request.app[keys.STORE]
    user = await store.get_user(user_name)
    if user is not None and await store.get_server(user.id, first) is not None:
        return first
    return ""


def not_running(request: web.Request, user_name: str, server_name: str, rest: str, api: bool) -> Refusal:
    settings = request.app[keys.SETTINGS]
    path = origin_form(request.raw_path).partition("?")[0]
    spawn = f"{settings.hub_prefix}spawn/{quote(user_name, safe='@~')}" + (f"/{server_name}" if server_name else "")
    if api:
        return refuse(424, f"JupyterHub server no longer running at {path}. Restart the server at {spawn}")
    # the client may spell base_url otherwise (``/a@b/`` for ``/a%40b/``): skip it by segments
    segments = settings.base_route.count("/")
    hub_path = settings.hub_prefix + backend_target(request).split("/", segments)[-1]
    return Refusal(redirect(hub_path))


@dataclass(slots=True)
class Pass:
    """The decision to forward: to which route, for whom, with what target and extra answer headers."""

    route: Route
    identity: Identity
    target: str  # the backend's request target (our ``?token=`` removed on user routes)
    set_cookies: tuple[str, ...]  # our ``_xsrf`` cookie, when the browser lacks it
    cookie_auth: bool  # let through on the login cookie: the backend's CORS grants are dropped


async def decide(request) -> Pass | web.StreamResponse:
    """Who may pass, for both paths: a :class:`Pass`, or the answer given instead (refusal, redirect).

    ``request`` is an aiohttp request, or a front door's :class:`PlainView` (which raises
    :class:`NeedsFullRequest` where only aiohttp's parsing may answer: cookies, query)."""
    settings = request.app[keys.SETTINGS]
    try:
        target = canonical_target(request.raw_path, settings.base_url)
    except BadPath as e:
        return api_error_response(400, f"Bad request path: {e}")
    if target is None:
        return api_error_response(404, None)
    kind, name, rest = target
    route = request.app[keys.ROUTES].lookup(kind, name, rest)
    if rest == "" and route is not None:  # /user/alice -> /user/alice/ (never carrying ?token= along)
        query = backend_target(request).partition("?")[2]
        return redirect(route.prefix + ("?" + query if query else ""))
    try:
        identity = await authorize_proxied(request, kind, name, rest, route)
        assert route is not None
        check_browser_rules(request, identity, route)
    except Refusal as refusal:
        return refusal.response
    except StoreError as e:  # a cache miss met a database that cannot answer
        log.error("Cannot check access to %s: %s", loggable_url(request.raw_path), e)
        return api_error_response(503, str(e))
    target_sent = backend_target(request, route)
    named = slash_redirect(target_sent, route.prefix)  # /user/alice/nb -> /user/alice/nb/
    if named is not None:
        return redirect(named)
    cookies = xsrf_cookie(request, identity, route.prefix) if route.kind == "user" else ()
    return Pass(route, identity, target_sent, cookies, identity.via == "cookie")


def count(app: web.Application, status: int, received: int, sent: int) -> None:
    """The metrics of one proxied request, whichever path served it."""
    metrics = app.get(keys.METRICS)
    if metrics is not None:
        metrics.proxy_request(status, received, sent)


async def proxied(request: web.Request) -> web.StreamResponse:
    """The handler of every /user/... and /services/... request: a route of the root app, which has no
    middlewares (the hub's are on its sub-apps), so it applies the strictness checks itself."""
    problem = check_request(request, request.app[keys.SETTINGS].proxy_max_body_size)
    if problem is not None:
        raise problem
    decision = await decide(request)
    if not isinstance(decision, Pass):
        return decision
    forward = request.app[keys.PROXY].forward(request, decision.route, target=decision.target,
                                              set_cookies=decision.set_cookies, cookie_auth=decision.cookie_auth)
    metrics = request.app.get(keys.METRICS)
    websocket = metrics is not None and is_websocket_upgrade(request)
    if websocket:
        metrics.websocket_opened()
    response: web.StreamResponse | None = None
    status = 500
    try:
        response = await forward
        return response
    except web.HTTPException as e:
        status = e.status
        raise
    finally:
        if websocket:
            metrics.websocket_closed()
        if response is not None:
            status = response.status
        count(request.app, status, request.content_length or 0, response.body_length if response is not None else 0)


class NeedsFullRequest(Exception):
    """The decision needs what only aiohttp's request parsing provides (cookies, the query)."""


class PlainView:
    """A front door's plain request, read by :func:`decide` as it reads an aiohttp request."""

    __slots__ = ("app", "head", "scheme", "identity")

    def __init__(self, app: web.Application, head: PlainRequest, scheme: str) -> None:
        self.app = app
        self.head = head
        self.scheme = scheme
        self.identity: Identity | None = None

    config_dict = property(lambda self: self.app)  # the root app: what auth.py reads shared objects from
    method = property(lambda self: self.head.method)
    raw_path = property(lambda self: self.head.target)
    host = property(lambda self: self.head.host)
    secure = property(lambda self: self.scheme == "https")
    headers = property(lambda self: self)

    def get(self, name: str, default: str | None = None) -> str | None:
        """A header's value (the first one), as ``request.headers.get``."""
        if name.lower() == "authorization":  # parsed once already (exactly one, visible ASCII)
            return self.head.authorization if self.head.authorization is not None else default
        wanted = name.lower().encode()
        for key, value in self.head.headers:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return default

    @property
    def cookies(self):
        raise NeedsFullRequest

    @property
    def query(self):
        raise NeedsFullRequest

    def __setitem__(self, key, value) -> None:
        if key is keys.IDENTITY:
            self.identity = value


class ProxyLane:
    """The proxy's lane for front doors (:mod:`gateway.wire.frontdoor`).

    It serves a plain request that carries an Authorization header when :func:`decide` lets it
    pass, with no browser state to handle (no cookie to set). Every other case returns False
    before anything is sent, and aiohttp's path (``proxied``) answers it through the same
    decision: login cookies, a server's own secret presented back, refusals, redirects, the
    not-running answers, a database that cannot answer."""

    def __init__(self, app: web.Application) -> None:
        settings = app[keys.SETTINGS]
        self.app = app
        # both spellings of a base_url with percent-escapes (canonical_target reads either)
        self.prefixes = tuple({base + kind for base in (settings.base_url, settings.base_route)
                               for kind in ("user/", "services/")})
        self.max_body = settings.proxy_max_body_size
        self.forwarder: ProxyForwarder = app[keys.PROXY]
        self.access_log = logging.getLogger(ACCESS_LOGGER)
        self.loop = asyncio.get_running_loop()

    def wants(self, head: PlainRequest) -> bool:
        return (head.authorization is not None and head.target.startswith(self.prefixes)
                and (head.content_length or 0) <= self.max_body and len(head.target) <= MAX_URL
                and head.size <= MAX_HEADER_BLOCK)

    async def serve(self, door, head: PlainRequest, body: bytes) -> bool:
        started = self.loop.time()
        view = PlainView(self.app, head, door.scheme)
        try:
            decision = await decide(view)
        except NeedsFullRequest:
            return False
        if not isinstance(decision, Pass) or decision.set_cookies:
            return False  # aiohttp's path gives this answer (deciding again, the same way)
        forwarder = self.forwarder
        route = decision.route
        upstream = forwarder.request_head(
            route, head.method, decision.target, head.headers, host=head.host,
            peer=door.peer, scheme=door.scheme, content_length=head.content_length)
        status, sent = await relay(forwarder, door, route, upstream + body, head.method,
                                   cookie_auth=decision.cookie_auth)
        count(self.app, status, len(body), sent)
        level = proxied_level(status)
        if self.access_log.isEnabledFor(level):
            write_access_line(self.access_log, level, status, head.method, head.target, decision.identity.name,
                              door.peer, self.loop.time() - started, view.get, head.content_length, sent)
        return True


async def proxy_context(app: web.Application):
    settings = app[keys.SETTINGS]

    def on_activity(route: Route) -> None:
        servers = app.get(keys.SERVERS)
        if servers is not None:
            servers.note_activity(route.prefix)

    def on_backend_error(route: Route) -> None:
        metrics = app.get(keys.METRICS)
        if metrics is not None:
            metrics.backend_error()
        servers = app.get(keys.SERVERS)
        if servers is not None:
            servers.backend_failed(route.prefix)

    forwarder = ProxyForwarder(
        gateway_cookie_names=frozenset({SESSION_COOKIE, XSRF_COOKIE}),
        service_cookie_names=frozenset({SESSION_COOKIE}),
        max_body_size=settings.proxy_max_body_size,
        connect_timeout=PROXY_CONNECT_TIMEOUT,
        read_timeout=PROXY_READ_TIMEOUT,
        on_activity=on_activity,
        on_backend_error=on_backend_error,
    )
    app[keys.PROXY] = forwarder
    if settings.front_doors:  # the lane writes its answers itself: on_response_prepare signals do not see them
        app[keys.FRONT_LANE] = ProxyLane(app)
    yield
    drains = app[keys.FRONT_DRAINS]
    if drains:  # front doors finishing requests in flight (bounded by shutdown_timeout) need the pool
        await asyncio.gather(*drains, return_exceptions=True)
    await forwarder.close()


async def close_websockets(app: web.Application) -> None:
    """on_shutdown: the listener is closed; end open websockets with 1001 so the runner need not
    wait ``shutdown_timeout`` for them, and clients know to reconnect elsewhere or later."""
    forwarder = app.get(keys.PROXY)
    if forwarder is not None:
        count = forwarder.going_away()
        if count:
            log.info("Closed %d proxied websocket(s) with 1001 (going away)", count)


def setup(app: web.Application) -> None:
    settings = app[keys.SETTINGS]
    expect = make_expect_handler(lambda request: settings.proxy_max_body_size)
    for kind in ("user", "services"):
        app.router.add_route("*", f"{settings.base_route}{kind}/{{tail:.*}}", proxied, expect_handler=expect)
        app.router.add_route("*", f"{settings.base_route}{kind}", proxied, expect_handler=expect)
