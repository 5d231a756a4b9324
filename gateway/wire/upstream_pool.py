"""Pooled keep-alive connections to backends (see :mod:`gateway.wire.upstream`).

One sweeper task per pool replaces a timer per request: it aborts requests
whose backend stayed silent longer than the read timeout and closes
connections idle for too long.
"""

from __future__ import annotations

import asyncio

from gateway.wire.upstream import _DONE, BackendUnavailable, UpstreamConnection

__all__ = ["UpstreamPool"]


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
            conn.pooled = False
            if (conn.state == _DONE and conn.keep_alive and conn.transport is not None
                    and not conn.transport.is_closing()):
                conn.reused = True
                return conn
            conn.abort()
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
        conn.pooled = True
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
