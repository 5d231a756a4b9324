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
    ways; :mod:`gateway.tunnel` takes it over.

Backends are user-controlled code, so response parsing is strict: anything a
second parser could read differently (duplicate or malformed lengths, length
with chunked, obs-fold, control characters, oversized heads) is a
:class:`BadResponse` (the proxy answers 502) and the connection is discarded.

Memory stays bounded: at most ``HIGH_WATER`` body bytes are buffered per
connection before reading from the backend pauses.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from dataclasses import dataclass
from typing import Callable

__all__ = [
    "UpstreamError",
    "BackendUnavailable",
    "BackendTimeout",
    "BadResponse",
    "ResponseHead",
    "UpstreamConnection",
    "UpstreamPool",
]

MAX_HEAD = 64 * 1024
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024

# allowed in a response head: visible ASCII, space, tab, obs-text, CR, LF
_HEAD_CHARS = bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100)) + b"\t\r\n"
_TOKEN_CHARS = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
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


@dataclass(slots=True)
class ResponseHead:
    """A parsed response head. ``headers`` keeps order, case and repeats;
    ``length`` is the Content-Length (None when chunked or close-delimited)."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    length: int | None
    chunked: bool
    keep_alive: bool


class UpstreamConnection(asyncio.Protocol):
    """One TCP connection to a backend, carrying one request at a time."""

    def __init__(self, pool: "UpstreamPool", key: tuple[str, int]) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.state = _IDLE
        self.reused = False
        self.idle_since = 0.0
        self.deadline = 0.0
        self.got_bytes = False  # any response byte for the current request
        self.dirty = False  # request body not fully sent: never reuse
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
            self.keep_alive = False

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
                head = self._parse_head(raw)
            except BadResponse as exc:
                self._bad(str(exc))
                return
            if 100 <= head.status < 200 and head.status != 101:
                continue  # interim response (103 Early Hints ...): skip it
            break
        self._head = head
        rest = bytes(buf)
        buf.clear()
        if head.status == 101:
            self.state = _UPGRADED
            self.keep_alive = False
            self.tail = rest
        elif self._no_body or head.status in (204, 304):
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

    def _parse_head(self, raw: bytes) -> ResponseHead:
        # C-level checks over the whole head first: only visible characters,
        # space, tab and obs-text, and CR/LF only as CRLF line ends (so no
        # bare CR or LF a second parser could split on differently)
        if raw.translate(None, _HEAD_CHARS):
            raise BadResponse("control character in response head")
        text = raw.decode("latin-1")
        crlf = text.count("\r\n")
        if text.count("\r") != crlf or text.count("\n") != crlf:
            raise BadResponse("bare CR or LF in response head")
        lines = text.split("\r\n")
        version, _, rest = lines[0].partition(" ")
        status, _, reason = rest.partition(" ")
        if version not in ("HTTP/1.1", "HTTP/1.0") or len(status) != 3 or not status.isdigit() or status[0] == "0":
            raise BadResponse("bad status line")
        headers: list[tuple[str, str]] = []
        append = headers.append
        length: int | None = None
        te: str | None = None
        conn_tokens = ""
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or not (name.isascii() and name.replace("-", "").isalnum()):
                # rarer token characters; also rejects obs-fold and "Name :"
                if not colon or not name or name.encode("latin-1").translate(None, _TOKEN_CHARS):
                    raise BadResponse("bad header line")
            value = value.strip(" \t")
            append((name, value))
            n = len(name)
            # only three names matter for framing; test the length first
            if n == 14 and name.lower() == "content-length":
                if not (value.isascii() and value.isdigit()) or len(value) > 18:
                    raise BadResponse("bad Content-Length")
                v = int(value)
                if length is not None and v != length:
                    raise BadResponse("conflicting Content-Length")
                length = v
            elif n == 17 and name.lower() == "transfer-encoding":
                if te is not None:
                    raise BadResponse("repeated Transfer-Encoding")
                te = value.lower()
            elif n == 10 and name.lower() == "connection":
                conn_tokens = value.lower()
        chunked = False
        if te is not None:
            if te != "chunked" or length is not None:
                raise BadResponse("unsupported Transfer-Encoding")
            chunked = True
        self.keep_alive = version == "HTTP/1.1" and "close" not in conn_tokens
        return ResponseHead(int(status), reason, headers, length, chunked, self.keep_alive)

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


class UpstreamPool:
    """Keep-alive connections per backend ``(host, port)``.

    A sweeper task aborts requests whose backend stayed silent longer than
    ``read_timeout`` (one timer for all requests instead of one per request)
    and closes connections idle longer than ``idle_timeout``.
    """

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        idle_timeout: float = 30.0,
        max_idle_per_backend: int = 256,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.idle_timeout = idle_timeout
        self.max_idle = max_idle_per_backend
        self._idle: dict[tuple[str, int], list[UpstreamConnection]] = {}
        self._busy: set[UpstreamConnection] = set()
        self._all: set[UpstreamConnection] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._closed = False

    async def acquire(self, host: str, port: int) -> UpstreamConnection:
        """An idle pooled connection to ``host:port`` or a new one."""
        idle = self._idle.get((host, port))
        while idle:
            conn = idle.pop()
            if conn.state == _DONE and conn.transport is not None and not conn.transport.is_closing():
                conn.reused = True
                return conn
        return await self.connect(host, port)

    async def connect(self, host: str, port: int) -> UpstreamConnection:
        """A new connection (never taken from the pool)."""
        if self._closed:
            raise BackendUnavailable("pool closed")
        if self._sweeper is None:
            self._sweeper = self.loop.create_task(self._sweep())
        key = (host, port)
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await self.loop.create_connection(
                    lambda: UpstreamConnection(self, key), host, port
                )
        except TimeoutError:
            raise BackendUnavailable(f"connect to {host}:{port} timed out") from None
        except OSError as exc:
            raise BackendUnavailable(f"connect to {host}:{port}: {exc.strerror or exc}") from None
        self._all.add(conn)
        return conn

    def _put_idle(self, conn: UpstreamConnection) -> None:
        idle = self._idle.setdefault(conn.key, [])
        if len(idle) >= self.max_idle or self._closed:
            conn.abort()
            return
        conn.idle_since = self.loop.time()
        idle.append(conn)

    def _forget(self, conn: UpstreamConnection) -> None:
        self._all.discard(conn)
        self._busy.discard(conn)

    async def _sweep(self) -> None:
        period = max(0.05, min(1.0, self.read_timeout / 4))
        while True:
            await asyncio.sleep(period)
            now = self.loop.time()
            # a paused connection waits for our client, not for the backend
            for conn in [c for c in self._busy if c.deadline < now and not c._read_paused]:
                self._busy.discard(conn)
                conn.timed_out()
            for key, idle in list(self._idle.items()):
                keep = [c for c in idle if c.state == _DONE and now - c.idle_since < self.idle_timeout]
                for c in idle:
                    if c not in keep:
                        c.abort()
                if keep:
                    self._idle[key] = keep
                else:
                    del self._idle[key]

    async def close(self) -> None:
        """Close every connection, tunnels included."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            try:
                await self._sweeper
            except asyncio.CancelledError:
                pass
        for conn in list(self._all):
            conn.abort()
        self._idle.clear()
        self._busy.clear()
