"""A stand-in single-user server for tests: a real aiohttp app, run as its own process.

Command line: the flags jupyter-server takes for where to listen (``--ServerApp.ip=``,
``--ServerApp.port=``, ``--ServerApp.base_url=``; also ``NotebookApp.*``, ``--port=`` and the
``--flag value`` form); every other argument is ignored. Without flags it falls back to
``$JUPYTERHUB_SERVICE_URL`` and ``$JUPYTERHUB_SERVICE_PREFIX``, as jupyterhub-singleuser does.

Every request must carry ``Authorization: token $JUPYTER_TOKEN`` (``Bearer`` also accepted);
anything else gets 403 ``{"message": "Forbidden", "reason": null}``, as jupyter-server answers.
Paths are matched raw (undecoded) under base_url:

  GET  api/status  {"started", "pid", "child_pid", "uid", "cwd", "base_url", "user"}
  GET  api/env     the process environment, secret values replaced by "[redacted]"
  ANY  echo[/...]  method, raw path, query string, host, headers, body (and its length, sha256)
  PUT  sink        (or POST) reads the body as a stream without keeping it: {"bytes", "sha256"}
  GET  source?bytes=N  streams N bytes (SOURCE_BLOCK repeated, cut at N) with Content-Length
  GET  ws          websocket echo of text and binary frames; text "close:<code>" closes with <code>;
                   the first subprotocol the client offers is accepted

Environment switches:
  FAKE_SERVER_FAIL=1            print a message and exit with status 3 before listening
  FAKE_SERVER_HANG=1            listen but never answer
  FAKE_SERVER_CHILD=1           start a child in our process group that ignores SIGINT and SIGTERM
  FAKE_SERVER_IGNORE_SIGNALS=1  ignore SIGINT and SIGTERM ourselves (only SIGKILL stops us)
  FAKE_SERVER_PIDFILE=<path>    write our pid there first thing
  FAKE_SERVER_GATE=<path>       wait (at most GATE_WAIT_SECONDS) until <path> exists before listening,
                                so a test holds a start pending for as long as it needs

Run by hand: JUPYTER_TOKEN=abc python tests/backends/fake_server.py --ServerApp.port=9999 --ServerApp.base_url=/user/a/
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import hmac
import os
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlparse

from aiohttp import WSMsgType, web

GATE_WAIT_SECONDS = 120.0
# what GET source sends, repeated: 256 KiB, every byte value
SOURCE_BLOCK = bytes(range(256)) * 1024
SECRET_NAMES = ("JUPYTER_TOKEN", "JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN")
STUBBORN_CHILD = (
    "import signal, time\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "time.sleep(600)\n"
)


def parse_flags(argv: list[str]) -> dict[str, str]:
    """ip, port and base_url from jupyter-server style flags; unknown flags are skipped."""
    found: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("--"):
            continue
        key, has_value, value = arg[2:].partition("=")
        owner, _, trait = key.rpartition(".")
        trait = trait.replace("-", "_")
        if owner not in ("", "ServerApp", "NotebookApp") or trait not in ("ip", "port", "base_url"):
            continue
        if not has_value and i < len(argv) and not argv[i].startswith("--"):
            value = argv[i]
            i += 1
        found[trait] = value
    return found


def listen_address(argv: list[str]) -> tuple[str, int, str]:
    flags = parse_flags(argv)
    service = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", ""))
    ip = flags.get("ip") or service.hostname or "127.0.0.1"
    port = int(flags.get("port") or service.port or 8888)
    base = flags.get("base_url") or os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or "/"
    base = "/" + base.strip("/") + "/" if base.strip("/") else "/"
    return ip, port, base


def forbidden() -> web.Response:
    return web.json_response({"message": "Forbidden", "reason": None}, status=403)


def authorized(request: web.Request, secret: str) -> bool:
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if not secret or scheme.lower() not in ("token", "bearer"):
        return False
    return hmac.compare_digest(presented.strip().encode(), secret.encode())


def make_app(base: str, secret: str, child_pid: int | None) -> web.Application:
    started = datetime.datetime.now(datetime.timezone.utc).isoformat()

    async def status(request: web.Request) -> web.Response:
        return web.json_response({
            "started": started, "pid": os.getpid(), "child_pid": child_pid, "uid": os.getuid(),
            "cwd": os.getcwd(), "base_url": base, "user": os.environ.get("JUPYTERHUB_USER"),
        })

    async def env(request: web.Request) -> web.Response:
        return web.json_response({k: "[redacted]" if k in SECRET_NAMES else v for k, v in os.environ.items()})

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response({
            "method": request.method, "path": request.raw_path.partition("?")[0],
            "query_string": request.query_string, "host": request.host,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body": body.decode("utf-8", "replace") if len(body) <= 1 << 20 else None,
            "body_length": len(body), "body_sha256": hashlib.sha256(body).hexdigest(),
        })

    async def sink(request: web.Request) -> web.Response:
        digest, count = hashlib.sha256(), 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            count += len(chunk)
        return web.json_response({"bytes": count, "sha256": digest.hexdigest()})

    async def source(request: web.Request) -> web.StreamResponse:
        try:
            left = int(request.query.get("bytes", "0"))
        except ValueError:
            return web.json_response({"message": "bytes must be an integer", "reason": None}, status=400)
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = left
        await response.prepare(request)
        while left > 0:
            piece = SOURCE_BLOCK if left >= len(SOURCE_BLOCK) else SOURCE_BLOCK[:left]
            await response.write(piece)
            left -= len(piece)
        await response.write_eof()
        return response

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        ws = web.WebSocketResponse(protocols=offered[:1])
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                if msg.data.startswith("close:"):
                    await ws.close(code=int(msg.data[6:]), message=b"asked to close")
                    break
                await ws.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    async def dispatch(request: web.Request) -> web.StreamResponse:
        if not authorized(request, secret):
            return forbidden()
        path = request.raw_path.partition("?")[0]
        if not path.startswith(base):
            return web.json_response({"message": "Not Found", "reason": None}, status=404)
        rest = path[len(base):]
        if rest == "api/status" and request.method == "GET":
            return await status(request)
        if rest == "api/env" and request.method == "GET":
            return await env(request)
        if rest == "ws" and request.method == "GET":
            return await websocket(request)
        if rest == "sink" and request.method in ("PUT", "POST"):
            return await sink(request)
        if rest == "source" and request.method == "GET":
            return await source(request)
        if rest == "echo" or rest.startswith("echo/"):
            return await echo(request)
        return web.json_response({"message": "Not Found", "reason": None}, status=404)

    app = web.Application(client_max_size=1 << 30)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app


def main(argv: list[str]) -> int:
    print(f"fake server {os.getpid()} starting", flush=True)
    if os.environ.get("FAKE_SERVER_PIDFILE"):
        with open(os.environ["FAKE_SERVER_PIDFILE"], "w") as f:
            f.write(str(os.getpid()))
    if os.environ.get("FAKE_SERVER_FAIL") == "1":
        print("fake server: failing at start as asked (FAKE_SERVER_FAIL=1)", flush=True)
        return 3
    gate = os.environ.get("FAKE_SERVER_GATE")
    if gate:
        deadline = time.monotonic() + GATE_WAIT_SECONDS
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.02)
    ip, port, base = listen_address(argv)
    if os.environ.get("FAKE_SERVER_HANG") == "1":
        sock = socket.create_server((ip, port))
        print(f"fake server {os.getpid()} listening on {ip}:{port} and never answering", flush=True)
        time.sleep(600)
        sock.close()
        return 0
    ignore = os.environ.get("FAKE_SERVER_IGNORE_SIGNALS") == "1"
    if ignore:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child_pid = None
    if os.environ.get("FAKE_SERVER_CHILD") == "1":
        child_pid = subprocess.Popen([sys.executable, "-c", STUBBORN_CHILD]).pid
    app = make_app(base, os.environ.get("JUPYTER_TOKEN", ""), child_pid)
    asyncio.run(serve(app, ip, port, base, stop_on_signals=not ignore))
    return 0


async def serve(app: web.Application, ip: str, port: int, base: str, stop_on_signals: bool) -> None:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, ip, port).start()
    # CLOCK_MONOTONIC is shared by all processes: bench/spawn_time.py reads this to time readiness
    print(f"fake server {os.getpid()} listening on http://{ip}:{port}{base} "
          f"at monotonic {time.monotonic():.6f}", flush=True)
    stop = asyncio.Event()
    if stop_on_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
