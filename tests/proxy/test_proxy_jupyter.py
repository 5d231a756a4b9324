"""A real jupyter-server behind the forwarder: REST call and a kernel's
websocket channels (execute ``print(6*7)``, read ``42`` back)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid

import aiohttp
import pytest

from gateway.wire.httpstrict import server_handler_args
from gateway.wire.routing import Route
from tests.helpers.spawn import execute_request
from tests.helpers.hub import free_port
from tests.helpers.proxy_harness import make_app

SECRET = "jupyter-secret-" + uuid.uuid4().hex
PREFIX = "/user/kim/"


@pytest.fixture
async def jupyter(tmp_path):
    port = free_port()
    args = [
        sys.executable, "-m", "jupyter_server",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", f"--ServerApp.base_url={PREFIX}",
        "--ServerApp.allow_remote_access=True", "--ServerApp.open_browser=False",
        f"--ServerApp.root_dir={tmp_path}", "--ServerApp.port_retries=0",
    ]
    if os.geteuid() == 0:
        args.append("--allow-root")
    proc = subprocess.Popen(
        args, env={**os.environ, "JUPYTER_TOKEN": SECRET}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(120):  # up to ~60 s to start
                try:
                    async with s.get(f"http://127.0.0.1:{port}{PREFIX}api/status", headers={"Authorization": f"token {SECRET}"}) as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if proc.poll() is not None:
                    pytest.fail("jupyter-server exited")
                await asyncio.sleep(0.5)
            else:
                pytest.fail("jupyter-server did not start")
        yield port
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


async def test_kernel_over_websocket(aiohttp_server, jupyter):
    route = Route(PREFIX, f"http://127.0.0.1:{jupyter}", "user", "kim", "", None, SECRET)
    server = await aiohttp_server(make_app(routes=[route], tokens={"tok-kim": "kim"}), **server_handler_args())
    base = f"http://127.0.0.1:{server.port}{PREFIX}"
    auth = {"Authorization": "token tok-kim"}
    async with aiohttp.ClientSession() as s:
        async with s.get(base + "api/status", headers=auth) as r:
            assert r.status == 200
        async with s.get(base + "api/status") as r:  # the gateway refuses, not the backend
            assert r.status == 403
        async with s.post(base + "api/kernels", json={"name": "python3"}, headers=auth) as r:
            assert r.status == 201
            kernel = (await r.json())["id"]
        try:
            session = uuid.uuid4().hex
            async with s.ws_connect(f"{base}api/kernels/{kernel}/channels?session_id={session}", headers=auth) as ws:
                request = execute_request("print(6*7)", session)
                await ws.send_str(json.dumps(request))
                output = None
                replied = False
                # bounded: start-up chatter, then our output; shell (reply) and
                # iopub (stream) messages may arrive in either order
                for _ in range(200):
                    msg = await ws.receive(timeout=60)
                    assert msg.type == aiohttp.WSMsgType.TEXT
                    data = json.loads(msg.data)
                    if data.get("parent_header", {}).get("msg_id") != request["header"]["msg_id"]:
                        continue
                    if data["msg_type"] == "stream":
                        output = data["content"]["text"]
                    if data["msg_type"] == "execute_reply":
                        replied = True
                    if replied and output is not None:
                        break
                assert output == "42\n"
        finally:
            async with s.delete(f"{base}api/kernels/{kernel}", headers=auth) as r:
                assert r.status == 204
