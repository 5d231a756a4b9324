"""Run a redirect-login plugin's own tornado handlers (oauthenticator's ``login_handler`` and
``callback_handler``) on an aiohttp request.

JupyterHub mounts ``authenticator.login_handler`` at ``/hub/oauth_login`` and ``callback_handler`` at
``/hub/oauth_callback``; both subclass tornado's ``RequestHandler`` through JupyterHub's ``BaseHandler``.
``plugin_handler(cls, adapter, request)`` makes an instance of a subclass of the plugin's ``cls`` whose
first base is the adapter's ``PluginHandler`` (arguments, cookies, redirect, ``authenticator``, ``hub``,
``log``; see ``authenticators.handler_shim``), so the plugin's own logic runs unchanged: its authorize URL,
state and PKCE verifier on the way out, its error/code/state checks on the way back, and JupyterHub's
``BaseHandler._set_cookie`` for the state cookie. Tornado's ``__init__`` is never run: no tornado
connection stands behind the request.

The state cookie is tornado-signed with the cookie secret (as under JupyterHub), HttpOnly,
SameSite=Lax (the provider's redirect back is a top-level GET), and lives ``STATE_MAX_AGE`` seconds,
not JupyterHub's day: a login that takes longer starts again.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.authenticators.handler_shim import PluginHandler

STATE_MAX_AGE = 600  # seconds a browser has to come back from the provider


def _instance_attribute(name: str) -> property:
    """A plain per-instance attribute, standing in for a tornado/BaseHandler property of the same name."""
    slot = "_shim_" + name
    return property(lambda self: self.__dict__.get(slot), lambda self, value: self.__dict__.__setitem__(slot, value))


class RedirectPluginHandler(PluginHandler):
    """``PluginHandler`` placed ahead of a plugin's tornado handler class in the MRO."""

    # RequestHandler and BaseHandler define these as read-only properties; PluginHandler assigns them.
    settings = _instance_attribute("settings")
    log = _instance_attribute("log")
    authenticator = _instance_attribute("authenticator")
    hub = _instance_attribute("hub")
    base_url = _instance_attribute("base_url")
    current_user = _instance_attribute("current_user")

    def set_cookie(self, name: str, value: str | bytes, domain: str | None = None, expires: Any = None,
                   path: str = "/", expires_days: float | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("samesite", "Lax")
        expires_days = min(expires_days or 1, STATE_MAX_AGE / 86400)
        super().set_cookie(name, value, domain=domain, path=path, expires_days=expires_days, **kwargs)

    def get_secure_cookie(self, name: str, value: str | None = None, max_age_days: float = 31,
                          min_version: int | None = None) -> bytes | None:
        found = super().get_secure_cookie(name, value, max_age_days=min(max_age_days, STATE_MAX_AGE / 86400),
                                          min_version=min_version)
        if found is None and self.get_cookie(name):
            self.log.warning("Ignored a %s cookie with a bad signature or too old", name)
        return found


_classes: dict[type, type] = {}


def plugin_handler(cls: type, adapter: Any, request: web.Request) -> Any:
    """An instance of the plugin's handler class ``cls`` running on ``request``."""
    shimmed = _classes.get(cls)
    if shimmed is None:
        shimmed = _classes[cls] = type(f"Gateway{cls.__name__}", (RedirectPluginHandler, cls), {})
    return adapter.handler_for(request, handler_class=shimmed)
