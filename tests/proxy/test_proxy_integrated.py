"""The proxy inside the whole gateway (create_app, real sockets, servers spawned by the ServerManager):
a jupyter-server kernel over the proxied websocket with ``?token=``, and the strictness answers
(414, 431, CONNECT, CL+TE smuggling, absolute-form targets) given by the real app."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import aiohttp

from tests.helpers.spawn import execute_request
from tests.helpers.wire import raw_exchange, status_of


async def start_server(hub, name: str, token: str, timeout: float = 120) -> None:
    result = await hub.api("POST", f"/users/{name}/server", token=token)
    assert result.status in (201, 202), result.text
    deadline = time.monotonic() + timeout
    while True:
        result = await hub.api("GET", f"/users/{name}/server", token=token)
        if result.status == 200 and result.body.get("ready"):
            return
        assert time.monotonic() < deadline, f"server of {name} not ready: {result.body}"
        await asyncio.sleep(0.2)


async def test_jupyter_kernel_through_the_whole_gateway(start_hub):
    hub = await start_hub(spawner_cmd=())  # the real jupyter-server, spawned by the gateway
    token = await hub.new_token("kim")
    await start_server(hub, "kim", token)
    base = f"{hub.url}/user/kim/"
    auth = {"Authorization": f"token {token}"}
    async with aiohttp.ClientSession() as s:
        async with s.post(base + "api/kernels", json={"name": "python3"}, headers=auth) as r:
            assert r.status == 201, await r.text()
            kernel = (await r.json())["id"]
        try:
            session = uuid.uuid4().hex
            # no header: the user's token rides in ?token= on the upgrade, as JupyterLab's kernel sockets do
            url = f"{base}api/kernels/{kernel}/channels?session_id={session}&token={token}"
            async with s.ws_connect(url, headers={"Sec-Fetch-Mode": "websocket"}) as ws:  # as browsers send
                request = execute_request("1+1", session)
                await ws.send_str(json.dumps(request))
                result = None
                for _ in range(200):  # bounded: start-up chatter, status messages, then the result
                    msg = await ws.receive(timeout=60)
                    assert msg.type == aiohttp.WSMsgType.TEXT, msg
                    data = json.loads(msg.data)
                    if data.get("parent_header", {}).get("msg_id") != request["header"]["msg_id"]:
                        continue
                    if data["msg_type"] == "execute_result":
                        result = data["content"]["data"]["text/plain"]
                        break
                    assert data["msg_type"] != "error", data["content"]
                assert result == "2"
            # the same upgrade with a wrong ?token= never reaches the server
            async with s.get(f"{base}api/kernels/{kernel}/channels?token=wrong",
                             headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                      "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                                      "Sec-WebSocket-Version": "13"}) as r:
                assert r.status == 403
        finally:
            async with s.delete(f"{base}api/kernels/{kernel}", headers=auth) as r:
                assert r.status == 204


# ---------------------------------------------------------------- strictness against the real app


async def echo_hub(start_hub):
    hub = await start_hub()
    token = await hub.new_token("alice")
    await start_server(hub, "alice", token)
    return hub, token, int(hub.url.rsplit(":", 1)[1])


async def test_strict_answers_from_the_real_app(start_hub):
    hub, token, port = await echo_hub(start_hub)
    auth = f"Authorization: token {token}\r\n"
    host = f"Host: 127.0.0.1:{port}\r\n"

    async def status(raw: str) -> int:
        return status_of(await raw_exchange(port, raw.encode()))

    # the route works at all
    assert await status(f"GET /user/alice/echo HTTP/1.1\r\n{host}{auth}\r\n") == 200
    # over-long URL: 414 (not forwarded)
    assert await status(f"GET /user/alice/echo?{'a' * 9000} HTTP/1.1\r\n{host}{auth}\r\n") == 414
    # header block over 16 KiB made of fields each under the per-line cap: 431
    many = "".join(f"X-Filler-{i}: {'b' * 1000}\r\n" for i in range(20))
    assert await status(f"GET /user/alice/echo HTTP/1.1\r\n{host}{auth}{many}\r\n") == 431
    # never a forward proxy
    assert await status(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}\r\n") in (400, 405)


async def test_cl_te_smuggling_with_a_valid_token_is_refused(start_hub):
    hub, token, port = await echo_hub(start_hub)
    smuggled = f"GET /user/alice/echo/SMUGGLED HTTP/1.1\r\nHost: x\r\nAuthorization: token {token}\r\n\r\n"
    body = f"0\r\n\r\n{smuggled}"
    raw = (f"POST /user/alice/echo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: token {token}\r\n"
           f"Content-Length: {len(body)}\r\nTransfer-Encoding: chunked\r\n\r\n{body}")
    answer = await raw_exchange(port, raw.encode(), responses=None, limit=5)
    assert status_of(answer) == 400
    assert answer.count(b"HTTP/1.") == 1  # one answer: the smuggled request was never parsed
    assert b"SMUGGLED" not in answer


async def test_absolute_form_target_is_routed_by_path_and_never_connects_elsewhere(start_hub):
    hub, token, port = await echo_hub(start_hub)
    connections = []

    async def elsewhere(reader, writer):  # a listener the absolute URL names: it must stay untouched
        connections.append(writer.get_extra_info("peername"))
        writer.close()

    decoy = await asyncio.start_server(elsewhere, "127.0.0.1", 0)
    decoy_port = decoy.sockets[0].getsockname()[1]
    try:
        raw = (f"GET http://127.0.0.1:{decoy_port}/user/alice/echo?x=1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               f"Authorization: token {token}\r\n\r\n")
        answer = await raw_exchange(port, raw.encode())
        assert status_of(answer) == 200
        seen = json.loads(answer.split(b"\r\n\r\n", 1)[1])
        assert seen["path"] == "/user/alice/echo" and seen["query_string"] == "x=1"
        # an absolute URL naming another user's path is routed (and authorised) by that path: refused
        raw = (f"GET http://127.0.0.1:{decoy_port}/user/bob/echo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               f"Authorization: token {token}\r\n\r\n")
        assert status_of(await raw_exchange(port, raw.encode())) in (403, 404)
        await asyncio.sleep(0.2)  # a connection attempt, were there one, would have landed by now
        assert connections == []
    finally:
        decoy.close()
        await decoy.wait_closed()
