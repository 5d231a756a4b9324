"""Which backend serves a request path, decided on one canonical path.

Vocabulary:

raw path
    the request target exactly as the client sent it (percent-encoded, with
    its query string). It is what the backend receives, unchanged.
canonical path
    the raw path's path part percent-decoded exactly once and validated.
    Route choice *and* the ownership check both use it (security promise 1:
    CHP routed on a normalised path while forwarding the raw one, which is
    only safe when every backend re-authenticates; here the gateway is the
    authenticator). Paths that a browser, Node, Java or the backend might read
    differently are refused (:class:`BadPath`, a 400) instead of normalised:
    dot-segments (raw or encoded, also ``..;``), an encoded ``/``, any ``\\``,
    NUL and other control characters, a leading ``//``, an empty user,
    service or server name, invalid UTF-8.
prefix
    where a backend is mounted, in URL (percent-encoded) form and including
    ``base_url``: ``/user/alice/`` (default server), ``/user/alice/nb/`` (named
    server), ``/services/grader/``.
kind
    the URL segment after ``base_url``: ``user`` or ``services``. A
    :class:`Route` spells the service kind ``service``.
rest
    the canonical path after ``/<kind>/<name>``: ``""`` (no trailing slash
    yet: redirect to add it), ``"/"``, ``"/nb/lab"`` ...

Names are matched as whole path segments against dictionary keys, never with
``startswith`` (CVE-2026-35397: alice's route must never serve ``/user/alicex/``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote, unquote_to_bytes

__all__ = [
    "BadPath",
    "Route",
    "RouteTable",
    "canonical_target",
    "origin_form",
    "user_prefix",
    "service_prefix",
]

KINDS = ("user", "services")
# C0 controls and DEL: never part of a legitimate path, and NUL truncates
# strings in C-based backends.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# raw: any backslash (raw or %5c), a fragment, an encoded slash
_BAD_RAW = re.compile(r"[\\#]|%(?:2[fF]|5[cC])")
_DOT_SEGMENT = re.compile(r"(?:^|/)\.{1,2}(?:;[^/]*)?(?=/|$)")
# absolute-form request target: scheme "://" authority, then the path.
_ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*")


class BadPath(ValueError):
    """The request path is ambiguous or malformed; answer 400."""


@dataclass(frozen=True)
class Route:
    """One backend mounted at ``prefix``.

    prefix: URL form incl. base_url, ends with ``/`` (``/user/alice/nb/``).
    target: ``http://127.0.0.1:PORT`` (scheme, host, port; no path).
    kind: ``"user"`` or ``"service"``.
    user: owner for kind user, else None.
    server_name: ``""`` for the default server.
    service: service name for kind service, else None.
    secret: token the gateway sends to this backend as ``Authorization: token <secret>``.
    """

    prefix: str
    target: str
    kind: str
    user: str | None
    server_name: str
    service: str | None
    secret: str

    def __repr__(self) -> str:  # keep the secret out of logs and tracebacks
        return f"Route(prefix={self.prefix!r}, target={self.target!r}, kind={self.kind!r})"

    @property
    def key(self) -> tuple[str, str, str]:
        """(kind segment, decoded name, server_name): the table's lookup key."""
        if self.kind == "service":
            return ("services", self.service or "", "")
        return ("user", self.user or "", self.server_name)


def _join_base(base_url: str) -> str:
    return base_url if base_url.endswith("/") else base_url + "/"


def _quote_segment(name: str) -> str:
    # the same escaping JupyterHub applies to user names in URLs
    return quote(name, safe="@~")


def user_prefix(base_url: str, user: str, server_name: str = "") -> str:
    """URL-form prefix of a user's server: ``<base_url>user/<name>/[<server>/]``."""
    prefix = f"{_join_base(base_url)}user/{_quote_segment(user)}/"
    if server_name:
        prefix += f"{_quote_segment(server_name)}/"
    return prefix


def service_prefix(base_url: str, service: str) -> str:
    """URL-form prefix of a service: ``<base_url>services/<name>/``."""
    return f"{_join_base(base_url)}services/{_quote_segment(service)}/"


def origin_form(raw_target: str) -> str:
    """The path-and-query of a request target.

    An absolute-form target (``http://host/path?q``) keeps only its path: the
    gateway is never a forward proxy, it routes by path alone and never
    connects to the host named there. Authority-form (CONNECT) and ``*``
    raise :class:`BadPath`.
    """
    if raw_target.startswith("/"):
        return raw_target
    m = _ABSOLUTE.match(raw_target)
    if m is None:
        raise BadPath("request target must be a path")
    rest = raw_target[m.end():]
    if rest.startswith("#"):
        rest = ""
    return rest if rest.startswith("/") else "/" + rest


def _decode_path(raw_path: str) -> str:
    """Percent-decode once and refuse what could be read two ways."""
    path = raw_path.partition("?")[0]
    if _BAD_RAW.search(path):
        raise BadPath("backslash, fragment or encoded slash in path")
    if "%" in path:
        try:
            decoded = unquote_to_bytes(path).decode("utf-8")
        except UnicodeDecodeError:
            raise BadPath("path is not UTF-8") from None
    else:
        decoded = path
    if _CONTROL.search(decoded):
        raise BadPath("control character in path")
    if decoded.startswith("//"):
        raise BadPath("path starts with //")
    # "..;" is ".." to Java servlet containers (path parameters)
    if "." in decoded and _DOT_SEGMENT.search(decoded):
        raise BadPath("dot-segment in path")
    return decoded


@lru_cache(maxsize=16)
def _decoded_base(base_url: str) -> str:
    return _decode_path(_join_base(base_url))


def canonical_target(raw_path: str, base_url: str) -> tuple[str, str, str] | None:
    """Decode ``raw_path`` once, validate it, and split off the proxied part.

    Returns ``(kind, name, rest)`` with kind ``"user"`` or ``"services"`` for
    ``<base_url>user/<name>...`` and ``<base_url>services/<name>...``, or None
    for any other (valid) path. The whole path is validated, proxied or not,
    so ``/hub/../user/x/`` is refused too. ``raw_path`` may carry a query
    string; an absolute-form target is reduced with :func:`origin_form`.
    Raises :class:`BadPath`.
    """
    decoded = _decode_path(raw_path if raw_path.startswith("/") else origin_form(raw_path))
    base = _decoded_base(base_url)
    if not decoded.startswith(base):
        return None
    tail = decoded[len(base):]
    if tail.startswith("/"):
        raise BadPath("empty segment after base_url")
    kind, sep, after = tail.partition("/")
    if kind not in KINDS or not sep:
        return None
    name, slash, rest = after.partition("/")
    if not name:
        raise BadPath(f"empty name after /{kind}/")
    return kind, name, slash + rest


class RouteTable:
    """In-memory routes, keyed both by prefix and by (kind, name, server).

    ``lookup`` is two dictionary probes: the named server whose name is the
    first segment of ``rest``, else the default server. No string prefix
    matching, so names can never bleed into each other.
    """

    def __init__(self) -> None:
        self._by_prefix: dict[str, Route] = {}
        self._by_key: dict[tuple[str, str, str], Route] = {}

    def add(self, route: Route) -> None:
        """Add or replace the route at ``route.prefix``."""
        if route.kind not in ("user", "service"):
            raise ValueError(f"unknown route kind {route.kind!r}")
        if not route.prefix.endswith("/"):
            raise ValueError("route prefix must end with /")
        old = self._by_prefix.get(route.prefix)
        if old is not None:
            self._by_key.pop(old.key, None)
        self._by_prefix[route.prefix] = route
        self._by_key[route.key] = route

    def remove(self, prefix: str) -> Route | None:
        """Remove and return the route at ``prefix`` (None if absent)."""
        route = self._by_prefix.pop(prefix, None)
        if route is not None and self._by_key.get(route.key) is route:
            del self._by_key[route.key]
        return route

    def get(self, prefix: str) -> Route | None:
        return self._by_prefix.get(prefix)

    def lookup(self, kind: str, name: str, rest: str) -> Route | None:
        """The route for a canonical target (see :func:`canonical_target`)."""
        if kind == "service":
            kind = "services"
        if kind == "user" and rest.startswith("/"):
            first = rest[1:].split("/", 1)[0]
            if first:
                route = self._by_key.get((kind, name, first))
                if route is not None:
                    return route
        return self._by_key.get((kind, name, ""))

    def all(self) -> list[Route]:
        return sorted(self._by_prefix.values(), key=lambda r: r.prefix)

    def __len__(self) -> int:
        return len(self._by_prefix)
