"""The listening socket's protocol: plain proxied requests on a lean path, the rest to aiohttp.

Why: aiohttp's request machinery (request objects, router, middlewares, response preparation)
costs about as much CPU as the whole budget of a proxied request (issue 5 asks for under about
50 µs). A :class:`FrontDoor` reads each request head itself. A *plain* request (see
:func:`gateway.wire.http1.parse_plain_request`) that its :class:`Lane` accepts (the proxy's: a
token-authenticated request for a running route the caller may reach) is served here, through
the same authorization policy, upstream pool and header rewriting as the aiohttp path.

Everything else (a hub page, a login cookie, a websocket upgrade, a refusal, unusual framing, a
large upload) hands the connection to aiohttp for good, with the bytes read so far: every answer
that is not a plain forward has exactly one implementation, aiohttp's path. So a browser's
connection, which starts at ``/hub/``, is aiohttp's from its first byte; API clients and
JupyterLab's token-carrying requests keep the lean path.

Connection rules kept here as aiohttp keeps them: HTTP/1.1 keep-alive, pipelined requests
answered in order, ``Connection: close`` honoured, a connection idle (or sending a head or body
too slowly) for ``idle_timeout`` closed, a client that leaves cancels its request (and the backend
connection is dropped, not left waiting for the read timeout).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Callable, Protocol

from aiohttp import web

from gateway.wire.forward import STREAM_WRITE_HIGH
from gateway.wire.http1 import PlainRequest, parse_plain_request, plain_text_response
from gateway.wire.httpstrict import server_handler_args

__all__ = ["FrontDoor", "FrontDoorSite", "Lane", "Doors", "listening_site"]

log = logging.getLogger("gateway.frontdoor")

MAX_HEAD = 16 * 1024  # larger heads are aiohttp's to refuse (431/414)
MAX_BODY = 64 * 1024  # larger request bodies are streamed by aiohttp's path
MAX_PENDING = 256 * 1024  # pipelined bytes buffered while a request is served


class Lane(Protocol):
    """What a front door asks about each plain request."""

    def wants(self, head: PlainRequest) -> bool:
        """Cheap first look: could this request be served here at all?"""

    async def serve(self, door: "FrontDoor", head: PlainRequest, body: bytes) -> bool:
        """Serve it (write the whole response to ``door``) and return True, or return False
        without writing anything: the connection then goes to aiohttp with this request."""


class Doors:
    """The open front-door connections of one listener, their idle sweeper and their shutdown."""

    def __init__(self, lane: Lane, make_handler: Callable[[], asyncio.Protocol], *, idle_timeout: float,
                 scheme: str = "http") -> None:
        self.lane = lane
        self.make_handler = make_handler
        self.idle_timeout = idle_timeout
        self.scheme = scheme
        self.open: set[FrontDoor] = set()
        self.handed_off = 0  # connections given to aiohttp (tests and the bench read it)
        self.served = 0  # requests served on the lean path
        self.closing = False
        self._sweeper: asyncio.Task[None] | None = None
        self._all_done: asyncio.Future[None] | None = None

    def __call__(self) -> "FrontDoor":
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        return FrontDoor(self)

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(0.1, min(1.0, self.idle_timeout / 4)))
            deadline = loop.time() - self.idle_timeout
            for door in [d for d in self.open if not d.busy and d.last_active < deadline]:
                door.close()

    def forget(self, door: "FrontDoor") -> None:
        self.open.discard(door)
        if self._all_done is not None and not self._all_done.done() and not any(d.busy for d in self.open):
            self._all_done.set_result(None)

    async def shutdown(self, timeout: float) -> None:
        """Close idle connections now; let requests in flight finish for up to ``timeout`` seconds."""
        self.closing = True
        log.info("Front doors: %d requests served, %d connections handed to aiohttp", self.served, self.handed_off)
        if self._sweeper is not None:
            self._sweeper.cancel()
        for door in list(self.open):
            if not door.busy:
                door.close()
        if any(d.busy for d in self.open):
            self._all_done = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._all_done), timeout)
            except TimeoutError:
                pass
        for door in list(self.open):
            door.abort()


class FrontDoor(asyncio.Protocol):
    """One client connection, until (and unless) it is handed to aiohttp."""

    def __init__(self, doors: Doors) -> None:
        self.doors = doors
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.buf = bytearray()
        self.busy = False
        self.last_active = 0.0
        self._task: asyncio.Task[None] | None = None
        self._reading_paused = False
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._handed_off = False
        self._lost = False
        self._ended = False  # closed or cut by us: no further request is read, served or handed off
        self._pending: tuple[PlainRequest, int, int] | None = None  # parsed head, body start, total
        self._streamed = False
        self._wrote = False
        self._keep_alive = True

    @property
    def scheme(self) -> str:
        return self.doors.scheme

    @property
    def closing(self) -> bool:
        return self.doors.closing

    @property
    def keep_alive(self) -> bool:
        """Whether the response being written may keep the connection (read when its head is
        written: a gateway that began stopping meanwhile answers with ``Connection: close``)."""
        return self._keep_alive and not self.doors.closing

    # -- asyncio.Protocol -------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else ""
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)  # as aiohttp does: find dead peers
            except OSError:
                pass
        self.last_active = asyncio.get_running_loop().time()
        self.doors.open.add(self)
        if self.doors.closing:
            self.close()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._next()
        elif len(self.buf) > MAX_PENDING and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]

    def eof_received(self) -> bool:
        # the client closed its side: as nginx does, take that as leaving (the request in flight
        # is cancelled and its backend connection dropped, not left waiting for the read timeout)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self.transport = None
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._wake_drain(ConnectionResetError("client connection lost"))
        self.busy = False
        self.doors.forget(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drain(None)

    # -- for the lane -----------------------------------------------------
    def write(self, data: bytes) -> None:
        self._wrote = True
        if self.transport is not None:
            self.transport.write(data)

    async def drain(self) -> None:
        """Wait while the client's socket buffer is full; raises ConnectionError once it is gone."""
        if self._lost:
            raise ConnectionResetError("client connection lost")
        if self._write_paused:
            self._drain = asyncio.get_running_loop().create_future()
            await self._drain

    def stream_mode(self) -> None:
        """A large response follows: keep more of it queued towards the client."""
        self._streamed = True
        if self.transport is not None:
            self.transport.set_write_buffer_limits(high=STREAM_WRITE_HIGH, low=STREAM_WRITE_HIGH // 4)

    def abort(self) -> None:
        """Cut the connection (a response that cannot be completed must show as truncated)."""
        self._ended = True
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self._ended = True
        if self.transport is not None:
            self.transport.close()

    # -- internals --------------------------------------------------------
    def _wake_drain(self, exc: BaseException | None) -> None:
        waiter, self._drain = self._drain, None
        if waiter is not None and not waiter.done():
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)

    def _next(self) -> None:
        """Take the next complete request from the buffer, if there is one."""
        if self._ended:
            return
        buf = self.buf
        pending = self._pending
        if pending is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                # a head ending in a bare LF never ends for us: aiohttp's parser refuses it (400) at once
                if len(buf) > MAX_HEAD or b"\n\n" in buf or b"\n\r\n" in buf:
                    self._hand_off()
                return
            if end > MAX_HEAD:
                self._hand_off()
                return
            head = parse_plain_request(bytes(buf[:end]))
            if head is None or (head.content_length or 0) > MAX_BODY or not self.doors.lane.wants(head):
                self._hand_off()
                return
            # parsed once: a body arriving in many pieces does not parse the head again, and the
            # idle sweep counts from here (a request under way is not an idle connection)
            pending = self._pending = (head, end + 4, end + 4 + (head.content_length or 0))
            self.last_active = asyncio.get_running_loop().time()
        head, body_start, total = pending
        if len(buf) < total:
            return  # the rest of the body is on its way (bounded by MAX_BODY and the idle sweep)
        self._pending = None
        raw = bytes(buf[:total])
        del buf[:total]
        self.busy = True
        self._wrote = False
        self._keep_alive = head.keep_alive
        self._task = asyncio.get_running_loop().create_task(self._serve(head, raw, body_start))

    async def _serve(self, head: PlainRequest, raw: bytes, body_start: int) -> None:
        try:
            served = await self.doors.lane.serve(self, head, raw[body_start:])
            if served and self._write_paused:
                # a client that pipelines requests but does not read the answers: take no more
                # of its requests until it does (its answers would pile up in memory)
                await self.drain()
        except (asyncio.CancelledError, ConnectionError):
            return  # the client left
        except Exception:
            log.exception("proxied request failed")
            if not self._wrote and not self._lost:
                self.write(plain_text_response(500, "500 Internal Server Error", keep_alive=False))
                self.close()
            else:
                self.abort()
            return
        if self._lost or self._ended:
            # cut mid-answer (its backend failed): a pipelined request behind it stays unanswered,
            # and the connection, closing already, is never handed to aiohttp
            return
        if not served:
            self.buf[:0] = raw
            self._hand_off()
            return
        self.doors.served += 1
        self.busy = False
        self.last_active = asyncio.get_running_loop().time()
        if not head.keep_alive or self.doors.closing:
            self.close()
            self.doors.forget(self)
            return
        if self._streamed:
            self._streamed = False
            self.transport.set_write_buffer_limits()  # type: ignore[union-attr]  # asyncio's defaults again
        if self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]
        if self.buf:
            self._next()

    def _hand_off(self) -> None:
        """Give the connection, with every byte read so far, to aiohttp's request handler."""
        transport = self.transport
        if transport is None or self._handed_off or self._ended:
            return
        self._handed_off = True
        self._pending = None
        self.busy = False
        self.doors.handed_off += 1
        self.doors.forget(self)
        data, self.buf = bytes(self.buf), bytearray()
        handler = self.doors.make_handler()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if self._write_paused:
            handler.pause_writing()
        if self._reading_paused:
            transport.resume_reading()
        if data:
            handler.data_received(data)


class FrontDoorSite(web.TCPSite):
    """A TCPSite whose connections open on a front door when it is given a lane; without one it is
    aiohttp's own TCPSite.

    Private aiohttp internals, used here and nowhere else (checked against the pinned aiohttp
    minor versions): ``TCPSite._server`` (the listening asyncio server, which ``stop`` closes),
    the attributes ``TCPSite.__init__`` keeps (``_host``, ``_port``, ``_ssl_context``,
    ``_backlog``, ``_reuse_address``, ``_reuse_port``, ``_bound_port``), ``BaseSite._runner``,
    and the handing of a connection to ``runner.server`` (aiohttp's protocol factory) with
    ``transport.set_protocol``."""

    @property
    def port(self) -> int:
        """The port it listens on (the one chosen by the system for port 0)."""
        sockets = self._server.sockets if self._server is not None else ()
        return sockets[0].getsockname()[1] if sockets else self._port

    def __init__(self, runner: web.AppRunner, *args, lane: Lane | None, drains: set[asyncio.Task[None]] | None = None,
                 idle_timeout: float = 75.0, drain_timeout: float = 10.0, **kwargs) -> None:
        super().__init__(runner, *args, **kwargs)
        self._lane = lane
        self._drains = drains
        self._idle_timeout = idle_timeout
        self._drain_timeout = drain_timeout
        self.doors: Doors | None = None

    async def stop(self) -> None:
        """Stop listening; the front doors' requests in flight get ``drain_timeout`` to finish,
        alongside aiohttp's own: the drain joins ``drains`` (which the app awaits before its proxy
        closes), or is awaited here when there is no such set."""
        await super().stop()
        if self.doors is not None:
            drain = asyncio.get_running_loop().create_task(self.doors.shutdown(self._drain_timeout))
            if self._drains is None:
                await drain
            else:
                self._drains.add(drain)

    async def start(self) -> None:
        if self._lane is None:
            await super().start()
            return
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        self.doors = Doors(self._lane, server, idle_timeout=self._idle_timeout,
                           scheme="https" if self._ssl_context else "http")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.doors, self._host, self._port, ssl=self._ssl_context, backlog=self._backlog,
            reuse_address=self._reuse_address, reuse_port=self._reuse_port,
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port


def listening_site(runner: web.AppRunner, host: str, port: int, *, lane: Lane | None,
                   drains: set[asyncio.Task[None]] | None, shutdown_timeout: float, **kwargs) -> FrontDoorSite:
    """The gateway's listening site: front doors when given a lane (the proxy's, with
    ``c.Gateway.front_doors``, the default), whose shutdown drains join ``drains``."""
    return FrontDoorSite(runner, host, port, lane=lane, drains=drains,
                         idle_timeout=server_handler_args()["keepalive_timeout"],
                         drain_timeout=shutdown_timeout, **kwargs)
