"""A bounded websocket load client for the proxy benchmark.

Raw asyncio protocol (no framework) so that the client is cheap next to the
proxies it measures. Two modes:

``echo URL CONNS SECONDS [TOKEN]``
    CONNS connections each send one small masked text frame, wait for the
    echo, send the next; prints round trips per second.
``hold URL CONNS SECONDS [TOKEN]``
    opens CONNS websockets, prints ``open N``, keeps them for SECONDS, closes.
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
import time
from urllib.parse import urlsplit

PAYLOAD = b"x" * 32
MASK = b"\x01\x02\x03\x04"
FRAME = bytes((0x81, 0x80 | len(PAYLOAD))) + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(PAYLOAD))
ECHO_LEN = 2 + len(PAYLOAD)


class Client(asyncio.Protocol):
    def __init__(self, request: bytes, echo: bool) -> None:
        self.request = request
        self.echo = echo
        self.open = asyncio.get_running_loop().create_future()
        self.head = b""
        self.pending = 0
        self.count = 0
        self.running = True

    def connection_made(self, transport) -> None:
        self.t = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self.open.done():
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.head.startswith(b"HTTP/1.1 101"):
                self.open.set_exception(RuntimeError(self.head[:60].decode("latin-1")))
                return
            data = self.head[end + 4:]
            self.open.set_result(None)
        if not self.echo:
            return
        self.pending += len(data)
        while self.pending >= ECHO_LEN:
            self.pending -= ECHO_LEN
            self.count += 1
            if self.running:
                self.t.write(FRAME)

    def connection_lost(self, exc) -> None:
        if not self.open.done():
            self.open.set_exception(ConnectionError("closed during handshake"))


async def connect(url: str, token: str, echo: bool) -> Client:
    parts = urlsplit(url)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {parts.path}{'?' + parts.query if parts.query else ''} HTTP/1.1\r\n"
        f"Host: {parts.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        + (f"Authorization: token {token}\r\n" if token else "")
        + "\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(lambda: Client(request, echo), parts.hostname, parts.port)
    await asyncio.wait_for(client.open, 30)
    return client


async def main(mode: str, url: str, conns: int, seconds: float, token: str) -> None:
    if mode == "echo":
        clients = [await connect(url, token, True) for _ in range(conns)]
        start = time.monotonic()
        for c in clients:
            c.t.write(FRAME)
        await asyncio.sleep(seconds)
        for c in clients:
            c.running = False
        elapsed = time.monotonic() - start
        print(f"{sum(c.count for c in clients) / elapsed:.0f}", flush=True)
    else:
        clients = []
        for _ in range(conns):
            clients.append(await connect(url, token, False))
        print(f"open {len(clients)}", flush=True)
        await asyncio.sleep(seconds)
    for c in clients:
        c.t.close()


if __name__ == "__main__":
    mode, url, conns, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    coro = main(mode, url, conns, seconds, sys.argv[5] if len(sys.argv) > 5 else "")
    try:  # the load generator must not be the bottleneck: uvloop roughly halves its cost per round trip
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)
