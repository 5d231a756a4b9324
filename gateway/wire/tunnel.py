"""Raw byte relay for an upgraded (websocket) connection.

Once the backend has answered ``101 Switching Protocols`` and the client has
received that answer, both connections carry websocket frames. The frames a
client sends are masked, as a backend expects; the backend's are unmasked, as
a client expects; extensions (permessage-deflate) and subprotocol were agreed
end to end during the handshake. So the gateway relays bytes without parsing
frames: text, binary, ping/pong and close frames (with their codes) pass
through untouched, at the cost of two ``write`` calls per message instead of a
parse, an unmask and a re-frame. When either TCP connection ends, the other is
closed after its pending bytes are flushed.

Flow control is end to end: when one side's write buffer fills, reading from
the other side pauses.

Going away (the gateway stops): :meth:`Tunnel.going_away` stops relaying and
sends the client a close frame with code 1001. To write it between two of the
backend's frames, never inside one, the backend-to-client direction is
followed by :class:`FrameBoundary`, which reads frame headers only and skips
payloads by length (a few operations per chunk). Were a close frame to fall
mid-frame anyway (it cannot, but a backend might send garbage), the
connection is just closed.

The tunnel plugs into aiohttp's server connection the way aiohttp's own
``WebSocketResponse`` does (``RequestHandler.set_parser``): incoming client
bytes arrive at :meth:`Tunnel.feed_data`.

Private aiohttp internals, used here and nowhere else (checked against the pinned
aiohttp minor versions): ``RequestHandler.set_parser`` and its parser interface
(``feed_data``/``feed_eof``), reached through ``request.protocol``.
"""

from __future__ import annotations

import asyncio
from typing import Callable

from aiohttp import web

from gateway.wire.routing import Route
from gateway.wire.upstream import UpstreamConnection

__all__ = ["Tunnel"]

HIGH_WATER = 256 * 1024
# at shutdown, how long a backend frame half relayed may take to finish before the tunnel is cut
FRAME_GRACE = 2.0
# a server-to-client (unmasked) close frame, status 1001 "going away"
CLOSE_GOING_AWAY = b"\x88\x02\x03\xe9"


class FrameBoundary:
    """Where websocket frames start and end in a byte stream, without copying payloads.

    ``left``: payload bytes of the current frame still to come; ``head``: the start of a frame
    header cut off at the end of the last chunk; ``closed``: a close frame went through.
    """

    __slots__ = ("left", "head", "closed")

    def __init__(self) -> None:
        self.left = 0
        self.head = b""
        self.closed = False

    @property
    def at_boundary(self) -> bool:
        return self.left == 0 and not self.head

    def feed(self, data: bytes) -> None:
        n = len(data)
        if self.left >= n:  # inside a large payload: the common case for big frames
            self.left -= n
            return
        pos, self.left = self.left, 0
        if self.head:  # a header split across chunks (rare): join just that
            data, pos, self.head = self.head + data[pos:], 0, b""
            n = len(data)
        while pos < n:
            header = _frame_header(data, pos)
            if header is None:
                self.head = data[pos:]
                return
            size, length, opcode = header
            if opcode == 0x8:
                self.closed = True
            end = pos + size + length
            if end > n:
                self.left = end - n
                return
            pos = end

    def to_boundary(self, data: bytes) -> int | None:
        """How many bytes of ``data`` finish the frame under way (0 at a boundary), or None when
        it does not end within ``data``. Nothing is fed."""
        if self.left:
            return self.left if self.left <= len(data) else None
        if not self.head:
            return 0
        joined = self.head + data
        header = _frame_header(joined, 0)
        if header is None:
            return None
        size, length, _ = header
        end = size + length - len(self.head)
        return end if end <= len(data) else None


def _frame_header(data: bytes, pos: int) -> tuple[int, int, int] | None:
    """(header size, payload length, opcode) of the frame starting at ``pos``, or None if cut short."""
    n = len(data)
    if n - pos < 2:
        return None
    b1 = data[pos + 1]
    length = b1 & 0x7F
    size = 2 + (4 if b1 & 0x80 else 0) + (2 if length == 126 else 8 if length == 127 else 0)
    if n - pos < size:
        return None
    if length == 126:
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
    elif length == 127:
        length = int.from_bytes(data[pos + 2:pos + 10], "big")
    return size, length, data[pos] & 0x0F


class Tunnel:
    """Relay between one client connection and one backend connection."""

    def __init__(
        self,
        request: web.BaseRequest,
        upstream: UpstreamConnection,
        route: Route,
        on_activity: Callable[[Route], None],
    ) -> None:
        self._client = request.transport
        self._writer = request.writer
        self._up = upstream
        self._route = route
        self._on_activity = on_activity
        self._up_paused = False
        self._frames = FrameBoundary()
        self._going_away = False  # 1001 as soon as the backend's frame under way is complete
        self._cut: asyncio.TimerHandle | None = None  # ... or, if it never completes, a plain close
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def start(self, request: web.BaseRequest) -> None:
        """Begin relaying (the client's 101 must already be sent)."""
        tail = self._up.start_tunnel(self._from_upstream, self.close, self._upstream_writable)
        if tail:
            self._from_upstream(tail)
        # aiohttp feeds any bytes the client sent after its upgrade request
        # to the new parser right away
        request.protocol.set_parser(self)  # type: ignore[arg-type]  # aiohttp internal (see the module docstring)
        request.protocol.keep_alive(False)

    # client -> backend: aiohttp's parser interface
    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self._up.write(data)
        self._on_activity(self._route)
        return False, b""

    def feed_eof(self) -> None:
        self.close()

    # backend -> client
    def _from_upstream(self, data: bytes) -> None:
        client = self._client
        if client is None or client.is_closing():
            self.close()
            return
        if self._going_away:
            end = self._frames.to_boundary(data)
            if end is not None:
                client.write(data[:end])
                self._frames.feed(data[:end])
                self._end_going_away()
                return
        client.write(data)
        self._frames.feed(data)
        self._on_activity(self._route)
        if not self._up_paused and client.get_write_buffer_size() > HIGH_WATER:
            self._up_paused = True
            if self._up.transport is not None:
                self._up.transport.pause_reading()
            asyncio.ensure_future(self._wait_client_drained())

    async def _wait_client_drained(self) -> None:
        try:
            await self._writer.drain()
        except ConnectionError:
            self.close()
            return
        self._up_paused = False
        if self._up.transport is not None and not self._up.transport.is_closing():
            self._up.transport.resume_reading()

    def _upstream_writable(self, writable: bool) -> None:
        client = self._client
        if client is None or client.is_closing():
            return
        if writable:
            client.resume_reading()
        else:
            client.pause_reading()

    def going_away(self) -> None:
        """The gateway stops: stop relaying, send the client a 1001 close frame, close both sides.

        A backend frame half relayed is finished first (a close frame inside it would corrupt the
        stream); the rest of the backend's stream is dropped. A backend that never finishes it is
        cut after ``FRAME_GRACE`` seconds (no close frame then: it would land inside the frame)."""
        if self.done.done():
            return
        frames = self._frames
        client = self._client
        if not frames.at_boundary and not frames.closed and client is not None and not client.is_closing():
            if not self._going_away:
                self._going_away = True
                self._cut = asyncio.get_running_loop().call_later(FRAME_GRACE, self.close)
            return
        self._end_going_away()

    def _end_going_away(self) -> None:
        up = self._up.transport
        if up is not None and not up.is_closing():
            up.pause_reading()  # nothing more from the backend: the client's stream ends here
        client = self._client
        frames = self._frames
        if client is not None and not client.is_closing() and frames.at_boundary and not frames.closed:
            client.write(CLOSE_GOING_AWAY)
        self.close()

    def close(self) -> None:
        """End both sides (pending bytes are flushed first)."""
        if self._cut is not None:
            self._cut.cancel()
        if self._client is not None and not self._client.is_closing():
            self._client.close()
        up = self._up.transport
        if up is not None and not up.is_closing():
            up.close()
        if not self.done.done():
            self.done.set_result(None)
