"""HTTP strictness that aiohttp 3.14's own request parser leaves to us.

Measured with raw sockets against aiohttp 3.14's C parser (see
``tests/test_http_strict.py``), the parser already answers 400 to:
Content-Length together with Transfer-Encoding, duplicate or list-valued or
signed or hex Content-Length, ``Transfer-Encoding: chunked, identity``,
``xchunked``, ``identity``, a repeated Transfer-Encoding header, whitespace
before the colon, bad chunk sizes, a missing or repeated Host, obs-fold, bare
LF, control characters in header values, more than ``max_headers`` headers,
a request line or a single header line longer than its limit, NUL in the
target, an authority-form target on anything but CONNECT. It keeps idle and half-sent (slowloris) connections open for no
longer than ``keepalive_timeout``.

What it lets through, and what this module adds:

==========================================  ============================
accepted by aiohttp                         answer here
==========================================  ============================
URL longer than 8 KiB (up to the line cap)  414
header block over 16 KiB (fields <= cap)    431
``Transfer-Encoding: gzip, chunked`` ...    501 (never decoded, so never passed on)
HTTP/1.1 with an empty ``Host``             400
a ``Host`` with bytes outside visible ASCII 400 (never re-encoded towards a backend)
two ``Authorization`` headers               400 (a backend must not read one we did not check)
an ``Authorization`` outside visible ASCII  400 (tokens are ASCII; no decoding errors later)
``CONNECT``, ``TRACE``, ``TRACK``           405 (never a forward proxy; no cross-site tracing)
Content-Length over the route's limit       413 before a byte of body is read
``Expect: 100-continue`` with such a length 413 instead of ``100 Continue``
==========================================  ============================

A single line longer than the parser caps (16 KiB) is still refused by
aiohttp itself, with 400 (security-cases H5 accepts 400/414/431).

Absolute-form targets (``GET http://other/x``) are accepted and routed by
their path only (:func:`gateway.wire.routing.origin_form`).
"""

from __future__ import annotations

import functools

from typing import Any, Awaitable, Callable

from aiohttp import web
from aiohttp.http import HttpVersion11

__all__ = [
    "MAX_URL",
    "MAX_HEADER_BLOCK",
    "server_handler_args",
    "check_request",
    "make_strict_middleware",
    "make_expect_handler",
]

MAX_URL = 8 * 1024
MAX_HEADER_BLOCK = 16 * 1024
# parser caps: above the 414/431 thresholds so that those answers can be given
_LINE_CAP = 16 * 1024
_FIELD_CAP = 16 * 1024

# CONNECT: never a forward proxy; TRACE/TRACK: a backend echoing the request would reflect its
# credentials and cookies to a script that can read the answer (cross-site tracing)
_REFUSED_METHODS = frozenset({"CONNECT", "TRACE", "TRACK"})

BodyLimit = Callable[[web.Request], int]


def server_handler_args(*, keepalive_timeout: float = 75.0) -> dict[str, Any]:
    """Keyword arguments for ``web.AppRunner(app, **...)`` / ``web.run_app(handler_args=...)``.

    ``keepalive_timeout`` bounds idle connections and connections that never
    finish their request head. ``lingering_time`` bounds how long the body of
    a refused request is read and thrown away.
    """
    return {
        "max_line_size": _LINE_CAP,
        "max_field_size": _FIELD_CAP,
        "max_headers": 128,
        "keepalive_timeout": keepalive_timeout,
        "lingering_time": 2.0,
    }


def check_request(request: web.BaseRequest, max_body: int) -> web.HTTPException | None:
    """The refusal for a request aiohttp's parser let through, or None."""
    raw = request.raw_path
    if request.method in _REFUSED_METHODS:
        return web.HTTPMethodNotAllowed(request.method, [], text=f"{request.method} is not supported")
    if len(raw) > MAX_URL:
        return web.HTTPRequestURITooLong(text="URI too long")
    if not raw.startswith("/") and "://" not in raw and not (raw == "*" and request.method == "OPTIONS"):
        return web.HTTPBadRequest(text="Bad request target")
    size = 0
    for name, value in request.raw_headers:
        size += len(name) + len(value) + 4
    if size > MAX_HEADER_BLOCK:
        return web.HTTPRequestHeaderFieldsTooLarge(text="Request header fields too large")
    headers = request.headers
    te = headers.get("Transfer-Encoding")
    if te is not None and te.lower() != "chunked":
        return web.HTTPNotImplemented(text="Unsupported Transfer-Encoding")
    host = headers.get("Host", "")
    if request.version == HttpVersion11 and not host.strip():
        return web.HTTPBadRequest(text="Missing Host header")
    if host and not (host.isascii() and host.isprintable()):
        # aiohttp decodes header bytes as UTF-8: a non-ASCII Host would reach the backend re-encoded
        return web.HTTPBadRequest(text="Bad Host header")
    authorization = headers.getall("Authorization", ())
    if authorization:
        if len(authorization) > 1:  # which one a backend reads is its choice: we check exactly one
            return web.HTTPBadRequest(text="More than one Authorization header")
        if not (authorization[0].isascii() and authorization[0].isprintable()):
            return web.HTTPBadRequest(text="Bad Authorization header")
    length = request.content_length
    if length is not None and length > max_body:
        return web.HTTPRequestEntityTooLarge(
            max_size=max_body, actual_size=length,
            text=f"Request body too large: {length} bytes (limit {max_body})")
    return None


def make_strict_middleware(body_limit: BodyLimit) -> Callable[..., Awaitable[web.StreamResponse]]:
    """A middleware applying :func:`check_request`; ``body_limit(request)`` gives the
    largest body allowed for that request (e.g. 1 MiB for the hub, the proxy
    limit for ``/user/...``)."""

    @web.middleware
    async def strict_http(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        problem = check_request(request, body_limit(request))
        if problem is not None:
            raise problem
        return await handler(request)

    return strict_http


def strict_handler(handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                   body_limit: BodyLimit) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """``handler`` applying :func:`check_request` first: for the root app's own few routes, where no
    middleware runs (the hub's parts have the middleware, the proxy checks for itself)."""

    @functools.wraps(handler)
    async def strict(request: web.Request) -> web.StreamResponse:
        problem = check_request(request, body_limit(request))
        if problem is not None:
            raise problem
        return await handler(request)

    return strict


def make_unrouted_middleware(body_limit: BodyLimit) -> Callable[..., Awaitable[web.StreamResponse]]:
    """The root app's one middleware: a request no route took (aiohttp answers it 404 or 405 itself,
    e.g. a CONNECT) still gets :func:`check_request`. Routed requests pass at the cost of one test:
    the hub's sub-apps have the strict middleware, the proxy and the root's few routes check for themselves."""

    @web.middleware
    async def strict_unrouted(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        match_info = request.match_info
        if match_info.http_exception is not None and len(match_info.apps) == 1:
            problem = check_request(request, body_limit(request))
            if problem is not None:
                raise problem
        return await handler(request)

    return strict_unrouted


def make_expect_handler(body_limit: BodyLimit) -> Callable[[web.Request], Awaitable[web.StreamResponse | None]]:
    """An ``expect_handler`` for routes: refuse (e.g. 413) instead of ``100 Continue``.

    aiohttp runs expect handlers before middlewares, so without this a client
    would be invited to send a body the middleware then refuses.
    """

    async def expect_handler(request: web.Request) -> web.StreamResponse | None:
        expect = request.headers.get("Expect", "")
        if request.version != HttpVersion11:
            return None
        if expect.lower() != "100-continue":
            raise web.HTTPExpectationFailed(text="Unknown Expect")
        problem = check_request(request, body_limit(request))
        if problem is not None:
            raise problem
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        # the 100 is not part of the response proper
        request.writer.output_size = 0
        return None

    return expect_handler
