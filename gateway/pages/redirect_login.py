"""Redirect logins (OAuth2 / OpenID Connect through oauthenticator): ``/hub/oauth_login`` → the
identity provider → ``/hub/oauth_callback``.

How the work is split between the plugin and gateway:
- Way out (``login_handler``): the plugin's own handler runs through ``redirect_handlers``. It builds
  the authorize URL (client id, redirect URI, scope, its extra params), the state, the PKCE S256
  challenge (``enable_pkce``), and writes the state (state id, ``next``, PKCE verifier) to the signed
  state cookie, which binds the login to this browser for ``STATE_MAX_AGE`` seconds.
- Way back: gateway drives the callback and calls the plugin's parts: its ``check_arguments`` (provider
  error, code present, URL state equal to the cookie's), then ``get_authenticated_user(handler, None)``
  through the authenticator adapter (code exchange with the verifier, userdata, allow/admin/groups,
  auth_state). Gateway does the rest itself: each state is accepted once (a replayed callback is refused
  even with the cookie), the session starts as for form logins, ``next`` passes ``safe_next_url``.
  The plugin's ``OAuthCallbackHandler.get`` itself is not run: it ends in JupyterHub's ``login_user``
  and ``get_next_url``, which are the hub's jobs here.

Failures are clear pages: 400 (bad or replayed state, no code, provider error), 403 (not allowed),
502 (the provider did not answer as it should); never a traceback, and no session.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import inspect
import json
import logging
import time
from collections import OrderedDict
from typing import Any

from aiohttp import ChainMapProxy, web

from gateway import keys
from gateway.errors import ApiError
from gateway.pages import sessions
from gateway.pages.kit import landing_url, page
from gateway.pages.redirects import safe_next_url

# tornado and the plugin adapter (gateway.authenticators.plugin, gateway.pages.redirect_handlers) are
# imported inside the functions: only a gateway configured with a plugin authenticator loads them.

log = logging.getLogger("gateway.login.redirect")

STATE_COOKIE = "oauthenticator-state"  # oauthenticator's name, path "/" as JupyterHub sets it
USED_STATES_LIMIT = 10_000
NOT_ALLOWED = "Sorry, you are not currently authorized to use this hub. Please contact the hub administrator."
PROVIDER_FAILED = "The identity provider did not answer as expected. Please try again later."
PLUGIN_FAILED = "The login service failed. Please try again later."
USED_STATES = web.AppKey("oauth_used_states", OrderedDict)


def _is_tornado_handler(value: Any) -> bool:
    from tornado import web as tornado_web

    return isinstance(value, type) and issubclass(value, tornado_web.RequestHandler)


def redirect_plugin(app: ChainMapProxy) -> Any | None:
    """The running plugin when it logs people in by redirect (it has tornado login/callback handlers)."""
    if app[keys.SETTINGS].authenticator_class != "plugin":
        return None
    plugin = getattr(app.get(keys.AUTHENTICATOR), "plugin", None)
    if _is_tornado_handler(getattr(plugin, "login_handler", None)) and \
            _is_tornado_handler(getattr(plugin, "callback_handler", None)):
        return plugin
    return None


def login_path(app: ChainMapProxy) -> str | None:
    """Where the login page's button (and ``auto_login``) sends browsers, or None for form logins."""
    plugin = redirect_plugin(app)
    return plugin.login_url(app[keys.SETTINGS].hub_prefix) if plugin is not None else None


def _clear_state() -> dict[str, str]:
    return {"Set-Cookie": f"{STATE_COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax"}


def as_api_error(e: Exception) -> ApiError:
    """A plugin's or provider's failure as a clear page: a 4xx as it is, anything else a 502."""
    from tornado import httpclient
    from tornado import web as tornado_web

    from gateway.authenticators.plugin import http_error_message

    if isinstance(e, ApiError):  # the adapter's: the plugin's own HTTPError, or 503 for other failures
        status, message = e.status, e.message or ""
    elif isinstance(e, tornado_web.HTTPError):
        status, message = e.status_code, http_error_message(e)
    elif isinstance(e, httpclient.HTTPClientError):
        status, message = 502, f"the identity provider answered {e.code}"
    else:
        status, message = 502, f"cannot reach the identity provider ({type(e).__name__})"
    if 400 <= status < 500:
        return ApiError(status, message or "Login failed", headers=_clear_state())
    log.warning("Redirect login failed (%d): %s", status, message)
    return ApiError(502, PROVIDER_FAILED, headers=_clear_state())


def plugin_failures() -> tuple[type[Exception], ...]:
    from tornado import httpclient
    from tornado import web as tornado_web

    return ApiError, tornado_web.HTTPError, httpclient.HTTPClientError, OSError


async def run_plugin_get(handler: Any) -> None:
    """A plugin handler's ``get``; its refusals and failures as clear pages (ApiError), never a traceback."""
    try:
        result = handler.get()
        if inspect.isawaitable(result):
            await result
    except plugin_failures() as e:
        raise as_api_error(e) from None
    except Exception as e:  # the plugin's own bug: a clear page, the reason in one log line
        log.error("%s.get failed: %s: %s", type(handler).__name__, type(e).__name__, e)
        raise ApiError(503, PLUGIN_FAILED, headers=_clear_state()) from None


def _found(url: str) -> web.Response:
    return web.Response(status=302, headers={"Location": url, "Cache-Control": "no-store"})


async def oauth_login(request: web.Request) -> web.StreamResponse:
    plugin = redirect_plugin(request.config_dict)
    if plugin is None:
        raise web.HTTPNotFound()
    from gateway.pages.redirect_handlers import plugin_handler

    handler = plugin_handler(plugin.login_handler, request.config_dict[keys.AUTHENTICATOR], request)
    await run_plugin_get(handler)
    if handler.redirect_url is None:
        log.error("%s.get did not redirect", type(handler).__name__)
        raise ApiError(502, PROVIDER_FAILED)
    response = _found(handler.redirect_url)
    handler.apply_to(response)
    return response


def _accept_once(app: ChainMapProxy, state: str) -> bool:
    """True the first time a state comes back; remembered for as long as a state cookie is valid."""
    from gateway.pages.redirect_handlers import STATE_MAX_AGE

    used: OrderedDict = app[USED_STATES]
    now = time.monotonic()
    while used and next(iter(used.values())) < now:
        used.popitem(last=False)
    key = hashlib.sha256(state.encode("utf-8", "replace")).hexdigest()
    if key in used:
        return False
    if len(used) >= USED_STATES_LIMIT:
        used.popitem(last=False)
    used[key] = now + STATE_MAX_AGE
    return True


def _next_from_state(cookie_state: str) -> str | None:
    """``next_url`` as oauthenticator writes it into the state (base64url JSON)."""
    try:
        state = json.loads(base64.urlsafe_b64decode(cookie_state.encode("ascii")).decode("utf-8"))
    except (ValueError, UnicodeError, binascii.Error):
        return None
    value = state.get("next_url") if isinstance(state, dict) else None
    return value if isinstance(value, str) else None


@page(login=False)
async def oauth_callback(request: web.Request) -> web.StreamResponse:
    plugin = redirect_plugin(request.config_dict)
    if plugin is None:
        raise web.HTTPNotFound()
    adapter = request.config_dict[keys.AUTHENTICATOR]
    from gateway.pages.redirect_handlers import plugin_handler

    handler = plugin_handler(plugin.callback_handler, adapter, request)
    try:
        handler.check_arguments()  # the plugin's: provider error, code present, URL state == cookie state
        cookie_state = handler.get_state_cookie()
        if not _accept_once(request.config_dict, cookie_state):
            log.warning("Refused a replayed OAuth callback from %s", request.remote)
            raise ApiError(400, "OAuth state already used: please log in again", headers=_clear_state())
        model = await adapter.authenticated_model(handler, None)  # code exchange, userdata, allow rules
        user = await adapter.apply_auth_model(model) if model is not None else None
    except plugin_failures() as e:
        raise as_api_error(e) from None
    if user is None:
        log.warning("Refused a login through %s from %s", type(plugin).__name__, request.remote)
        raise ApiError(403, getattr(plugin, "custom_403_message", "") or NOT_ALLOWED, headers=_clear_state())
    next_url = safe_next_url(_next_from_state(cookie_state), request)
    response = _found(next_url or landing_url(request, user))
    handler.apply_to(response)
    await sessions.start_session(request, response, user, previous=request[keys.IDENTITY])
    log.info("User %s logged in through %s from %s", user.name, type(plugin).__name__, request.remote)
    return response


def _handler_paths(app: web.Application) -> list[tuple[str, Any]]:
    """OAuth's login and callback among the plugin's ``get_handlers`` (JupyterHub mounts them under the
    hub prefix), read at setup (``plugin_handlers``)."""
    settings = app[keys.SETTINGS]
    if settings.authenticator_class != "plugin":
        return []
    from gateway.authenticators.plugin import load_plugin_class, plugin_handlers

    cls = load_plugin_class(settings.authenticator_plugin)
    if not (_is_tornado_handler(getattr(cls, "login_handler", None))
            and _is_tornado_handler(getattr(cls, "callback_handler", None))):
        return []
    handlers = []
    for pattern, handler_class in plugin_handlers(settings.authenticator_plugin):
        if handler_class is cls.login_handler:
            handlers.append((pattern, oauth_login))
        elif handler_class is cls.callback_handler:
            handlers.append((pattern, oauth_callback))
    return handlers


def setup(app: web.Application) -> None:
    """Mount the plugin's login and callback paths (its ``/logout`` stays gateway's own)."""
    app[USED_STATES] = OrderedDict()
    hub = app[keys.HUB_APP]
    for pattern, route_handler in _handler_paths(app):
        hub.router.add_get(pattern, route_handler)
