"""Redirect targets that stay on this host: ``safe_next_url`` for ``next=`` and friends.

A ``next`` value is read the way a browser would read it in a Location header (WHATWG URL
parsing): leading/trailing C0 controls and spaces stripped, tabs/CR/LF removed anywhere, ``\\``
taken as ``/``, and two or more leading slashes meaning "another host". What survives is a path
on this host (with query and fragment), or nothing:

- ``/hub/home?x=1`` stays;
- an absolute ``http(s)`` URL naming exactly this host (``public_url``'s host, or the one the
  request was sent to) with no user info becomes ``"/" + path.lstrip("/")`` — so
  ``http://H//evil/`` is ``/evil/`` and never ``//evil/`` (CVE-2026-33709);
- ``//evil``, ``///evil``, ``\\\\evil``, ``/\\evil``, ``https://evil``, ``http:evil``, ``javascript:``,
  ``data:``, relative paths and anything else: dropped (None), as JupyterHub drops them.

Location headers built from the result are relative; the request's ``Host`` or
``X-Forwarded-Host`` is never copied into one (promise 9).
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

from aiohttp import web

from gateway import keys

MAX_NEXT_LENGTH = 4096
_C0_OR_SPACE = "".join(chr(c) for c in range(0x21))
_TAB_NEWLINE = re.compile(r"[\t\n\r]")
_LEADING_SLASHES = re.compile(r"^/{2,}")
# Characters kept as they are when the result is made safe for a header: URL syntax and '%'.
_SAFE = "/?#[]@!$&'()*+,;=:%~-._"


def _own_hosts(request: web.Request | None) -> set[str]:
    hosts = set()
    if request is not None:
        public = request.config_dict[keys.SETTINGS].public_url
        if public:
            hosts.add(urlsplit(public).netloc.lower())
        if request.host:
            hosts.add(request.host.lower())
    return hosts


def _path_of(parts) -> str:
    path = "/" + parts.path.lstrip("/")
    if parts.query:
        path += "?" + parts.query
    if parts.fragment:
        path += "#" + parts.fragment
    return path


def safe_next_url(value: str | None, request: web.Request | None = None) -> str | None:
    """``value`` as a same-host path (see the module docstring), or None if it must be dropped."""
    if not value or len(value) > MAX_NEXT_LENGTH:
        return None
    url = _TAB_NEWLINE.sub("", value.strip(_C0_OR_SPACE)).replace("\\", "/")
    if not url:
        return None
    if url.startswith("//"):
        url = _LEADING_SLASHES.sub("//", url)  # '///evil' is '//evil' to a browser
        parts = urlsplit("http:" + url)
    else:
        parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
            return None
        if parts.netloc.lower() not in _own_hosts(request):
            return None
        result = _path_of(parts)
    elif url.startswith("/"):
        result = url
    else:
        return None  # relative paths, 'evil.example', ...
    if not result.startswith("/") or result.startswith("//") or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in result):
        return None
    return quote(result, safe=_SAFE)


def make_base_spelling_middleware(base_url: str, base_route: str):
    """A browser that reached a page through another spelling of base_url (``/a@b/`` for the
    configured ``/a%40b/``, or the reverse) is sent to the configured one, where its cookies live
    (cookie paths are compared as written: ``/a%40b/`` cookies never go to ``/a@b/``, and login
    would loop).
    Only GET/HEAD navigations without an Authorization header: API clients work in either spelling.
    """
    segments = base_route.count("/")

    @web.middleware
    async def base_spelling(request: web.Request, handler):
        raw = request.raw_path
        if (request.method in ("GET", "HEAD") and not raw.startswith(base_url)
                and request.path.startswith(base_route) and "Authorization" not in request.headers):
            rest = raw.split("/", segments)[-1]  # after base_url, however it was spelt (it matched decoded)
            return web.Response(status=302, headers={"Location": base_url + rest})
        return await handler(request)

    return base_spelling
