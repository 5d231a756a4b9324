"""A deliberately cheap HTTP/websocket backend for the proxy benchmark.

Raw asyncio protocol, no framework, so that the proxy in front of it (not the
backend) is what the benchmark measures. It understands just enough HTTP/1.1:

* ``GET /<anything>/stream/<n>``  -> ``n`` bytes of body with Content-Length;
* a websocket upgrade on any path -> echo every frame (text, binary), answer
  ping with pong, echo close;
* anything else                    -> ``200 ok`` (request bodies are discarded).

Usage: ``python fast_backend.py PORT``, or as a gateway's ``Spawner.cmd`` (it takes the
port from ``--ServerApp.port=N`` and ignores the other flags).
"""

import asyncio
import base64
import hashlib
import sys

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B85"
SMALL = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
CHUNK = b"x" * (256 * 1024)


class Backend(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = bytearray()
        self.body_left = 0
        self.ws = False
        self.paused = False
        self.resume: asyncio.Future | None = None

    def connection_made(self, transport) -> None:
        self.t = transport

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.resume and not self.resume.done():
            self.resume.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.ws:
            self.buf += data
            self.ws_frames()
            return
        if self.body_left:
            used = min(self.body_left, len(data))
            self.body_left -= used
            data = data[used:]
        self.buf += data
        while not self.ws and not self.body_left:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            del self.buf[: end + 4]
            method, target, _ = head[0].split(" ", 2)
            hdrs = {}
            for line in head[1:]:
                k, _, v = line.partition(":")
                hdrs[k.strip().lower()] = v.strip()
            length = int(hdrs.get("content-length", "0"))
            take = min(length, len(self.buf))
            del self.buf[:take]
            self.body_left = length - take
            self.respond(method, target, hdrs)

    def respond(self, method: str, target: str, hdrs: dict) -> None:
        if hdrs.get("upgrade", "").lower() == "websocket":
            accept = base64.b64encode(
                hashlib.sha1(hdrs["sec-websocket-key"].encode() + WS_GUID).digest()
            )
            extra = b""
            if "sec-websocket-protocol" in hdrs:
                proto = hdrs["sec-websocket-protocol"].split(",")[0].strip()
                extra = b"Sec-WebSocket-Protocol: " + proto.encode() + b"\r\n"
            self.t.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n" + extra + b"\r\n"
            )
            self.ws = True
            self.ws_frames()
            return
        path = target.split("?", 1)[0]
        parts = path.rstrip("/").rsplit("/", 2)
        if len(parts) == 3 and parts[1] == "stream":
            asyncio.ensure_future(self.stream(int(parts[2])))
        else:
            self.t.write(SMALL)

    async def stream(self, n: int) -> None:
        self.t.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     b"Content-Length: %d\r\n\r\n" % n)
        while n > 0 and not self.t.is_closing():
            piece = CHUNK if n >= len(CHUNK) else CHUNK[:n]
            self.t.write(piece)
            n -= len(piece)
            if self.paused:
                self.resume = asyncio.get_running_loop().create_future()
                await self.resume

    def ws_frames(self) -> None:
        buf = self.buf
        while len(buf) >= 2:
            b0, b1 = buf[0], buf[1]
            ln = b1 & 0x7F
            pos = 2
            if ln == 126:
                if len(buf) < 4:
                    return
                ln = int.from_bytes(buf[2:4], "big")
                pos = 4
            elif ln == 127:
                if len(buf) < 10:
                    return
                ln = int.from_bytes(buf[2:10], "big")
                pos = 10
            masked = b1 & 0x80
            if len(buf) < pos + (4 if masked else 0) + ln:
                return
            if masked:
                key = bytes(buf[pos:pos + 4])
                pos += 4
                payload = bytes(buf[pos:pos + ln])
                mask = (key * (ln // 4 + 1))[:ln]
                payload = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(ln, "big")
            else:
                payload = bytes(buf[pos:pos + ln])
            del buf[:pos + ln]
            opcode = b0 & 0x0F
            if opcode == 0x9:  # ping -> pong
                b0 = (b0 & 0xF0) | 0xA
            elif opcode == 0xA:  # unsolicited pong: ignore
                continue
            if ln < 126:
                header = bytes((b0, ln))
            elif ln < 65536:
                header = bytes((b0, 126)) + ln.to_bytes(2, "big")
            else:
                header = bytes((b0, 127)) + ln.to_bytes(8, "big")
            self.t.write(header + payload)
            if opcode == 0x8:
                self.t.close()
                return


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Backend, "127.0.0.1", port, backlog=1024)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def port_from(argv: list[str]) -> int:
    for arg in argv:
        if arg.isdigit():
            return int(arg)
        if arg.startswith("--ServerApp.port="):
            return int(arg.split("=", 1)[1])
    raise SystemExit("usage: fast_backend.py PORT")


if __name__ == "__main__":
    asyncio.run(main(port_from(sys.argv[1:])))
