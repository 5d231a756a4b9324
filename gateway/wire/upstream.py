"""A lean HTTP/1.1 client for talking to backends: pooled keep-alive connections.

Why not aiohttp's ClientSession: measured in front of a fast backend, a proxy
built on it matched configurable-http-proxy's small-request rate; the issue
asks for twice that. This client does only what a reverse proxy needs: write a
pre-built request head, parse the response head, hand the body over in pieces
as it arrives (never decoded, never decompressed), and keep the connection for
the next request when the response allows it.

Vocabulary:

head
    status line plus header block, parsed into :class:`ResponseHead`.
backend framing
    how the response body ends: ``Content-Length``, ``chunked`` or connection
    close. Chunked bodies are de-chunked here (the server side re-frames them).
tunnel
    after a ``101 Switching Protocols`` the connection carries raw bytes both
    ways; :mod:`gateway.wire.tunnel` takes it over.

Backends are user-controlled code, so response heads are parsed strictly
(:mod:`gateway.wire.http1`); a malformed head, chunk framing or an oversized head is
a :class:`BadResponse` (the proxy answers 502) and the connection is discarded.
Pooling lives in :mod:`gateway.wire.upstream_pool`.

Memory stays bounded: at most ``HIGH_WATER`` body bytes are buffered per
connection before reading from the backend pauses.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from typing import Callable, Protocol

from gateway.wire.http1 import NO_BODY_STATUS, MalformedHead, ResponseHead, parse_response_head

__all__ = [
    "UpstreamError",
    "BackendUnavailable",
    "BackendTimeout",
    "BadResponse",
    "ResponseHead",
    "UpstreamConnection",
]


MAX_HEAD = 64 * 1024
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024

_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")

# connection states
_IDLE, _HEAD, _BODY_LEN, _BODY_CHUNKED, _BODY_EOF, _DONE, _UPGRADED, _TUNNEL, _CLOSED = range(9)
# chunked sub-states
_C_SIZE, _C_DATA, _C_CRLF, _C_TRAILER = range(4)


class UpstreamError(Exception):
    """Talking to the backend failed."""


class BackendUnavailable(UpstreamError):
    """Refused, reset or closed before the response was complete (answer 503)."""


class BackendTimeout(UpstreamError):
    """The backend stayed silent longer than the read timeout (answer 504)."""


class BadResponse(UpstreamError):
    """The backend's response is malformed or ambiguous (answer 502)."""


class ConnectionPool(Protocol):
    """What a connection needs from the pool that owns it (``gateway.wire.upstream_pool.UpstreamPool``)."""

    loop: asyncio.AbstractEventLoop
    read_timeout: float
    _busy: set[UpstreamConnection]

    def _put_idle(self, conn: UpstreamConnection) -> None: ...

    def _forget(self, conn: UpstreamConnection) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    """One TCP connection to a backend, carrying one request at a time."""

    def __init__(self, pool: ConnectionPool, key: tuple[str, int]) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.state = _IDLE
        self.reused = False
        self.idle_since = 0.0
        self.deadline = 0.0
        self.got_bytes = False  # any response byte for the current request
        self.dirty = False  # request body not fully sent: never reuse
        self.pooled = False  # idle in the pool, waiting for the next request
        self._buf = bytearray()
        self._no_body = False
        self._head_waiter: asyncio.Future[ResponseHead] | None = None
        self._head: ResponseHead | None = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._body_waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._remaining = 0
        self._cstate = _C_SIZE
        self._read_paused = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self.keep_alive = False
        # set by the tunnel: receives raw bytes after a 101
        self.on_tunnel_data: Callable[[bytes], None] | None = None
        self.on_tunnel_lost: Callable[[], None] | None = None
        self.on_tunnel_writable: Callable[[bool], None] | None = None
        self.tail = b""

    # -- asyncio.Protocol -------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: BaseException | None) -> None:
        state = self.state
        self.state = _CLOSED
        self.pool._forget(self)
        if state == _TUNNEL:
            if self.on_tunnel_lost is not None:
                self.on_tunnel_lost()
            return
        if state == _BODY_EOF:
            self._chunks.append(b"")
            self._wake_body()
        elif state in (_HEAD, _BODY_LEN, _BODY_CHUNKED):
            self._fail(BackendUnavailable("backend closed the connection mid-response"))
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(BackendUnavailable("backend closed the connection"))

    def pause_writing(self) -> None:
        self._write_paused = True
        if self.on_tunnel_writable is not None:
            self.on_tunnel_writable(False)

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.on_tunnel_writable is not None:
            self.on_tunnel_writable(True)
        w = self._drain_waiter
        if w is not None and not w.done():
            w.set_result(None)

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state == _TUNNEL:
            self.on_tunnel_data(data)  # type: ignore[misc]
            return
        self.got_bytes = True
        self.deadline = self.pool.loop.time() + self.pool.read_timeout
        if state == _HEAD:
            self._buf += data
            self._parse_heads()
        elif state in (_BODY_LEN, _BODY_CHUNKED, _BODY_EOF):
            self._feed_body(data)
        elif state == _UPGRADED:
            self.tail += data  # held until the tunnel takes over
        elif state == _IDLE:
            # bytes nobody asked for: the connection is out of step; drop it
            self.abort()
        elif state == _DONE and data:
            # bytes after a complete answer, asked for by nobody (a backend pre-sending the answer
            # to the next request): this connection is never reused; dropped at once when idle
            self.keep_alive = False
            if self.pooled:
                self.abort()

    # -- request side -----------------------------------------------------
    def start(self, head: bytes, *, no_body: bool) -> None:
        """Send a request head (plus, possibly, a complete small body)."""
        self.state = _HEAD
        self._no_body = no_body
        self.got_bytes = False
        self.dirty = False
        self._head = None
        self._error = None
        self._chunks.clear()
        self._buffered = 0
        self._head_waiter = self.pool.loop.create_future()
        self.deadline = self.pool.loop.time() + self.pool.read_timeout
        self.pool._busy.add(self)
        self.transport.write(head)  # type: ignore[union-attr]

    def write(self, data: bytes) -> None:
        if self.transport is not None and self.state != _CLOSED:
            self.transport.write(data)

    async def drain(self) -> None:
        """Wait until the backend has taken the bytes written so far."""
        if self.state == _CLOSED:
            raise BackendUnavailable("backend closed the connection")
        if self._write_paused:
            self._drain_waiter = self.pool.loop.create_future()
            await self._drain_waiter

    # -- response side ----------------------------------------------------
    async def read_head(self) -> ResponseHead:
        if self._head is not None:
            return self._head
        return await self._head_waiter  # type: ignore[misc]

    def body_complete(self) -> bool:
        """True when the whole body is already buffered (the common small case)."""
        return self.state == _DONE

    def take_body(self) -> bytes:
        """The buffered body when :meth:`body_complete`; releases the connection."""
        chunks = self._chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._finish()
        return body

    async def read_chunk(self) -> bytes:
        """Next piece of the body; ``b""`` at its end (then the connection is released)."""
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                if chunk:
                    self._buffered -= len(chunk)
                    if self._read_paused and self._buffered <= LOW_WATER:
                        self._read_paused = False
                        self.touch()
                        if self.transport is not None:
                            self.transport.resume_reading()
                    return chunk
                self._finish()
                return b""
            if self._error is not None:
                raise self._error
            if self.state == _DONE:
                self._finish()
                return b""
            self._body_waiter = self.pool.loop.create_future()
            await self._body_waiter

    def touch(self) -> None:
        """Restart the read timeout (we are still sending the request body)."""
        self.deadline = self.pool.loop.time() + self.pool.read_timeout

    def start_tunnel(
        self,
        on_data: Callable[[bytes], None],
        on_lost: Callable[[], None],
        on_writable: Callable[[bool], None],
    ) -> bytes:
        """Switch to raw relaying after a 101; returns bytes already received."""
        self.on_tunnel_data = on_data
        self.on_tunnel_lost = on_lost
        self.on_tunnel_writable = on_writable
        tail, self.tail = self.tail, b""
        if self.state == _UPGRADED:
            self.state = _TUNNEL
        else:
            on_lost()
        return tail

    def abort(self) -> None:
        """Drop the connection now (never reused)."""
        self.keep_alive = False
        self.pool._busy.discard(self)
        if self.transport is not None:
            self.transport.abort()

    def release(self) -> None:
        """Give the connection back: to the pool if clean, else close it."""
        if self.state == _DONE and self.keep_alive and not self.dirty and self.transport is not None:
            self.pool._put_idle(self)
        elif self.state != _CLOSED:
            self.abort()

    # -- internals --------------------------------------------------------
    def _finish(self) -> None:
        self.pool._busy.discard(self)

    def _fail(self, exc: BaseException) -> None:
        self._error = exc
        self.pool._busy.discard(self)
        w = self._head_waiter
        if w is not None and not w.done():
            w.set_exception(exc)
            # the caller may already be gone; do not warn about an unread error
            w.exception()
        self._wake_body()

    def _wake_body(self) -> None:
        w = self._body_waiter
        if w is not None and not w.done():
            w.set_result(None)

    def timed_out(self) -> None:
        """Called by the pool's sweeper when the backend stayed silent too long."""
        self._fail(BackendTimeout("backend did not answer in time"))
        self.state = _CLOSED
        if self.transport is not None:
            self.transport.abort()

    def _parse_heads(self) -> None:
        while True:
            buf = self._buf
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    self._bad("response head too large")
                return
            if end > MAX_HEAD:
                self._bad("response head too large")
                return
            raw = bytes(buf[:end])
            del buf[: end + 4]
            try:
                head = parse_response_head(raw)
            except MalformedHead as exc:
                self._bad(str(exc))
                return
            if 100 <= head.status < 200 and head.status != 101:
                continue  # interim response (103 Early Hints ...): skip it
            break
        self._head = head
        self.keep_alive = head.keep_alive
        rest = bytes(buf)
        buf.clear()
        if head.status == 101:
            self.state = _UPGRADED
            self.keep_alive = False
            self.tail = rest
        elif self._no_body or head.status in NO_BODY_STATUS:
            self.state = _DONE
            if rest:
                self.keep_alive = False
        elif head.chunked:
            self.state = _BODY_CHUNKED
            self._cstate = _C_SIZE
        elif head.length is not None:
            self._remaining = head.length
            self.state = _BODY_LEN if head.length else _DONE
        else:
            self.state = _BODY_EOF
            self.keep_alive = False
        w = self._head_waiter
        if w is not None and not w.done():
            w.set_result(head)
        if rest and self.state in (_BODY_LEN, _BODY_CHUNKED, _BODY_EOF):
            self._feed_body(rest)
        if self.state in (_DONE, _UPGRADED):
            self.pool._busy.discard(self)

    def _bad(self, why: str) -> None:
        self._fail(BadResponse(why))
        self.state = _CLOSED
        if self.transport is not None:
            self.transport.abort()

    def _push(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > HIGH_WATER and not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()
        self._wake_body()

    def _feed_body(self, data: bytes) -> None:
        state = self.state
        if state == _BODY_LEN:
            n = self._remaining
            if len(data) >= n:
                if len(data) > n:
                    self.keep_alive = False  # backend sent more than it declared
                if n:
                    self._push(data[:n] if len(data) > n else data)
                self._remaining = 0
                self.state = _DONE
                self.pool._busy.discard(self)
                self._wake_body()
            else:
                self._remaining = n - len(data)
                self._push(data)
        elif state == _BODY_EOF:
            self._push(data)
        elif state == _BODY_CHUNKED:
            self._buf += data
            self._dechunk()

    def _dechunk(self) -> None:
        buf = self._buf
        while buf:
            cs = self._cstate
            if cs == _C_SIZE:
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > 4096:
                        self._bad("chunk size line too long")
                    return
                size = bytes(buf[:end]).split(b";", 1)[0].rstrip(b" \t")
                if _HEX.fullmatch(size) is None:
                    self._bad("bad chunk size")
                    return
                del buf[: end + 2]
                self._remaining = int(size, 16)
                self._cstate = _C_DATA if self._remaining else _C_TRAILER
            elif cs == _C_DATA:
                n = min(self._remaining, len(buf))
                self._push(bytes(buf[:n]))
                del buf[:n]
                self._remaining -= n
                if not self._remaining:
                    self._cstate = _C_CRLF
            elif cs == _C_CRLF:
                if len(buf) < 2:
                    return
                if buf[:2] != b"\r\n":
                    self._bad("bad chunk terminator")
                    return
                del buf[:2]
                self._cstate = _C_SIZE
            else:  # trailers: skipped, up to the empty line
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD:
                        self._bad("trailers too large")
                    return
                del buf[: end + 2]
                if end == 0:
                    if buf:
                        self.keep_alive = False
                        buf.clear()
                    self.state = _DONE
                    self.pool._busy.discard(self)
                    self._wake_body()
                    return
