"""Forward a front door's plain request and write the backend's answer back to it.

Two ways, one result:

* :func:`relay_now` (the common case, no task): an idle pooled backend connection takes the
  request at once, and the connection's ``listener`` writes the answer from inside the backend's
  ``data_received`` as soon as it is complete. A proxied request then costs two socket events
  and no extra trips around the event loop (a task would add two: its first step and its wake-up).
* :func:`relay` (a coroutine): when no idle connection is there, after a pooled connection turned
  out stale (one retry), and for answers streamed in pieces.

Framing of what the client gets: the backend's headers (hop-by-hop and Content-Length removed,
its Set-Cookie filtered) with our own ``Content-Length`` for a complete body or
``Transfer-Encoding: chunked`` for a streamed one of unknown length; none for HEAD answers'
bodies or 204/304; ``Connection: close`` when the connection ends after it. A backend that fails
before its head gets 502/503/504 as text (as aiohttp answers); after its head, the client's
connection is cut so that the truncation shows.
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from typing import Callable, Coroutine, Protocol

from .proxy import IDEMPOTENT, SMALL_BODY, ProxyForwarder, failure_answer, stale_reuse
from .proxy_headers import header_block, response_headers
from .routing import Route
from .upstream import ResponseHead, UpstreamConnection, UpstreamError

__all__ = ["ResponseSink", "relay", "relay_now", "plain_text_response"]

log = logging.getLogger("gateway.proxy")

_NO_BODY_STATUS = frozenset({204, 304})
Done = Callable[[int, int], None]


class ResponseSink(Protocol):
    """Where an answer is written (a front-door connection)."""

    keep_alive: bool  # read when the answer's head is written
    on_lost: Callable[[], None] | None  # called if the client goes away meanwhile

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def stream_mode(self) -> None: ...

    def abort(self) -> None: ...


def plain_text_response(status: int, text: str, *, keep_alive: bool) -> bytes:
    """A complete text/plain response, as aiohttp writes its own error answers."""
    body = text.encode()
    close = b"" if keep_alive else b"Connection: close\r\n"
    return (b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n%s\r\n%s"
            % (status, _phrase(status).encode(), len(body), close, body))


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


async def relay(fwd: ProxyForwarder, door: ResponseSink, route: Route, request: bytes, method: str) -> tuple[int, int]:
    """Send a complete request (head and body) to the route's backend and write the whole answer
    to ``door``; returns (status, body bytes written)."""
    try:
        conn, head = await fwd.exchange(route, request, method)
    except UpstreamError as exc:
        return _write_failure(door, exc), 0
    if head.status == 101 or conn.body_complete():
        return _write_complete(fwd, door, route, conn, head, method)
    return await _write_streamed(fwd, door, route, conn, head, method)


def relay_now(fwd: ProxyForwarder, door: ResponseSink, route: Route, request: bytes, method: str,
              done: Done) -> bool:
    """Like :func:`relay`, without a task when an idle backend connection is at hand: returns False
    (nothing sent) when there is none. Otherwise ``done(status, body bytes)`` is called once the
    whole answer is written (not when the client left first)."""
    conn = fwd.take_idle(route)
    if conn is None:
        return False
    exchange = _Exchange(fwd, door, route, conn, request, method, done)
    conn.listener = exchange.on_backend
    door.on_lost = exchange.on_client_lost
    conn.start(request, no_body=method == "HEAD")
    return True


class _Exchange:
    """One request in callback mode, driven by its backend connection's ``listener``."""

    __slots__ = ("fwd", "door", "route", "conn", "request", "method", "done", "task")

    def __init__(self, fwd: ProxyForwarder, door: ResponseSink, route: Route, conn: UpstreamConnection,
                 request: bytes, method: str, done: Done) -> None:
        self.fwd, self.door, self.route, self.conn = fwd, door, route, conn
        self.request, self.method, self.done = request, method, done
        self.task: asyncio.Task | None = None

    def on_backend(self) -> None:
        conn = self.conn
        head, error = conn.head, conn.error
        if head is None:
            if error is None:
                return  # more of the head to come
            conn.listener = None
            if stale_reuse(conn) and self.method in IDEMPOTENT:  # the backend closed it while idle
                self._continue(relay(self.fwd, self.door, self.route, self.request, self.method))
                return
            self.fwd.report_failure(self.route, error)  # type: ignore[arg-type]
            self._finish(_write_failure(self.door, error), 0)  # type: ignore[arg-type]
            return
        if head.status != 101 and not conn.body_complete():
            if error is None and head.length is not None and head.length <= SMALL_BODY:
                return  # a small body still arriving: answer in one write when it is complete
            conn.listener = None
            self.fwd.note_activity(self.route)
            self._continue(_write_streamed(self.fwd, self.door, self.route, conn, head, self.method))
            return
        conn.listener = None
        self.fwd.note_activity(self.route)
        try:
            result = _write_complete(self.fwd, self.door, self.route, conn, head, self.method)
        except Exception:
            log.exception("proxied request failed")
            self.door.abort()
            return
        self._finish(*result)

    def on_client_lost(self) -> None:
        if self.task is not None:
            self.task.cancel()
        elif self.conn.listener is not None:
            self.conn.listener = None  # the backend did nothing wrong: no failure to report
            self.conn.abort()

    def _finish(self, status: int, sent: int) -> None:
        self.door.on_lost = None
        self.done(status, sent)

    def _continue(self, coro: Coroutine[None, None, tuple[int, int]]) -> None:
        self.task = asyncio.get_running_loop().create_task(self._await(coro))

    async def _await(self, coro: Coroutine[None, None, tuple[int, int]]) -> None:
        try:
            result = await coro
        except (asyncio.CancelledError, ConnectionError):
            return  # the client left
        except Exception:
            log.exception("proxied request failed")
            self.door.abort()
            return
        self._finish(*result)


def _write_failure(door: ResponseSink, exc: UpstreamError) -> int:
    status, text = failure_answer(exc)
    door.write(plain_text_response(status, text, keep_alive=door.keep_alive))
    return status


def _head_lines(fwd: ProxyForwarder, door: ResponseSink, route: Route, head: ResponseHead) -> list[bytes]:
    status = head.status
    kept = response_headers(head.headers, prefix=route.prefix, gateway_cookies=fwd.cookie_names(route))
    parts = [b"HTTP/1.1 %d %s\r\n" % (status, (head.reason or _phrase(status)).encode("latin-1")),
             header_block(kept)]
    if not door.keep_alive:
        parts.append(b"Connection: close\r\n")
    return parts


def _write_complete(fwd: ProxyForwarder, door: ResponseSink, route: Route, conn: UpstreamConnection,
                    head: ResponseHead, method: str) -> tuple[int, int]:
    """The answer when its whole body is buffered: one write, the connection back to the pool."""
    status = head.status
    if status == 101:  # a switch nobody asked for
        conn.abort()
        door.write(plain_text_response(502, "Bad Gateway", keep_alive=door.keep_alive))
        return 502, 0
    parts = _head_lines(fwd, door, route, head)
    no_body = status in _NO_BODY_STATUS
    body = conn.take_body()
    conn.release()
    if method == "HEAD":
        if head.length is not None and not no_body:
            parts.append(b"Content-Length: %d\r\n" % head.length)
        body = b""
    elif no_body:
        body = b""
    else:
        parts.append(b"Content-Length: %d\r\n" % len(body))
    parts.append(b"\r\n")
    parts.append(body)
    door.write(b"".join(parts))
    return status, len(body)


async def _write_streamed(fwd: ProxyForwarder, door: ResponseSink, route: Route, conn: UpstreamConnection,
                          head: ResponseHead, method: str) -> tuple[int, int]:
    """The answer while its body arrives: in pieces, as fast as the client takes them."""
    status = head.status
    parts = _head_lines(fwd, door, route, head)
    chunked = head.length is None
    parts.append(b"Transfer-Encoding: chunked\r\n\r\n" if chunked else b"Content-Length: %d\r\n\r\n" % head.length)
    door.stream_mode()
    door.write(b"".join(parts))
    sent = 0
    try:
        while True:
            chunk = await conn.read_chunk()
            if not chunk:
                break
            sent += len(chunk)
            door.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            await door.drain()
    except UpstreamError as exc:
        # the client has the head already: cut its connection so that the truncation shows
        fwd.backend_failed(route, f"failed mid-response ({exc})")
        conn.abort()
        door.abort()
        return status, sent
    except BaseException:
        conn.abort()
        raise
    if chunked:
        door.write(b"0\r\n\r\n")
    conn.release()
    return status, sent
