"""The ``handler`` a JupyterHub Authenticator plugin receives: the parts of tornado's RequestHandler they use.

Plugins call ``authenticate(handler, data)``, ``is_admin(handler, model)``, ``post_auth_hook(auth, handler,
model)`` and ``refresh_user(user, handler)`` with a tornado ``RequestHandler`` in JupyterHub. gateway
serves aiohttp requests, so this shim gives them:

- ``handler.request``: a real ``tornado.httputil.HTTPServerRequest`` (method, uri, path, query, headers,
  body, host, protocol, ``remote_ip``, ``arguments`` / ``query_arguments`` / ``body_arguments``,
  ``cookies``, ``full_url()``);
- ``get_argument(s)``, ``get_query_argument(s)``, ``get_body_argument(s)``: as tornado, control characters
  turned into spaces and (by default) stripped;
- ``get_cookie``, ``get_secure_cookie`` (tornado's signed values, keyed with the cookie secret);
  ``set_cookie``, ``set_secure_cookie``, ``clear_cookie``, ``redirect``, ``set_status``, ``set_header``:
  recorded, and put on the gateway's answer by ``apply_to``;
- ``settings`` (``cookie_secret``, ``base_url``, ``hub_prefix``, ``login_url``, ``logout_url``),
  ``log``, ``authenticator``, ``hub`` (``base_url``, ``url``), ``base_url``, ``current_user`` (None
  before login), ``find_user(name)`` is not provided (None).

Not provided (AttributeError): ``render_template``, ``write``/``finish`` (plugins that answer the request
themselves), ``db``, ``users``, ``spawner_class``, ``statsd``, ``xsrf_token``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any
from urllib.parse import urljoin

from tornado import httputil
from tornado.web import MissingArgumentError, create_signed_value, decode_signed_value

CONTROL_CHARS = re.compile(r"[\x00-\x08\x0e-\x1f]")  # what tornado's get_argument turns into spaces
_NO_DEFAULT: Any = object()


def tornado_value(value: str, *, strip: bool) -> str:
    value = CONTROL_CHARS.sub(" ", value)
    return value.strip() if strip else value


def form_data(form: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """JupyterHub LoginHandler's ``data``: every posted field but ``_xsrf``, the last value, control
    characters as spaces; only ``username`` stripped (passwords may start or end with a space)."""
    data = {}
    for name, values in form.items():
        if name == "_xsrf" or not values:
            continue
        data[name] = tornado_value(values[-1], strip=name == "username")
    return data


def _as_bytes_lists(arguments: Mapping[str, Sequence[str]]) -> dict[str, list[bytes]]:
    return {k: [v.encode("utf-8", "surrogateescape") for v in vs] for k, vs in arguments.items()}


class PluginHandler:
    def __init__(self, *, method: str, uri: str, headers: Mapping[str, str] | Sequence[tuple[str, str]],
                 host: str, protocol: str, remote_ip: str | None, body: bytes = b"",
                 query: Mapping[str, Sequence[str]] | None = None,
                 form: Mapping[str, Sequence[str]] | None = None,
                 cookie_secret: bytes, base_url: str, hub_prefix: str, authenticator: Any,
                 log: logging.Logger):
        http_headers = httputil.HTTPHeaders()
        for name, value in (headers.items() if isinstance(headers, Mapping) else headers):
            http_headers.add(name, value)
        if "Host" not in http_headers:  # tornado requires one; a request without (an internal call) gets ours
            http_headers["Host"] = host or "127.0.0.1"
        request = httputil.HTTPServerRequest(start_line=httputil.RequestStartLine(method, uri, "HTTP/1.1"),
                                             headers=http_headers, body=body)
        request.remote_ip = remote_ip  # type: ignore[assignment]
        request.protocol = protocol
        request.query_arguments = _as_bytes_lists(query or {})
        request.body_arguments = _as_bytes_lists(form or {})
        request.arguments = {k: list(v) for k, v in request.query_arguments.items()}
        for name, values in request.body_arguments.items():
            request.arguments.setdefault(name, []).extend(values)
        self.request = request
        self.authenticator = authenticator
        self.log = log
        self.base_url = base_url
        self.hub = SimpleNamespace(base_url=hub_prefix, url=hub_prefix, prefix=hub_prefix)
        self.settings = {
            "cookie_secret": cookie_secret,
            "base_url": base_url,
            "hub_prefix": hub_prefix,
            "login_url": hub_prefix + "login",
            "logout_url": hub_prefix + "logout",
        }
        self.current_user = None
        # what the plugin asked of the answer, applied by ``apply_to``
        self.status: int | None = None
        self.redirect_url: str | None = None
        self.out_headers: list[tuple[str, str]] = []
        self.cookies_set: list[tuple[str, str, dict[str, Any]]] = []
        self.cookies_cleared: list[tuple[str, dict[str, Any]]] = []

    # ---------------------------------------------------------------- arguments

    def _values(self, source: Mapping[str, list[bytes]], name: str, strip: bool) -> list[str]:
        return [tornado_value(v.decode("utf-8", "replace"), strip=strip) for v in source.get(name, [])]

    def _one(self, source: Mapping[str, list[bytes]], name: str, default: Any, strip: bool) -> Any:
        values = self._values(source, name, strip)
        if values:
            return values[-1]
        if default is _NO_DEFAULT:
            raise MissingArgumentError(name)
        return default

    def get_argument(self, name: str, default: Any = _NO_DEFAULT, strip: bool = True) -> Any:
        return self._one(self.request.arguments, name, default, strip)

    def get_arguments(self, name: str, strip: bool = True) -> list[str]:
        return self._values(self.request.arguments, name, strip)

    def get_query_argument(self, name: str, default: Any = _NO_DEFAULT, strip: bool = True) -> Any:
        return self._one(self.request.query_arguments, name, default, strip)

    def get_query_arguments(self, name: str, strip: bool = True) -> list[str]:
        return self._values(self.request.query_arguments, name, strip)

    def get_body_argument(self, name: str, default: Any = _NO_DEFAULT, strip: bool = True) -> Any:
        return self._one(self.request.body_arguments, name, default, strip)

    def get_body_arguments(self, name: str, strip: bool = True) -> list[str]:
        return self._values(self.request.body_arguments, name, strip)

    # ---------------------------------------------------------------- cookies

    def get_cookie(self, name: str, default: str | None = None) -> str | None:
        morsel = self.request.cookies.get(name)
        return morsel.value if morsel is not None else default

    def get_secure_cookie(self, name: str, value: str | None = None, max_age_days: float = 31,
                          min_version: int | None = None) -> bytes | None:
        if value is None:
            value = self.get_cookie(name)
        return decode_signed_value(self.settings["cookie_secret"], name, value, max_age_days=max_age_days,
                                   min_version=min_version)

    def get_signed_cookie(self, *args: Any, **kwargs: Any) -> bytes | None:
        return self.get_secure_cookie(*args, **kwargs)

    def set_cookie(self, name: str, value: str | bytes, domain: str | None = None, expires: Any = None,
                   path: str = "/", expires_days: float | None = None, **kwargs: Any) -> None:
        text = value.decode() if isinstance(value, bytes) else value
        options = {"path": path, **{k.lower(): v for k, v in kwargs.items()}}
        if domain:
            options["domain"] = domain
        if expires_days is not None:
            options["max_age"] = int(expires_days * 86400)
        self.cookies_set.append((name, text, options))

    def set_secure_cookie(self, name: str, value: str | bytes, expires_days: float | None = 30,
                          version: int | None = None, **kwargs: Any) -> None:
        signed = create_signed_value(self.settings["cookie_secret"], name, value, version=version)
        self.set_cookie(name, signed, expires_days=expires_days, **kwargs)

    set_signed_cookie = set_secure_cookie

    def clear_cookie(self, name: str, path: str = "/", domain: str | None = None, **kwargs: Any) -> None:
        options: dict[str, Any] = {"path": path}
        if domain:
            options["domain"] = domain
        self.cookies_cleared.append((name, options))

    # ---------------------------------------------------------------- the answer

    def redirect(self, url: str, permanent: bool = False, status: int | None = None) -> None:
        self.redirect_url = urljoin(self.request.uri or "/", url)
        self.status = status or (301 if permanent else 302)

    def set_status(self, status_code: int, reason: str | None = None) -> None:
        self.status = status_code

    def set_header(self, name: str, value: Any) -> None:
        self.out_headers.append((name, str(value)))

    add_header = set_header

    def find_user(self, name: str) -> None:
        return None

    def apply_to(self, response: Any) -> None:
        """Put the recorded cookies and headers on an aiohttp response."""
        for name, options in self.cookies_cleared:
            response.del_cookie(name, path=options.get("path", "/"), domain=options.get("domain"))
        for name, value, options in self.cookies_set:
            response.set_cookie(name, value, path=options.get("path", "/"), domain=options.get("domain"),
                                max_age=options.get("max_age"), httponly=options.get("httponly"),
                                secure=options.get("secure"), samesite=options.get("samesite"))
        for name, value in self.out_headers:
            response.headers[name] = value
