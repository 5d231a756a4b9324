"""/hub/login and /hub/logout.

Login (JupyterHub's LoginHandler): GET shows the form (a logged-in user is sent on to ``next``);
POST checks the login-form XSRF token (login CSRF), then the throttled authenticator, then starts a
session and redirects (302) to the validated ``next`` or the landing page. A wrong password is a
403 with the form again and no session cookie; a throttled name or address is a 429 with
``Retry-After``. Logout deletes the session in the store (every copy of the cookie dies with it),
clears the cookies, stops the user's servers when ``shutdown_on_logout``, and sends the browser to
the login page.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from aiohttp import web

from gateway import keys
from gateway.errors import ApiError
from gateway.ops.accounts import stop_all_servers
from gateway.pages import plugin_pages, redirect_login, sessions
from gateway.pages.kit import found, landing_url, mount_pages, page, page_identity, redirect, render
from gateway.pages.redirects import safe_next_url

log = logging.getLogger("gateway.login")

routes = web.RouteTableDef()
ECHO_LIMIT = 255  # a longer typed name is not shown back (bounded reflection)


def _next_of(request: web.Request, form=None) -> str | None:
    raw = request.query.get("next")
    if raw is None and form is not None:
        value = form.get("next")
        raw = value if isinstance(value, str) else None
    return safe_next_url(raw, request)


def plugin_login_url(request: web.Request) -> str | None:
    """Where a plugin logs people in instead of the form: OAuth's /hub/oauth_login, or its own login page."""
    return redirect_login.login_path(request.config_dict) or plugin_pages.login_page(request.config_dict)


def _otp_prompt(request: web.Request) -> str:
    """A form-login plugin's ``otp_prompt`` when it sets ``request_otp`` (JupyterHub 5+), else ''."""
    plugin = getattr(request.config_dict[keys.AUTHENTICATOR], "plugin", None)
    return str(plugin.otp_prompt or "OTP:") if getattr(plugin, "request_otp", False) else ""


def _form(request: web.Request, *, status: int = 200, message: str = "", username: str = "",
          next_url: str | None = None, headers: dict[str, str] | None = None) -> web.Response:
    xsrf, fresh_nonce = sessions.login_form_xsrf(request)
    authenticator = request.config_dict[keys.AUTHENTICATOR]
    response = render(request, "login.html", status=status, message=message, login_xsrf=xsrf,
                      username=username if len(username) <= ECHO_LIMIT else "", next_url=next_url or "",
                      authenticator=request.config_dict[keys.SETTINGS].authenticator_class,
                      redirect_login_url=plugin_login_url(request) or "",
                      login_service=getattr(authenticator, "login_service", "") or "your identity provider",
                      otp_prompt=_otp_prompt(request))
    if fresh_nonce:
        sessions.set_login_nonce(request, response, fresh_nonce)
    response.headers.update(headers or {})
    return response


@routes.get("/login")
@page(login=False)
async def login_form(request: web.Request) -> web.StreamResponse:
    identity = request[keys.IDENTITY]
    next_url = _next_of(request)
    if not identity.anonymous:
        raise found(next_url or landing_url(request, identity.user))  # type: ignore[arg-type]
    plugin_login = plugin_login_url(request)
    plugin = getattr(request.config_dict[keys.AUTHENTICATOR], "plugin", None)
    if plugin_login and getattr(plugin, "auto_login", False):
        # auto_login: straight to the provider, as JupyterHub's LoginHandler does
        raise found(plugin_login + (f"?next={quote(next_url, safe='')}" if next_url else ""))
    return _form(request, next_url=next_url)


@routes.post("/login")
@page(login=False)
async def login_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    next_url = _next_of(request, form)
    username, password, presented = (form.get(k) for k in ("username", "password", "_xsrf"))
    username = username if isinstance(username, str) else ""
    password = password if isinstance(password, str) else ""
    if not sessions.check_login_xsrf(request, presented if isinstance(presented, str) else None):
        log.warning("Refused a login post without a valid login-form XSRF token from %s", request.remote)
        return _form(request, status=403, next_url=next_url, username=username,
                     message="This login form expired or was sent from another site. Please log in again.")
    authenticator = request.config_dict[keys.AUTHENTICATOR]
    extra = {}
    if authenticator.kind == "plugin":  # a JupyterHub plugin's authenticate(handler, data) sees the whole form
        extra = {"request": request, "form": {k: [v for v in form.getall(k) if isinstance(v, str)] for k in form}}
    try:
        user = await authenticator.login(username, password, request.remote, **extra)
    except ApiError as e:
        if e.status >= 500:
            raise
        # 429 while throttled; a plugin may refuse with its own status and message (tornado's HTTPError)
        return _form(request, status=e.status, message=e.message or "", username=username, next_url=next_url,
                     headers=e.headers)
    if user is None:
        return _form(request, status=403, message="Invalid username or password", username=username,
                     next_url=next_url)
    response = redirect(next_url or landing_url(request, user))
    await sessions.start_session(request, response, user, previous=request[keys.IDENTITY])
    log.info("User %s logged in from %s", user.name, request.remote)
    return response


@routes.get("/logout")
@routes.post("/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    identity = await page_identity(request)
    settings = request.config_dict[keys.SETTINGS]
    # a plugin's logout hook (oauthenticator's logout_redirect_url: the provider's own logout page)
    after_logout = getattr(request.config_dict[keys.AUTHENTICATOR], "logout_redirect_url", "")
    response = redirect(after_logout or settings.hub_prefix + "login")
    if not identity.anonymous and identity.user is not None:
        if settings.shutdown_on_logout:
            config = request.config_dict
            await stop_all_servers(config[keys.SERVERS], config[keys.AUTHENTICATOR], identity.user)
        log.info("User %s logged out", identity.user.name)
    await sessions.end_session(request, response, identity)
    return response


def setup(app: web.Application) -> None:
    """The login form and logout; the form steps aside when a plugin's own page is ``/login``."""
    mount_pages(app, routes, skip=frozenset({"/login"}) if plugin_pages.claims_login(app) else frozenset())
