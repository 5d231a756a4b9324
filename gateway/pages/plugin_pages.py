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

from aiohttp import web

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
    from tornado import web as tornado_web

    from gateway.authenticators.plugin import load_plugin_class

    cls = load_plugin_class(settings.authenticator_plugin)
    oauth = {getattr(cls, "login_handler", None), getattr(cls, "callback_handler", None)}
    probe = cls.__new__(cls)  # traitlets: trait defaults only, no config, no validation
    paths = []
    for pattern, handler_class, *_ in probe.get_handlers(app):
        if not (isinstance(handler_class, type) and issubclass(handler_class, tornado_web.RequestHandler)):
            continue
        if handler_class in oauth or handler_class.__module__.split(".")[0] == "jupyterhub":
            continue  # OAuth's are redirect_login's; JupyterHub's own (its LoginHandler) are gateway's pages
        path = pattern[:-1] if pattern.endswith("$") else pattern
        if not LITERAL_PATH.fullmatch(path):
            log.warning("%s's handler %s at %r is not mounted: only literal paths are", cls.__name__,
                        handler_class.__name__, pattern)
            continue
        paths.append((path, handler_class))
    return paths


def claims_login(app: web.Application) -> bool:
    """The plugin's own page is ``/login``: gateway's login form steps aside."""
    return any(path.rstrip("/") == "/login" for path, _ in plugin_paths(app))


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
        content_type = next((v for k, v in handler.out_headers if k.lower() == "content-type"), "text/html")
        response = web.Response(status=handler.status or 200, body=b"".join(handler.__dict__.get("_written", [])),
                                headers={"Content-Type": content_type})
        handler.out_headers = [(k, v) for k, v in handler.out_headers if k.lower() != "content-type"]
    handler.apply_to(response)
    return response


def setup(app: web.Application) -> None:
    """Mount the plugin's extra pages (before ``login.setup``, which leaves ``/login`` to the plugin's)."""
    hub = app[keys.HUB_APP]
    for path, handler_class in plugin_paths(app):
        hub.router.add_get(path, plugin_page(handler_class))
