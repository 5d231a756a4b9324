"""Forward one authorised request to its backend: streamed HTTP or a websocket tunnel.

The caller (the ``/user/...`` and ``/services/...`` handler) has already
chosen the :class:`~gateway.wire.routing.Route` from the canonical path and checked
that the caller may use it; :meth:`ProxyForwarder.forward` only moves bytes:

* the raw path and query go to the backend unchanged (an absolute-form target
  is reduced to its path: never a forward proxy);
* headers are rewritten by :mod:`gateway.wire.headers` (hop-by-hop stripped,
  ``Host`` kept, ``X-Forwarded-*`` added, ``Authorization`` replaced by the
  route's secret on user routes and passed through on service routes,
  gateway cookies removed both ways);
* bodies stream both ways through bounded buffers, never decoded;
* a backend that refuses, resets or dies answers 503 at once, a silent one
  504, a malformed answer 502, and ``on_backend_error(route)`` is called so
  the server manager can look at the server;
* every proxied request and every relayed websocket chunk calls
  ``on_activity(route)``: it must be cheap and do no I/O.

Hot path budget: a small request costs one header scan, one write and one
read on a pooled backend connection; nothing is logged per request.

Wiring sketch (the app owns identity and scopes)::

    async def forwarder_ctx(app):
        app[FORWARDER] = ProxyForwarder(gateway_cookie_names=frozenset({...}),
            max_body_size=..., connect_timeout=5, read_timeout=...,
            on_activity=servers.note_activity, on_backend_error=servers.check_soon)
        yield
        await app[FORWARDER].close()

    async def handle(request):                      # "/user/{tail:.*}", "/services/{tail:.*}"
        target = canonical_target(request.raw_path, base_url)   # BadPath -> 400
        route = routes.lookup(*target)                           # None -> 404 / 424
        ...authorize access:servers on (route.user, route.server_name)...
        return await request.app[FORWARDER].forward(request, route)

Run the app with ``**httpstrict.server_handler_args()`` and its middleware.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable
from urllib.parse import unquote, urlsplit

from aiohttp import web
from multidict import CIMultiDict

from gateway.wire.headers import build_request_head, header_block, response_headers
from gateway.wire.rawresponse import RawResponse
from gateway.wire.routing import BadPath, Route, origin_form
from gateway.wire.tunnel import Tunnel
from gateway.wire.upstream import (
    BackendTimeout,
    BackendUnavailable,
    BadResponse,
    ResponseHead,
    UpstreamConnection,
    UpstreamError,
)
from gateway.wire.upstream_pool import UpstreamPool

__all__ = ["ProxyForwarder", "is_websocket_upgrade"]

log = logging.getLogger("gateway.proxy")

# bodies up to this size are read whole and sent with the head in one write
SMALL_BODY = 64 * 1024
# client write buffer while streaming a response (per connection, bounded)
STREAM_WRITE_HIGH = 512 * 1024
# how often a websocket handshake waiting for its backend looks whether the client is still there
CLIENT_CHECK_SECONDS = 0.5
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


class _ClientGone(Exception):
    """The client closed its connection while its request waited for the backend."""


# what the gateway answers when the backend fails before the response head
_FAILURES: dict[type[UpstreamError], tuple[int, str]] = {
    BackendUnavailable: (503, "Service Unavailable: the server is not responding"),
    BackendTimeout: (504, "Gateway Timeout: the server did not answer in time"),
    BadResponse: (502, "Bad Gateway"),
}
_HTTP_FAILURES = {503: web.HTTPServiceUnavailable, 504: web.HTTPGatewayTimeout, 502: web.HTTPBadGateway}


def failure_answer(exc: UpstreamError) -> tuple[int, str]:
    """(status, text) for a backend that failed before its response head."""
    return _FAILURES.get(type(exc), (502, "Bad Gateway"))


async def _head_while_client_waits(client_gone: Callable[[], bool], conn: UpstreamConnection) -> ResponseHead:
    """The backend's answer to a websocket handshake, unless the client gives up first.

    A backend may hold a handshake for long (jupyter-server holds a kernel's until the kernel
    answers) and a client may give up meanwhile (JupyterLab closes the sockets of a session it
    replaced). aiohttp does not cancel handlers of vanished clients, and an upgrade request has
    no body whose end would tell, so the client's transport is looked at now and then; without
    that the backend connection and this handler would stay until the read timeout.
    Handshakes are rare, so plain requests (the hot path) do not pay for the extra task.
    """
    head = asyncio.ensure_future(conn.read_head())
    try:
        while True:  # bounded: read_head ends with BackendTimeout after the read timeout
            done, _ = await asyncio.wait((head,), timeout=CLIENT_CHECK_SECONDS)
            if done:
                return head.result()
            if client_gone():
                raise _ClientGone
    finally:
        if not head.done():
            head.cancel()


class ProxyForwarder:
    """Owns the pooled backend connections; create and close it in a cleanup_ctx."""

    def __init__(
        self,
        *,
        gateway_cookie_names: frozenset[str],
        max_body_size: int,
        connect_timeout: float,
        read_timeout: float,
        on_activity: Callable[[Route], None],
        on_backend_error: Callable[[Route], None],
        service_cookie_names: frozenset[str] | None = None,
    ) -> None:
        self._cookies_str = frozenset(gateway_cookie_names)
        self._cookies_bytes = frozenset(n.encode("latin-1") for n in gateway_cookie_names)
        # services run their own cookie auth and XSRF (HubOAuth): they may see and set more of them
        service_cookies = self._cookies_str if service_cookie_names is None else frozenset(service_cookie_names)
        self._service_cookies_str = service_cookies
        self._service_cookies_bytes = frozenset(n.encode("latin-1") for n in service_cookies)
        self.max_body_size = max_body_size
        self.read_timeout = read_timeout
        self._on_activity = on_activity
        self._on_backend_error = on_backend_error
        self._pool = UpstreamPool(connect_timeout=connect_timeout, read_timeout=read_timeout)
        self._targets: dict[str, tuple[str, int]] = {}
        self._tunnels: set[Tunnel] = set()

    def going_away(self) -> int:
        """Close every websocket tunnel with 1001 (going away) to its client; returns how many."""
        tunnels = list(self._tunnels)
        for tunnel in tunnels:
            tunnel.going_away()
        return len(tunnels)

    async def close(self) -> None:
        """Close every backend connection and websocket tunnel."""
        self.going_away()
        await self._pool.close()

    def _address(self, target: str) -> tuple[str, int]:
        addr = self._targets.get(target)
        if addr is None:
            parts = urlsplit(target)
            if parts.scheme != "http" or not parts.hostname:
                raise ValueError(f"unsupported backend target {target!r}")
            addr = (parts.hostname, parts.port or 80)
            self._targets[target] = addr
        return addr

    async def forward(
        self,
        request: web.Request,
        route: Route,
        *,
        target: str | None = None,
        set_cookies: tuple[str, ...] = (),
        cookie_auth: bool = False,
    ) -> web.StreamResponse:
        """Proxy ``request`` to ``route``'s backend and return the response.

        ``target`` replaces the request target sent to the backend (the caller
        strips credentials from the query); ``set_cookies`` are Set-Cookie
        values added to the response (the gateway's own XSRF cookie);
        ``cookie_auth``: the caller came in on the login cookie (CORS grants are dropped).
        Raises web.HTTPException subclasses for answers the gateway makes
        itself (400, 413, 502, 503, 504) so the app's error pages apply.
        """
        try:
            target = target or origin_form(request.raw_path)
        except BadPath:
            raise web.HTTPBadRequest(text="Bad request target") from None
        redirect = slash_redirect(target, route.prefix)
        if redirect is not None:
            raise web.HTTPFound(redirect)
        length = request.content_length
        if length is not None and length > self.max_body_size:
            raise web.HTTPRequestEntityTooLarge(
                max_size=self.max_body_size, actual_size=length
            )
        websocket = is_websocket_upgrade(request.method, request.headers)
        body: bytes | None = None
        chunked = False
        if websocket:
            length = None
        elif length == 0:
            body = b""
        elif length is not None:
            if length <= SMALL_BODY:
                body = await self._read_small(request, length)
        elif request.body_exists:
            chunked = True
        head = self.request_head(route, request.method, target, request.raw_headers, host=request.host,
                                 peer=request.remote or "", scheme=request.scheme, content_length=length,
                                 chunked=chunked, websocket=websocket)
        if body:
            head += body
        streamed = not websocket and body is None and (length or chunked)
        method = request.method
        try:
            conn, resp_head = await self._exchange(
                route, head, method, websocket=websocket,
                send_body=(lambda conn: self._send_body(request, conn, length)) if streamed else None,
                client_gone=(lambda: request.transport is None or request.transport.is_closing()) if websocket else None,
            )
        except _ClientGone:
            return web.Response(status=499, reason="Client Closed Request")  # nobody reads it
        except UpstreamError as exc:
            status, text = failure_answer(exc)
            raise _HTTP_FAILURES[status](text=text) from None
        if resp_head.status == 101:
            if websocket:
                return await self._tunnel(request, route, conn, resp_head, cookie_auth)
            conn.abort()
            raise web.HTTPBadGateway(text="Bad Gateway")
        return await self._respond(request, route, conn, resp_head, set_cookies, cookie_auth)

    async def _exchange(
        self,
        route: Route,
        head: bytes,
        method: str,
        *,
        websocket: bool = False,
        send_body: Callable[[UpstreamConnection], Awaitable[None]] | None = None,
        client_gone: Callable[[], bool] | None = None,
    ) -> tuple[UpstreamConnection, ResponseHead]:
        """Send ``head`` (with a small body, or then ``send_body``) to the route's backend; return
        the connection and the response head. Raises UpstreamError (after telling
        ``on_backend_error``) or _ClientGone."""
        host, port = self._address(route.target)
        # one retry when a reused keep-alive connection turns out dead before
        # any response byte (the backend closed it while idle) and the request
        # can safely be sent twice
        conn: UpstreamConnection | None = None
        for attempt in (0, 1):
            try:
                if websocket:
                    conn = await self._pool.connect(host, port)
                else:
                    conn = await self._pool.acquire(host, port)
                conn.start(head, no_body=method == "HEAD")
                if send_body is not None:
                    await send_body(conn)
                if client_gone is not None:
                    resp_head = await _head_while_client_waits(client_gone, conn)
                else:
                    resp_head = await conn.read_head()
                self._on_activity(route)
                return conn, resp_head
            except BackendUnavailable:
                if attempt == 0 and _stale_reuse(conn) and send_body is None and method in _IDEMPOTENT:
                    continue
                self._backend_failed(route, "unavailable")
                raise
            except BackendTimeout:
                self._backend_failed(route, "timed out")
                raise
            except BadResponse as exc:
                log.warning("bad response from %s: %s", route.prefix, exc)
                raise
            except BaseException:
                if conn is not None:
                    conn.abort()
                raise
        raise AssertionError("unreachable")

    def request_head(self, route: Route, method: str, target: str, raw_headers, *, host: str, peer: str,
                     scheme: str, content_length: int | None, chunked: bool = False,
                     websocket: bool = False) -> bytes:
        """The head sent to the route's backend (see :func:`build_request_head`): a service gets
        the caller's own credentials (it asks the hub who they are); a user server gets only its
        secret (its visitors' tokens never reach user code)."""
        service = route.kind == "service"
        return build_request_head(
            method, target, raw_headers, host=host, forwarded_for=peer, forwarded_proto=scheme,
            secret=None if service else route.secret,
            gateway_cookies=self._service_cookies_bytes if service else self._cookies_bytes,
            content_length=content_length, chunked=chunked, websocket=websocket,
        )

    # -- for front doors (gateway.door_relay) ----------------------------------
    async def exchange(self, route: Route, request: bytes, method: str) -> tuple[UpstreamConnection, ResponseHead]:
        """Send a complete request (head and small body); the connection and the response head."""
        return await self._exchange(route, request, method)

    def cookie_names(self, route: Route) -> frozenset[str]:
        return self._cookie_names(route)

    def backend_failed(self, route: Route, what: str) -> None:
        self._backend_failed(route, what)

    async def _read_small(self, request: web.Request, length: int) -> bytes:
        try:
            async with asyncio.timeout(self.read_timeout):
                return await request.content.readexactly(length)
        except (asyncio.IncompleteReadError, TimeoutError):
            raise web.HTTPBadRequest(text="Incomplete request body") from None

    async def _send_body(self, request: web.Request, conn: UpstreamConnection, length: int | None) -> None:
        """Stream the client's body to the backend (re-chunked if it came chunked)."""
        content = request.content
        limit = self.max_body_size
        sent = 0
        while True:
            try:
                async with asyncio.timeout(self.read_timeout):
                    chunk = await content.readany()
            except TimeoutError:
                conn.abort()
                raise web.HTTPRequestTimeout(text="Request body too slow") from None
            if not chunk:
                break
            sent += len(chunk)
            if sent > limit:
                conn.abort()
                raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=sent)
            if conn.got_bytes:
                # the backend answered before taking the whole body: stop
                # sending, and never reuse this out-of-step connection
                conn.dirty = True
                return
            if length is None:
                conn.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            else:
                conn.write(chunk)
            conn.touch()
            await conn.drain()
        if length is None:
            conn.write(b"0\r\n\r\n")
        elif sent != length:
            conn.abort()
            raise web.HTTPBadRequest(text="Incomplete request body")

    def answer_headers(self, route: Route, head: ResponseHead, set_cookies: tuple[str, ...] = (),
                       cookie_auth: bool = False) -> bytes:
        """The backend's header lines the client gets (both paths): filtered by
        :func:`response_headers`, our own Set-Cookie values added."""
        kept = response_headers(head.headers, prefix=route.prefix, gateway_cookies=self._cookie_names(route),
                                cookie_auth=cookie_auth)
        for cookie in set_cookies:
            kept.append(("Set-Cookie", cookie))
        return header_block(kept)

    async def _respond(
        self,
        request: web.Request,
        route: Route,
        conn: UpstreamConnection,
        head: ResponseHead,
        set_cookies: tuple[str, ...] = (),
        cookie_auth: bool = False,
    ) -> web.StreamResponse:
        block = self.answer_headers(route, head, set_cookies, cookie_auth)
        if conn.body_complete():
            # the common small case: one write, backend headers verbatim
            body = conn.take_body()
            conn.release()
            return RawResponse(head.status, head.reason, block, body, length=head.length)
        resp = RawResponse(head.status, head.reason, block, None, length=head.length)
        if request.transport is not None:
            # keep the pipe to the client full: with asyncio's 64 KiB default
            # every 256 KiB piece waits for the socket to drain to 16 KiB
            request.transport.set_write_buffer_limits(high=STREAM_WRITE_HIGH, low=STREAM_WRITE_HIGH // 4)
        try:
            await resp.prepare(request)
        except ConnectionError:
            conn.abort()
            return resp
        try:
            while True:
                chunk = await conn.read_chunk()
                if not chunk:
                    break
                await resp.write(chunk)
        except UpstreamError as exc:
            # the client has the head already: cut its connection so that the
            # truncation shows, instead of ending the body cleanly
            self._backend_failed(route, f"failed mid-response ({exc})")
            conn.abort()
            if request.transport is not None:
                request.transport.close()
            return resp
        except ConnectionError:
            conn.abort()  # the client went away
            return resp
        except BaseException:
            conn.abort()
            raise
        conn.release()
        await resp.write_eof()
        return resp

    async def _tunnel(
        self, request: web.Request, route: Route, conn: UpstreamConnection, head: ResponseHead, cookie_auth: bool
    ) -> web.StreamResponse:
        hdrs = CIMultiDict(
            response_headers(head.headers, prefix=route.prefix, gateway_cookies=self._cookie_names(route),
                             upgrade=True, cookie_auth=cookie_auth)
        )
        resp = web.StreamResponse(status=101, reason=head.reason or "Switching Protocols", headers=hdrs)
        tunnel = Tunnel(request, conn, route, self._on_activity)
        self._tunnels.add(tunnel)
        try:
            try:
                await resp.prepare(request)
            except ConnectionError:
                return resp
            tunnel.start(request)
            await tunnel.done
        finally:
            tunnel.close()
            self._tunnels.discard(tunnel)
        return resp

    def _cookie_names(self, route: Route) -> frozenset[str]:
        return self._service_cookies_str if route.kind == "service" else self._cookies_str

    def _backend_failed(self, route: Route, what: str) -> None:
        log.warning("backend for %s %s", route.prefix, what)
        try:
            self._on_backend_error(route)
        except Exception:
            log.exception("on_backend_error hook failed")


def is_websocket_upgrade(method: str, headers) -> bool:
    """A websocket handshake, tunnelled if the backend switches: GET with ``Connection: upgrade``
    and ``Upgrade: websocket`` (anything less is forwarded as plain HTTP, its Upgrade dropped)."""
    upgrade = headers.get("Upgrade")
    return (upgrade is not None and upgrade.lower() == "websocket" and method == "GET"
            and any(t.strip() == "upgrade" for t in headers.get("Connection", "").lower().split(",")))


def _stale_reuse(conn: UpstreamConnection | None) -> bool:
    """A reused connection that failed before any response byte."""
    return conn is not None and conn.reused and not conn.got_bytes


def slash_redirect(target: str, prefix: str) -> str | None:
    """``/user/alice`` -> ``/user/alice/`` (query kept) when the path is the prefix minus its slash."""
    path, sep, query = target.partition("?")
    if path.endswith("/") or len(path) > 3 * len(prefix):
        return None
    if path + "/" != prefix and ("%" not in path and "%" not in prefix or unquote(path) + "/" != unquote(prefix)):
        return None
    return path + "/" + sep + query
