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

import asyncio
import json
from typing import Any

from aiohttp import web

from gateway import keys
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


    # ------------------------------------------------ JupyterHub BaseHandler's, for a plugin's own pages
    # (``plugin_pages`` puts ``(request, adapter)`` in ``_gateway`` before it runs the handler)

    async def login_user(self, data: Any = None) -> Any:
        """The plugin's ``get_authenticated_user`` through the adapter (allow/block/admin rules, hooks),
        then the user record as for any login; the page starts gateway's session. None: not let in."""
        request, adapter = self.__dict__["_gateway"]
        model = await adapter.authenticated_model(self, data)
        user = await adapter.apply_auth_model(model) if model is not None else None
        if user is None:
            self.log.warning("Failed login through %s from %s", type(self).__name__, request.remote)
        else:
            self.current_user = user
        self.__dict__["_gateway_user"] = user
        return user

    def get_next_url(self, user: Any = None, default: str | None = None) -> str:
        """``next`` if it passes the safe-redirect rule, else ``default``, else the user's landing page."""
        from gateway.pages.kit import landing_url
        from gateway.pages.redirects import safe_next_url

        request, _ = self.__dict__["_gateway"]
        safe = safe_next_url(self.get_argument("next", None), request)
        if safe:
            return safe
        if default:
            return default
        return landing_url(request, user) if user is not None else request.config_dict[keys.SETTINGS].hub_prefix

    def write(self, chunk: Any) -> None:
        if isinstance(chunk, dict):
            chunk = json.dumps(chunk)
            self.set_header("Content-Type", "application/json; charset=UTF-8")
        if not isinstance(chunk, (str, bytes, bytearray, memoryview)):
            raise TypeError(f"write() only accepts bytes, str and dict objects, not {type(chunk).__name__}")
        self.__dict__.setdefault("_written", []).append(chunk.encode() if isinstance(chunk, str) else bytes(chunk))

    def finish(self, chunk: Any = None) -> asyncio.Future:
        """As tornado's: the answer is complete (sent by the page after ``get`` returns); an awaitable."""
        if chunk is not None:
            self.write(chunk)
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


_classes: dict[type, type] = {}


def _own(cls: type, name: str) -> Any:
    """``cls``'s own ``name`` when the plugin defines it (not JupyterHub's or tornado's), else None."""
    for klass in cls.__mro__:
        if name in vars(klass):
            return vars(klass)[name] if klass.__module__.split(".")[0] not in ("jupyterhub", "tornado") else None
    return None


def plugin_handler(cls: type, adapter: Any, request: web.Request) -> Any:
    """An instance of the plugin's handler class ``cls`` running on ``request``, whose ``current_user`` is
    the request's logged-in user (or None). A ``get_next_url`` of the plugin's own stays the plugin's."""
    shimmed = _classes.get(cls)
    if shimmed is None:
        own = {name: value for name in ("get_next_url",) if (value := _own(cls, name)) is not None}
        shimmed = _classes[cls] = type(f"Gateway{cls.__name__}", (RedirectPluginHandler, cls), own)
    handler = adapter.handler_for(request, handler_class=shimmed)
    identity = request.get(keys.IDENTITY)
    handler.current_user = identity.user if identity is not None and identity.via == "cookie" else None
    return handler
