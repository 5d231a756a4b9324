"""The real gateway process in front of real user servers: 1 GiB each way with flat memory, and
websockets closed with 1001 (going away) when the gateway stops."""

from __future__ import annotations

import asyncio
import hashlib
import signal

import aiohttp

from tests.backends.fake_server import SOURCE_BLOCK
from tests.helpers.processes import new_tokens, peak_rss_mib, rss_mib, start_servers, users_config

GIB = 1024**3
BLOCK = 1024 * 1024
MEMORY_BOUND_MIB = 200  # the gateway's peak RSS over the whole test, body sizes notwithstanding
BIG_MESSAGE = b"z" * (1024 * 1024)  # under the fake server's 4 MiB message limit


async def test_one_gib_up_and_down_with_flat_memory(gateway_process):
    tokens = new_tokens(["big"])
    gw = gateway_process(users_config(tokens, f"c.Gateway.proxy_max_body_size = {2 * GIB}\n"))
    gw.start()
    await gw.wait_ready()
    await start_servers(gw, tokens)
    url = f"{gw.url}/user/big/"
    auth = {"Authorization": f"token {tokens['big']}"}
    timeout = aiohttp.ClientTimeout(total=600, sock_read=120)
    async with aiohttp.ClientSession(timeout=timeout) as s:
        async with s.get(url + "api/status", headers=auth) as r:  # imports, pools, first request
            assert r.status == 200
        before = peak_rss_mib(gw.proc.pid)

        block = b"u" * BLOCK

        async def produce():
            for _ in range(GIB // BLOCK):
                yield block

        async with s.put(url + "sink", data=produce(), headers={**auth, "Content-Length": str(GIB)}) as r:
            assert r.status == 200, await r.text()
            seen = await r.json()
        expected = hashlib.sha256()
        for _ in range(GIB // BLOCK):
            expected.update(block)
        assert seen == {"bytes": GIB, "sha256": expected.hexdigest()}
        after_upload = peak_rss_mib(gw.proc.pid)

        got, digest = 0, hashlib.sha256()
        async with s.get(url + f"source?bytes={GIB}", headers=auth) as r:
            assert r.status == 200 and r.content_length == GIB
            async for chunk in r.content.iter_chunked(BLOCK):
                got += len(chunk)
                digest.update(chunk)
        expected = hashlib.sha256()
        for _ in range(GIB // len(SOURCE_BLOCK)):
            expected.update(SOURCE_BLOCK)
        assert got == GIB and digest.hexdigest() == expected.hexdigest()
        peak = peak_rss_mib(gw.proc.pid)
    print(f"gateway peak RSS (VmHWM): {before:.0f} MiB after the first request, {after_upload:.0f} MiB "
          f"after 1 GiB up, {peak:.0f} MiB after 1 GiB down; RSS now {rss_mib(gw.proc.pid):.0f} MiB")
    assert peak < MEMORY_BOUND_MIB, peak
    assert peak - before < 64, (before, peak)  # bounded buffers: never grows with the body


async def test_websockets_closed_with_1001_when_the_gateway_stops(gateway_process):
    tokens = new_tokens(["ann", "bo"])
    gw = gateway_process(users_config(tokens, "c.Gateway.shutdown_timeout = 60\n"))
    gw.start()
    await gw.wait_ready()
    await start_servers(gw, tokens)
    async with aiohttp.ClientSession() as s:
        sockets = []
        for name, token in tokens.items():
            # ?token= on the upgrade (what JupyterLab's kernel connections use) and the header form
            for how in ("query", "header"):
                if how == "query":
                    ws = await s.ws_connect(f"{gw.url}/user/{name}/ws?token={token}", autoclose=False,
                                            headers={"Sec-Fetch-Mode": "websocket"})  # as browsers send
                else:
                    ws = await s.ws_connect(f"{gw.url}/user/{name}/ws", autoclose=False,
                                            headers={"Authorization": f"token {token}"})
                await ws.send_str("hello")
                assert (await ws.receive(timeout=30)).data == "hello"
                sockets.append(ws)
        # a large message in flight the other way too: the close frame must not land inside it
        await sockets[0].send_bytes(BIG_MESSAGE)
        gw.signal(signal.SIGTERM)
        codes = []
        for ws in sockets:
            for _ in range(10):  # the echo of the large message may come first
                msg = await ws.receive(timeout=30)
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    break
                assert msg.type == aiohttp.WSMsgType.BINARY and msg.data == BIG_MESSAGE
            assert msg.type == aiohttp.WSMsgType.CLOSE, msg
            codes.append(msg.data)
            await ws.close()
        assert codes == [1001] * len(sockets)
    # the gateway did not sit out its 60 s shutdown_timeout waiting for the websockets
    assert await asyncio.to_thread(gw.proc.wait, 45) == 0
