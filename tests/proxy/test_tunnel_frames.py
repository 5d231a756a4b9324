"""FrameBoundary: where the tunnel may put its 1001 close frame, fed in every possible chunking; and the
tunnel finishing a half-relayed frame before that close frame."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import os
import re

import aiohttp
import pytest

from gateway import keys
from gateway.wire.routing import Route
from gateway.wire.tunnel import FrameBoundary


def frame(opcode: int, payload: bytes, masked: bool = False) -> bytes:
    n = len(payload)
    second = 0x80 if masked else 0
    if n < 126:
        head = bytes((0x80 | opcode, second | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, second | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, second | 127)) + n.to_bytes(8, "big")
    return head + (b"\x01\x02\x03\x04" if masked else b"") + payload


STREAM = [frame(1, b"hi"), frame(2, os.urandom(300)), frame(2, os.urandom(70_000)), frame(9, b""),
          frame(1, b"x" * 125, masked=True), frame(1, b"y" * 126)]
STREAM_ENDS = list(itertools.accumulate(len(f) for f in STREAM))  # where each frame ends in the stream


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1000, 65536, 10**6])
def test_boundaries_found_whatever_the_chunking(size):
    data = b"".join(STREAM)
    ends = set(STREAM_ENDS)
    frames = FrameBoundary()
    for start in range(0, len(data), size):
        chunk = data[start:start + size]
        frames.feed(chunk)
        end = start + len(chunk)
        assert frames.at_boundary == (end in ends), (size, end)
    assert frames.at_boundary and not frames.closed


def test_close_frame_noticed():
    frames = FrameBoundary()
    frames.feed(frame(1, b"a") + frame(8, b"\x03\xe8"))
    assert frames.closed and frames.at_boundary


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1000, 65536, 10**6])
def test_bytes_to_the_next_boundary(size):
    """to_boundary says where the frame under way ends in the next chunk (the tunnel stops there
    to put its 1001 close frame), whatever the chunking, header splits included."""
    data = b"".join(STREAM)
    frames = FrameBoundary()
    for start in range(0, len(data), size):
        chunk = data[start:start + size]
        end = frames.to_boundary(chunk)
        following = [e for e in STREAM_ENDS if e > start] if not frames.at_boundary else []
        expected = following[0] - start if following and following[0] - start <= len(chunk) else None
        assert end == (0 if frames.at_boundary else expected), (size, start)
        frames.feed(chunk)


class HalfFrameBackend:
    """A websocket backend under our control: it accepts the upgrade, ignores the client's frames,
    and sends exactly the bytes a test writes to ``writer``."""

    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self.writer: asyncio.StreamWriter | None = None
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        key = re.search(rb"(?i)sec-websocket-key:\s*(\S+)", head).group(1)
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        self.writer = writer
        self.connected.set()
        while await reader.read(65536):
            pass


async def half_relayed_frame(hub, backend: HalfFrameBackend, ws, big: bytes):
    """Send half of ``big`` and wait until the gateway has relayed part of it; returns the tunnel."""
    await asyncio.wait_for(backend.connected.wait(), 10)
    backend.writer.write(big[:50_000])
    await backend.writer.drain()
    tunnel = next(iter(hub.app[keys.PROXY]._tunnels))
    for _ in range(200):  # bounded: until the gateway has relayed part of the frame
        if not tunnel._frames.at_boundary:
            break
        await asyncio.sleep(0.01)
    assert not tunnel._frames.at_boundary
    return tunnel


@pytest.fixture
async def ws_backend(hub):
    backend = HalfFrameBackend()
    backend.server = await asyncio.start_server(backend.handle, "127.0.0.1", 0)
    port = backend.server.sockets[0].getsockname()[1]
    hub.app[keys.ROUTES].add(Route(prefix="/user/alice/", target=f"http://127.0.0.1:{port}", kind="user",
                                   user="alice", server_name="", service=None, secret="s" * 20))
    yield backend
    backend.server.close()


async def test_going_away_finishes_the_frame_under_way(hub, ws_backend):
    """The gateway stops while a backend frame is half relayed: the client gets the whole frame,
    then the 1001 close frame, and nothing the backend sends after that frame."""
    token = await hub.new_token("alice")
    big = frame(2, os.urandom(100_000))
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{hub.url}/user/alice/ws", headers={"Authorization": f"token {token}"},
                                      autoclose=False) as ws:
            await half_relayed_frame(hub, ws_backend, ws, big)
            assert hub.app[keys.PROXY].going_away() == 1
            ws_backend.writer.write(big[50_000:] + frame(1, b"after the stop"))
            await ws_backend.writer.drain()
            msg = await ws.receive(timeout=10)
            assert msg.type == aiohttp.WSMsgType.BINARY and len(msg.data) == 100_000
            msg = await ws.receive(timeout=10)
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1001


async def test_going_away_cuts_a_frame_that_never_ends(hub, ws_backend):
    """A backend that never finishes its frame does not hold the tunnel (nor the shutdown): the
    client's connection is cut after a short grace, without a close frame inside the frame."""
    token = await hub.new_token("alice")
    big = frame(2, os.urandom(100_000))
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{hub.url}/user/alice/ws", headers={"Authorization": f"token {token}"},
                                      autoclose=False) as ws:
            tunnel = await half_relayed_frame(hub, ws_backend, ws, big)
            hub.app[keys.PROXY].going_away()
            msg = await ws.receive(timeout=20)  # bounded: the grace is a few seconds
            assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR), msg
            assert tunnel.done.done()
