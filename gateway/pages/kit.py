"""What every HTML page handler uses: templates, the ``@page`` decorator, rendering, error pages.

Vocabulary:
- *page identity*: pages trust the login cookie only (as JupyterHub, whose pages ignore the
  Authorization header); ``page_identity`` re-resolves from the cookie when the middleware found a token.
- ``@page(login=True)``: anonymous GET/HEAD → 302 to ``/hub/login?next=<this URL>``, other methods → 403;
  every POST needs the hub XSRF token (form field ``_xsrf`` or ``X-XSRFToken``).
- ``render(request, template, **context)``: HTML with the base context (user, XSRF token, prefixes)
  and a strict Content-Security-Policy (scripts and styles from
  ``/hub/static/`` only, no framing, forms post to this origin only).
- ``server_status(app, user, server)``: what pages show and where they send browsers: the server
  manager's status, with 'ready' only once the proxy routes the server.
"""

from __future__ import annotations

import functools
import hashlib
import html
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from urllib.parse import quote

import aiohttp_jinja2
import jinja2
from aiohttp import ChainMapProxy, web

from gateway import keys
from gateway.auth import authorize, current_identity
from gateway.errors import MISSING_CREDENTIALS, ApiError
from gateway.identity.caches import SESSION_COOKIE
from gateway.pages import sessions
from gateway.vocab import scopes
from gateway.vocab.models import ANONYMOUS, Identity, User
from gateway.vocab.serialize import user_url
from gateway.wire.httpstrict import strict_handler

log = logging.getLogger("gateway.pages")

PACKAGE_DIR = Path(__file__).resolve().parent
STATIC_DIR = PACKAGE_DIR / "static"
PAGE_CSP = ("frame-ancestors 'none'; default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# ---------------------------------------------------------------- identity and access


async def page_identity(request: web.Request) -> Identity:
    """The caller as the login cookie says (a token in the Authorization header does not log a page in)."""
    identity = current_identity(request)
    if identity.via == "cookie":
        return identity
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return ANONYMOUS
    authorizer = request.config_dict[keys.AUTHORIZER]
    session_id = authorizer.session_id_from_cookie(cookie)
    found = await authorizer.identify_session(session_id) if session_id else None
    return found or ANONYMOUS


def login_url(request: web.Request, next_url: str | None = None) -> str:
    target = next_url if next_url is not None else str(request.rel_url)
    return request.config_dict[keys.SETTINGS].hub_prefix + "login?next=" + quote(target, safe="")


async def require_scope(request: web.Request, identity: Identity, scope: str, *, user: str | None = None,
                        server: str | None = None) -> None:
    """JupyterHub's 403/404 for a page acting on ``user`` (and ``user/server``)."""
    resource: dict[str, object] = {}
    if user is not None:
        resource["user"] = user
        resource["user_groups"] = await request.config_dict[keys.AUTHORIZER].groups_of(user)
        if server is not None:
            resource["server"] = f"{user}/{server}"
    authorize(identity, (scope,), resource)


async def may(request: web.Request, identity: Identity, scope: str, **resource) -> bool:
    try:
        await require_scope(request, identity, scope, **resource)
    except ApiError:
        return False
    return True


async def _renewed(request: web.Request, identity: Identity) -> Identity:
    """A browser login the authenticator says has gone stale (refresh_user False) ends here: anonymous."""
    authenticator = request.config_dict.get(keys.AUTHENTICATOR)
    if identity.user is None or identity.via != "cookie" or authenticator is None:
        return identity
    if not authenticator.refresh_due(identity.user.name):
        return identity
    if await authenticator.refresh_page_user(request, identity.user) is not None:
        return identity
    if identity.session_id:
        await request.config_dict[keys.STORE].delete_session(identity.session_id)
    return ANONYMOUS


def page(*, login: bool = True) -> Callable[[Handler], Handler]:
    """Mark a page handler: cookie identity, login redirect, XSRF on state-changing methods."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(request: web.Request) -> web.StreamResponse:
            identity = await _renewed(request, await page_identity(request))
            request[keys.IDENTITY] = identity
            if login and identity.anonymous:
                if request.method in ("GET", "HEAD"):
                    raise found(login_url(request))
                raise ApiError(403, MISSING_CREDENTIALS)
            if login and request.method not in SAFE_METHODS:
                form = await request.post()
                # JupyterHub's spawn form carries its token in the action URL (?_xsrf=)
                presented = form.get("_xsrf") or request.headers.get("X-XSRFToken") or request.query.get("_xsrf")
                sessions.check_form_xsrf(request, identity, presented if isinstance(presented, str) else None)
            return await handler(request)

        wrapper.__page__ = True  # type: ignore[attr-defined]
        return wrapper

    return decorate


# ---------------------------------------------------------------- where a user lands


def server_status(app: ChainMapProxy, user_name: str, server_name: str) -> str | None:
    """The server manager's status ('ready' | 'spawn' | 'stop' | None), where 'ready' also needs the
    proxy's route: a page sends a browser to ``/user/...`` only when the proxy will forward it there,
    since the proxy sends it back to ``/hub/user/...`` otherwise (a redirect loop). The two differ only
    for a moment (a server being marked stopped loses its route first); the page then says "stopped"."""
    status = app[keys.SERVERS].status(user_name, server_name)
    if status == "ready":
        route = app[keys.ROUTES].lookup("user", user_name, f"/{server_name}/" if server_name else "/")
        if route is None or route.server_name != server_name:
            return None
    return status


def landing_url(request: web.Request, user: User) -> str:
    """Where /hub/ and a login without ``next`` go (JupyterHub's RootHandler)."""
    settings = request.config_dict[keys.SETTINGS]
    if settings.default_url:
        return settings.default_url
    if not settings.redirect_to_server:
        return settings.hub_prefix + "home"
    if server_status(request.config_dict, user.name, "") == "ready":
        return user_url(settings.base_url, user.name)
    return settings.hub_prefix + "spawn"


# ---------------------------------------------------------------- rendering


def found(location: str) -> web.HTTPFound:
    """A 302 to raise, with ``location`` sent exactly as given (aiohttp would re-encode its query)."""
    exc = web.HTTPFound(location)
    exc.headers["Location"] = location
    return exc


def raw_after(request: web.Request, route_prefix: str) -> str:
    """The path after ``route_prefix`` (route form, e.g. ``settings.hub_route + "user/"``) as the client sent it.

    The request matched the prefix decoded, so the raw path may spell it longer (``/a%40b/`` for
    ``/a@b/``): skip as many segments as the prefix has rather than as many characters.
    """
    segments = route_prefix.count("/")
    parts = request.rel_url.raw_path.split("/", segments)
    return parts[segments] if len(parts) > segments else ""


def redirect(location: str, status: int = 302) -> web.Response:
    """A redirect response that can still take cookies (Location is always relative or from config)."""
    return web.Response(status=status, headers={"Location": location})


def static_url(app: ChainMapProxy, name: str) -> str:
    version = app[keys.STATIC_VERSIONS].get(name, "")
    return f"{app[keys.SETTINGS].hub_prefix}static/{name}" + (f"?v={version}" if version else "")


def base_context(request: web.Request) -> dict[str, object]:
    identity: Identity = request.get(keys.IDENTITY, ANONYMOUS)
    settings = request.config_dict[keys.SETTINGS]
    logged_in = not identity.anonymous and identity.kind == "user" and identity.session_id is not None
    return {
        "user": identity.user if logged_in else None,
        "xsrf": sessions.hub_xsrf_token(request, identity) if logged_in else "",
        "is_admin_ui": logged_in and identity.scopes.has("admin-ui"),
        "base_url": settings.base_url,
        "hub_prefix": settings.hub_prefix,
        "static": functools.partial(static_url, request.config_dict),
    }


def render(request: web.Request, template: str, *, status: int = 200, **context: object) -> web.Response:
    full = base_context(request)
    full.update(context)
    response = aiohttp_jinja2.render_template(template, request, full, status=status)
    response.headers["Content-Security-Policy"] = PAGE_CSP
    if full["user"] is not None:
        response.headers["Cache-Control"] = "no-store"  # pages of a session carry its XSRF token
        sessions.refresh_xsrf_cookie(request, response, request[keys.IDENTITY])
    return response


async def error_page(request: web.Request, status: int, message: str | None) -> web.StreamResponse:
    """app[keys.ERROR_PAGE]: HTML error pages for the hub (never shows a traceback)."""
    try:
        if keys.IDENTITY not in request:
            request[keys.IDENTITY] = ANONYMOUS
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Error"
        return render(request, "error.html", status=status, status_code=status, reason=reason, message=message)
    except Exception:  # the error page itself must not fail
        log.exception("Error page failed")
        body = f"<!doctype html><title>{status}</title><h1>{status}</h1><p>{html.escape(message or '')}</p>"
        return web.Response(text=body, status=status, content_type="text/html")


def ago(ts: float | None, never: str = "never") -> str:
    """'3 minutes ago' for a UNIX time (pages show rough times; the API has the exact ones)."""
    if ts is None:
        return never
    seconds = max(0, int(time.time() - ts))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


def when(ts: float | None, none: str = "\u2014") -> str:
    if ts is None:
        return none
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


@dataclass(frozen=True)
class ScopeLine:
    """One line of a consent page: what a scope allows and on which resource."""

    scope: str
    description: str
    on: str  # 'user alice', 'server alice/nb', '' when unfiltered


def describe_scopes(raw: Iterable[str]) -> list[ScopeLine]:
    """Scopes as a person reads them (the OAuth confirmation and accept-share pages)."""
    lines = []
    for scope in sorted(set(raw)):
        base, _, filt = scope.partition("!")
        definition = scopes.SCOPE_DEFINITIONS.get(base)
        kind, _, value = filt.partition("=")
        lines.append(ScopeLine(scope, definition.description if definition else base,
                               f"{kind} {value}" if value else ""))
    return lines


def mount_pages(app: web.Application, routes: web.RouteTableDef, *, skip: frozenset[str] = frozenset()) -> None:
    """Register a page module's routes (paths relative to the hub prefix) in the pages' sub-app, but those
    at a path in ``skip``."""
    hub = app[keys.HUB_APP]
    for route in routes:
        assert isinstance(route, web.RouteDef)
        if route.path not in skip:
            hub.router.add_route(route.method, route.path, route.handler, **route.kwargs)


async def add_slash(request: web.Request) -> web.StreamResponse:
    # Location exactly as configured: web.HTTPMovedPermanently would decode base_url's escapes
    return redirect(request.config_dict[keys.SETTINGS].hub_prefix, 301)


async def to_hub(request: web.Request) -> web.StreamResponse:
    """``<base_url>`` → 302 ``<base_url>hub/``, keeping the query (JupyterHub's PrefixRedirectHandler for it)."""
    query = request.rel_url.raw_query_string
    raise found(request.config_dict[keys.SETTINGS].hub_prefix + (f"?{query}" if query else ""))


def setup(app: web.Application) -> None:
    settings = app[keys.SETTINGS]
    aiohttp_jinja2.setup(app, loader=jinja2.PackageLoader("gateway.pages", "templates"), autoescape=True,
                         default_helpers=False, trim_blocks=True, lstrip_blocks=True,
                         filters={"ago": ago, "when": when})
    app[keys.STATIC_VERSIONS] = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:12]
                            for p in STATIC_DIR.iterdir() if p.is_file()}
    hub = app[keys.HUB_APP]
    hub.router.add_static("/static/", STATIC_DIR, name="gateway-static")
    hub.router.add_get("", add_slash)  # <base_url>hub, the sub-app's own prefix
    # a root route: no middleware checks it (the hub's parts have theirs)
    app.router.add_get(settings.base_route, strict_handler(to_hub, lambda request: settings.max_body_size))
    app[keys.ERROR_PAGE] = error_page
