"""Write a backend's answer to a front door (gateway/wire/frontdoor.py) for a plain request.

The client gets the backend's status and headers (:meth:`ProxyForwarder.answer_headers`), framed
by :func:`gateway.wire.http1.frame_response`, the framing aiohttp's path writes too: our own
``Content-Length`` for a body that arrived whole (one write), ``Transfer-Encoding: chunked`` for a
streamed body of unknown length, none for HEAD answers' bodies or 204/304, ``Connection: close``
when the connection ends after it. A backend that fails before its head gets 502/503/504 as text,
as aiohttp answers; after its head, the client's connection is cut so that the truncation shows.
"""

from __future__ import annotations

from typing import Protocol

from gateway.wire.forward import ProxyForwarder, failure_answer
from gateway.wire.http1 import BODY_CHUNKED, BODY_LENGTH, BODY_NONE, LAST_CHUNK, chunk, frame_response, plain_text_response
from gateway.wire.routing import Route
from gateway.wire.upstream import UpstreamError

__all__ = ["ResponseSink", "relay"]


class ResponseSink(Protocol):
    """Where :func:`relay` writes an answer (a front-door connection)."""

    keep_alive: bool

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def stream_mode(self) -> None: ...

    def abort(self) -> None: ...


async def relay(fwd: ProxyForwarder, door: ResponseSink, route: Route, request: bytes, method: str, *,
                set_cookies: tuple[str, ...] = (), cookie_auth: bool = False) -> tuple[int, int]:
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
    block = fwd.answer_headers(route, head, set_cookies, cookie_auth)
    head_request = method == "HEAD"
    if conn.body_complete():
        body = conn.take_body()
        conn.release()
        framed, mode, _ = frame_response(status, head.reason, block, head_request=head_request,
                                         length=head.length if head_request else len(body), keep_alive=door.keep_alive)
        if mode != BODY_LENGTH:
            body = b""
        door.write(framed + body)
        return status, len(body)
    framed, mode, _ = frame_response(status, head.reason, block, head_request=head_request, length=head.length,
                                     keep_alive=door.keep_alive)
    door.stream_mode()
    door.write(framed)
    sent = 0
    try:
        while True:
            piece = await conn.read_chunk()
            if not piece:
                break
            if mode == BODY_NONE:
                continue
            sent += len(piece)
            door.write(chunk(piece) if mode == BODY_CHUNKED else piece)
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
    if mode == BODY_CHUNKED:
        door.write(LAST_CHUNK)
    conn.release()
    return status, sent
