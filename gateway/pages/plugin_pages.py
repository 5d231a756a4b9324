"""Pages an authenticator plugin adds with ``get_handlers`` beyond OAuth's login and callback (those are
``redirect_login``'s): a login from a header the site's SSO proxy sets (REMOTE_USER, Shibboleth), a
temporary-user login, and the like.

Each runs the plugin's own tornado handler class on the aiohttp request through the handler shim
(``redirect_handlers.plugin_handler``), with what JupyterHub's ``BaseHandler`` gives such handlers:
``login_user(data)`` (the plugin's ``get_authenticated_user`` through the adapter, the user record as for
any login, then gateway's session), ``get_next_url(user)`` (``next`` through the safe-redirect rule),
``write``/``finish``. GET only: gateway's pages check XSRF on state-changing methods, and a plugin's
handler would not. A literal path only (a tornado pattern with groups is not mounted, and says so). A
plugin path that is gateway's own ``/login`` replaces gateway's login form, as under JupyterHub, where a
plugin's handlers come before the hub's own.

tornado and the plugin adapter are imported inside the functions: only a gateway with such a plugin
loads them.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from aiohttp import ChainMapProxy, web

from gateway import keys
from gateway.pages import sessions
from gateway.pages.kit import page

log = logging.getLogger("gateway.login.plugin")

LITERAL_PATH = re.compile(r"/[A-Za-z0-9_\-./]*")


def plugin_paths(app: web.Application) -> list[tuple[str, type]]:
    """(path under the hub prefix, tornado handler class) for each of the plugin's extra pages."""
    settings = app[keys.SETTINGS]
    if settings.authenticator_class != "plugin":
        return []
    from jupyterhub.handlers.login import LoginHandler, LogoutHandler

    from gateway.authenticators.plugin import load_plugin_class, plugin_handlers

    cls = load_plugin_class(settings.authenticator_plugin)
    oauth = {getattr(cls, "login_handler", None), getattr(cls, "callback_handler", None)}
    paths = []
    for pattern, handler_class in plugin_handlers(settings.authenticator_plugin):
        # OAuth's are redirect_login's; login and logout pages built on JupyterHub's (its templates, its
        # cookie handling: oauthenticator's logout, nativeauthenticator's login) are gateway's own pages' job
        if handler_class in oauth or issubclass(handler_class, (LoginHandler, LogoutHandler)):
            continue
        path = pattern[:-1] if isinstance(pattern, str) and pattern.endswith("$") else pattern
        if not isinstance(path, str) or not LITERAL_PATH.fullmatch(path):
            log.warning("%s's handler %s at %r is not mounted: only literal paths are", cls.__name__,
                        handler_class.__name__, pattern)
            continue
        paths.append((path, handler_class))
    return paths


def claims_login(app: web.Application) -> bool:
    """The plugin's own page is exactly ``/login``: gateway's login form steps aside."""
    return any(path == "/login" for path, _ in plugin_paths(app))


def plugin_page(handler_class: type):
    @page(login=False)
    async def serve(request: web.Request) -> web.StreamResponse:
        from gateway.pages.redirect_handlers import plugin_handler
        from gateway.pages.redirect_login import run_plugin_get

        adapter = request.config_dict[keys.AUTHENTICATOR]
        handler = plugin_handler(handler_class, adapter, request)
        handler.__dict__["_gateway"] = (request, adapter)
        await run_plugin_get(handler)
        response = answer_of(handler)
        user = handler.__dict__.get("_gateway_user")
        if user is not None:
            await sessions.start_session(request, response, user, previous=request[keys.IDENTITY])
            log.info("User %s logged in through %s from %s", user.name, handler_class.__name__, request.remote)
        return response

    return serve


def answer_of(handler: Any) -> web.Response:
    """What the plugin's handler answered: a redirect, or what it wrote; its cookies and headers on it."""
    if handler.redirect_url is not None:
        response = web.Response(status=handler.status or 302,
                                headers={"Location": handler.redirect_url, "Cache-Control": "no-store"})
    else:
        types = [v for k, v in handler.out_headers if k.lower() == "content-type"]
        content_type = types[-1] if types else "text/html; charset=UTF-8"  # tornado: the last one set
        response = web.Response(status=handler.status or 200, body=b"".join(handler.__dict__.get("_written", [])),
                                headers={"Content-Type": content_type})
        handler.out_headers = [(k, v) for k, v in handler.out_headers if k.lower() != "content-type"]
    handler.apply_to(response)
    return response


def setup(app: web.Application) -> None:
    """Mount the plugin's extra pages, after gateway's own: a path gateway serves is not taken over (a
    warning says so), except ``/login``, which ``login.setup`` left free for the plugin's page. GET only,
    not HEAD (tornado answers HEAD 405 unless the handler has ``head``)."""
    hub = app[keys.HUB_APP]
    taken = {resource.canonical for resource in hub.router.resources()}
    mounted = set()
    for path, handler_class in plugin_paths(app):
        if path in taken:
            log.warning("%s at %s is not mounted: gateway serves that page itself", handler_class.__name__, path)
            continue
        hub.router.add_get(path, plugin_page(handler_class), allow_head=False)
        mounted.add(path)
    app[keys.PLUGIN_PAGES] = frozenset(mounted)


def login_page(app: ChainMapProxy) -> str | None:
    """The plugin's ``login_url`` when it is one of its own pages other than ``/login`` (tmpauthenticator's
    ``/tmplogin``, say): where the login page's button and ``auto_login`` send browsers, as in JupyterHub."""
    mounted = app.get(keys.PLUGIN_PAGES) or frozenset()
    plugin = getattr(app.get(keys.AUTHENTICATOR), "plugin", None)
    if not mounted or plugin is None:
        return None
    hub_prefix = app[keys.SETTINGS].hub_prefix
    url = plugin.login_url(hub_prefix)
    path = "/" + url[len(hub_prefix):] if isinstance(url, str) and url.startswith(hub_prefix) else None
    return url if path in mounted and path != "/login" else None
