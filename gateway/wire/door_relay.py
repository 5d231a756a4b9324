"""Write a backend's answer to a front door (gateway/wire/frontdoor.py) for a plain request.

The client gets the backend's status and headers (hop-by-hop headers and Content-Length removed,
Set-Cookie filtered: :func:`gateway.wire.headers.response_headers`), framed by us: our own
``Content-Length`` for a body that arrived whole (one write), ``Transfer-Encoding: chunked`` for a
streamed body of unknown length, none for HEAD answers' bodies or 204/304, ``Connection: close``
when the connection ends after it. A backend that fails before its head gets 502/503/504 as text,
as aiohttp answers; after its head, the client's connection is cut so that the truncation shows.
aiohttp's path (``ProxyForwarder.forward``) frames the same way.
"""

from __future__ import annotations

from typing import Protocol

from gateway.wire.forward import ProxyForwarder, failure_answer
from gateway.wire.headers import header_block, response_headers
from gateway.wire.http1 import phrase, plain_text_response
from gateway.wire.routing import Route
from gateway.wire.upstream import UpstreamError

__all__ = ["ResponseSink", "relay"]

# statuses whose responses carry no body (nor, from us, a Content-Length)
_NO_BODY_STATUS = frozenset({204, 304})


class ResponseSink(Protocol):
    """Where :func:`relay` writes an answer (a front-door connection)."""

    keep_alive: bool

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def stream_mode(self) -> None: ...

    def abort(self) -> None: ...


async def relay(fwd: ProxyForwarder, door: ResponseSink, route: Route, request: bytes, method: str) -> tuple[int, int]:
    """Send a complete request (head and body) to the route's backend and write the whole
    response to ``door`` (a front-door connection); returns (status, body bytes written)."""
    try:
        conn, head = await fwd.exchange(route, request, method)
    except UpstreamError as exc:
        status, text = failure_answer(exc)
        door.write(plain_text_response(status, text, keep_alive=door.keep_alive))
        return status, 0
    status = head.status
    if status == 101:  # a switch nobody asked for
        conn.abort()
        door.write(plain_text_response(502, "Bad Gateway", keep_alive=door.keep_alive))
        return 502, 0
    kept = response_headers(head.headers, prefix=route.prefix, gateway_cookies=fwd.cookie_names(route))
    parts = [b"HTTP/1.1 %d %s\r\n" % (status, (head.reason or phrase(status)).encode("latin-1")),
             header_block(kept)]
    if not door.keep_alive:
        parts.append(b"Connection: close\r\n")
    no_body = status in _NO_BODY_STATUS
    if conn.body_complete():
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
