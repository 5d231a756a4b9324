"""Is a local server answering HTTP yet? The readiness probe of ``ProcessSpawner``.

A cheap TCP connect first (refused at once while nothing listens), then one GET whose status line
is enough: the answer's content does not matter, only that an HTTP server is there.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from gateway.spawners import procs


async def connect(port: int) -> socket.socket | None:
    """A connected socket to 127.0.0.1:port, or None (refused at once when nothing listens)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(loop.sock_connect(sock, (procs.LOOPBACK, port)), 1.0)
    except (OSError, TimeoutError):
        sock.close()
        return None
    return sock


async def answers(sock: socket.socket, port: int, path: str, deadline: float, *, check_interval: float,
                  exited: Callable[[], bool]) -> bool:
    """Send one GET over the connected socket; True on any HTTP status line.

    A server may accept connections well before it answers (jupyter-server binds, then loads
    its extensions), so the request stays out while ``exited()`` is checked every
    ``check_interval`` seconds: False once the process is gone or ``deadline`` (loop time) passed.
    """
    loop = asyncio.get_running_loop()
    probe = asyncio.ensure_future(_status_line(loop, sock, port, path))
    try:
        while True:
            done, _ = await asyncio.wait({probe}, timeout=check_interval)
            if done:
                return probe.result()
            if exited() or loop.time() >= deadline:
                return False
    finally:
        probe.cancel()  # the probe closes the socket itself, once its reader is unregistered


async def _status_line(loop: asyncio.AbstractEventLoop, sock: socket.socket, port: int, path: str) -> bool:
    request = (f"GET {path} HTTP/1.1\r\nHost: {procs.LOOPBACK}:{port}\r\nAccept: application/json\r\n"
               "User-Agent: gateway-spawner\r\nConnection: close\r\n\r\n").encode("ascii")
    data = b""
    try:
        await loop.sock_sendall(sock, request)
        while b"\r\n" not in data and len(data) < 1024:
            chunk = await loop.sock_recv(sock, 1024)
            if not chunk:
                break
            data += chunk
    except OSError:
        return False
    finally:
        sock.close()
    return data.startswith(b"HTTP/")
