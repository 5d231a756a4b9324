"""The gateway's proxy as a whole: identity, the ownership matrix, not-running answers, browser rules.

Real gateway, real fake-server processes spawned through the API, real sockets.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import aiohttp
import pytest

from gateway import keys
from tests.helpers.paths import FAKE_SERVER

FAKE = FAKE_SERVER


async def start(hub, user: str, server: str = "") -> None:
    admin = await hub.new_token("root-admin", admin=True)
    path = f"/users/{user}/servers/{server}" if server else f"/users/{user}/server"
    if await hub.store.get_user(user) is None:
        await hub.new_user(user)
    r = await hub.api("POST", path, token=admin)
    assert r.status == 201, r.text


async def get(hub, path: str, token: str | None = None, **kwargs) -> tuple[int, dict | str, dict]:
    headers = dict(kwargs.pop("headers", {}))
    if token:
        headers["Authorization"] = f"token {token}"
    async with aiohttp.ClientSession() as s:
        async with s.request(kwargs.pop("method", "GET"), hub.url + path, headers=headers, allow_redirects=False,
                             **kwargs) as r:
            text = await r.text()
            try:
                body = await r.json(content_type=None)
            except ValueError:
                body = text
            return r.status, body, r.headers


@pytest.fixture
async def phub(start_hub):
    return await start_hub(spawner_cmd=FAKE, allow_named_servers=True)


async def test_owner_reaches_own_server_with_secret_swapped_in(phub):
    token = await phub.new_token("alice")
    await start(phub, "alice")
    status, body, _ = await get(phub, "/user/alice/echo/x?a=1", token)
    assert status == 200
    headers = dict(body["headers"])
    assert headers["Authorization"] != f"token {token}"  # the backend sees only its own secret
    assert token not in str(body)
    assert body["path"] == "/user/alice/echo/x" and body["query_string"] == "a=1"
    assert headers["X-Forwarded-Proto"] == "http" and "X-Forwarded-For" in headers
    status, _, headers = await get(phub, "/user/alice", token)
    assert status == 302 and headers["Location"] == "/user/alice/"


async def test_ownership_matrix(start_hub, tmp_path):
    for admin_access in (False, True):
        hub = await start_hub(spawner_cmd=FAKE, allow_named_servers=True, admin_access=admin_access,
                              db_url=f"sqlite:///{tmp_path}/hub-{admin_access}.sqlite",
                              services=({"name": "adminsvc", "admin": True, "api_token": "adminsvc-token-01"},
                                        {"name": "plainsvc", "api_token": "plainsvc-token-01"}))
        await start(hub, "victim")
        await start(hub, "victim", "nb1")
        owner = await hub.new_token("victim")
        other = await hub.new_token("victimx")  # a name with the victim's as prefix
        other2 = await hub.new_token("victi")
        admin = await hub.new_token("boss", admin=True)
        only_nb1 = await hub.new_token("victim", scopes=["access:servers!server=victim/nb1"])
        only_default = await hub.new_token("victim", scopes=["access:servers!server=victim/"])
        cases = [
            (owner, "/user/victim/api/status", 200), (owner, "/user/victim/nb1/api/status", 200),
            (other, "/user/victim/api/status", 403), (other2, "/user/victim/api/status", 403),
            (admin, "/user/victim/api/status", 200 if admin_access else 403),
            ("adminsvc-token-01", "/user/victim/api/status", 200 if admin_access else 403),
            ("plainsvc-token-01", "/user/victim/api/status", 403),
            (only_nb1, "/user/victim/nb1/api/status", 200), (only_nb1, "/user/victim/api/status", 403),
            (only_default, "/user/victim/api/status", 200), (only_default, "/user/victim/nb1/api/status", 403),
            (None, "/user/victim/api/status", 403),
        ]
        for token, path, expected in cases:
            status, body, _ = await get(hub, path, token)
            assert status == expected, (admin_access, token, path, status, body)
        # another user learns nothing about stopped or missing servers: 404 either way
        assert (await get(hub, "/user/victim/nb2/api/status", other))[0] == 403  # nb2 is not a server: default route
        assert (await get(hub, "/user/nobody/api/status", other))[0] == 404


async def test_revoked_and_expired_tokens_refused_at_once(phub):
    token = await phub.new_token("alice")
    await start(phub, "alice")  # first: a slow spawn must not use up the short token's second
    short = await phub.new_token("alice", expires_at=time.time() + 4.0)  # room for two requests under load
    assert (await get(phub, "/user/alice/api/status", token))[0] == 200
    assert (await get(phub, "/user/alice/api/status", short))[0] == 200
    stored = await phub.store.find_token(token)
    r = await phub.api("DELETE", f"/users/alice/tokens/{stored.api_id}", token=token)
    assert r.status == 204, r.text
    assert (await get(phub, "/user/alice/api/status", token))[0] == 403
    await asyncio.sleep(max(0.0, (await phub.store.find_token(short)).expires_at - time.time()) + 0.05)
    assert (await get(phub, "/user/alice/api/status", short))[0] == 403


@pytest.mark.parametrize("path", [
    "/user/sxxxx/../sxxxxv/api/status", "/user/sxxxx/%2e%2e/sxxxxv/api/status", "/user/sxxxx/%2E%2E/sxxxxv/api/status",
    "/user/sxxxx%2f..%2fsxxxxv/api/status", "/user/sxxxx/..%2fsxxxxv/api/status", "//user/sxxxxv/api/status",
    "/user//sxxxxv/api/status", "/user/sxxxx/..\\sxxxxv/api/status", "/user/sxxxx/..;/sxxxxv/api/status",
    "/hub/../user/sxxxxv/api/status", "/user/sxxxx%00/../sxxxxv/api/status", "/user/sxxxxv%2fapi%2fstatus",
    "/user/./sxxxxv/api/status", "/user/sxxxx/nb1/../../sxxxxv/api/status", "/user/%73xxxxv/api/status",
    "/user/SXXXXV/api/status",
])
async def test_path_confusion_never_reaches_victim(phub, path):
    attacker = await phub.new_token("sxxxx")
    await start(phub, "sxxxx")
    await start(phub, "sxxxxv")
    reader, writer = await asyncio.open_connection("127.0.0.1", int(phub.url.rsplit(":", 1)[1]))
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: token {attacker}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    status = int(data.split(b" ", 2)[1])
    assert status >= 300, (path, data[:300])
    assert b'"user": "sxxxxv"' not in data


async def test_stopped_server_answers(phub):
    owner = await phub.new_token("bob")
    other = await phub.new_token("eve")
    status, body, _ = await get(phub, "/user/bob/api/contents", owner)
    assert status == 424
    assert body == {"status": 424, "message": "JupyterHub server no longer running at /user/bob/api/contents. "
                                              "Restart the server at /hub/spawn/bob"}
    status, _, headers = await get(phub, "/user/bob/lab", owner, headers={"Accept": "text/html"})
    assert status == 302 and headers["Location"] == "/hub/user/bob/lab"
    assert (await get(phub, "/user/bob/api/contents", other))[0] == 404
    status, _, headers = await get(phub, "/user/bob/lab", headers={"Accept": "text/html"})
    assert status == 302 and headers["Location"].startswith("/hub/login?next=%2Fuser%2Fbob%2Flab")
    status, body, _ = await get(phub, "/user/bob/api/contents")
    assert status == 403 and body == {"status": 403, "message": "Missing or invalid credentials."}


async def test_backend_killed_gets_503_then_424(phub):
    token = await phub.new_token("carl")
    await start(phub, "carl")
    user = await phub.store.get_user("carl")
    server = await phub.store.get_server(user.id, "")
    os.killpg(server.state["spawner"]["pid"], signal.SIGKILL)
    began = time.monotonic()
    status, _, _ = await get(phub, "/user/carl/api/status", token)
    assert status in (503, 424)
    assert time.monotonic() - began < 5  # a bound against hangs, not a performance figure
    for _ in range(100):
        status, _, _ = await get(phub, "/user/carl/api/status", token)
        if status == 424:
            break
        await asyncio.sleep(0.05)
    assert status == 424


async def test_websocket_with_query_token_and_subprotocol(phub):
    token = await phub.new_token("dina")
    await start(phub, "dina")
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(f"{phub.url}/user/dina/ws?token={token}", protocols=("p1", "p2"),
                                headers={"Sec-Fetch-Mode": "websocket"}) as ws:  # as browsers send
            assert ws.protocol == "p1"
            await ws.send_str("hello")
            assert (await ws.receive()).data == "hello"
            await ws.send_bytes(b"\x00\x01")
            assert (await ws.receive()).data == b"\x00\x01"
            await ws.send_str("close:4001")
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4001
        # ?token= is for upgrades only
        async with s.get(f"{phub.url}/user/dina/api/status?token={token}") as r:
            assert r.status == 403
        # and the backend never sees our token in the query
        async with s.get(f"{phub.url}/user/dina/echo/q?x=1", headers={"Authorization": f"token {token}"}) as r:
            assert (await r.json())["query_string"] == "x=1"


async def cookie_session(hub, name: str) -> tuple[dict[str, str], str]:
    """A login session made the way the login page makes one; returns (cookies, session id)."""
    user = await hub.store.get_user(name) or await hub.new_user(name)
    session_id = os.urandom(16).hex()
    await hub.store.create_session(session_id, user.id, time.time() + 3600)
    value = hub.app[keys.AUTHORIZER].session_cookie_value(session_id)
    return {"gateway-login": value}, session_id


async def test_cookie_traffic_needs_xsrf_and_same_origin(phub):
    cookies, session_id = await cookie_session(phub, "fay")
    await start(phub, "fay")
    xsrf = phub.app[keys.AUTHORIZER].xsrf_token(session_id, "/user/fay/")
    async with aiohttp.ClientSession(cookies=cookies) as s:
        async with s.get(f"{phub.url}/user/fay/api/status") as r:
            assert r.status == 200
            assert r.cookies["_xsrf"].value == xsrf and r.cookies["_xsrf"]["path"] == "/user/fay/"
        async with s.post(f"{phub.url}/user/fay/echo/w", json={}) as r:
            assert r.status == 403
        async with s.post(f"{phub.url}/user/fay/echo/w", json={}, headers={"X-XSRFToken": "forged"}) as r:
            assert r.status == 403
        async with s.post(f"{phub.url}/user/fay/echo/w", json={}, headers={"X-XSRFToken": xsrf}) as r:
            assert r.status == 200
            sent = dict((await r.json())["headers"])
            assert "gateway-login" not in sent.get("Cookie", "")
        async with s.post(f"{phub.url}/user/fay/echo/w", json={},
                          headers={"X-XSRFToken": xsrf, "Origin": "http://evil.example"}) as r:
            assert r.status == 403
        async with s.post(f"{phub.url}/user/fay/echo/w", json={},
                          headers={"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Site": "cross-site"}) as r:
            assert r.status == 403
        own = phub.url
        for origin, expected in ((own, 101), ("null", 403), ("http://evil.example", 403),
                                 (own + ".evil.example", 403), (own.rsplit(":", 1)[0] + ":1", 403), (None, 403)):
            headers = {"Origin": origin} if origin else {}
            try:
                async with s.ws_connect(f"{phub.url}/user/fay/ws", headers=headers) as ws:
                    await ws.send_str("x")
                    assert (await ws.receive()).data == "x"
                    got = 101
            except aiohttp.WSServerHandshakeError as e:
                got = e.status
            assert got == expected, origin
    # token-authenticated writes are exempt
    token = await phub.new_token("fay")
    status, _, _ = await get(phub, "/user/fay/echo/w", token, method="POST", json={})
    assert status == 200


async def test_proxy_table_lists_live_routes(phub):
    admin = await phub.new_token("root", admin=True)
    await start(phub, "gil")
    r = await phub.api("GET", "/proxy", token=admin)
    assert r.status == 200 and "/user/gil/" in r.body and r.body["/user/gil/"]["target"].startswith("http://127.0.0.1:")
    assert "secret" not in str(r.body)


async def test_revoked_token_id_reused_by_a_new_token_stays_revoked(phub):
    """sqlite hands a deleted row's id to the next row: the cache must compare rows, not ids."""
    admin = await phub.new_token("root", admin=True)
    carol = await phub.new_token("carol")
    assert (await phub.api("GET", "/user", token=carol)).body["name"] == "carol"  # cached now
    stored = await phub.store.find_token(carol)
    assert (await phub.api("DELETE", f"/users/carol/tokens/{stored.api_id}", token=carol)).status == 204
    r = await phub.api("POST", "/users/alice/tokens", token=admin, json_body={})
    if (await phub.store.get_user("alice")) is None:
        await phub.new_user("alice")
        r = await phub.api("POST", "/users/alice/tokens", token=admin, json_body={})
    assert r.status == 201
    assert (await phub.api("GET", "/user", token=carol)).status == 403


async def test_deleted_users_token_never_becomes_a_new_users(phub):
    admin = await phub.new_token("root", admin=True)
    assert (await phub.api("POST", "/users/mallory", token=admin)).status == 201
    mallory = await phub.new_token("mallory")
    assert (await phub.api("GET", "/user", token=mallory)).body["name"] == "mallory"
    assert (await phub.api("DELETE", "/users/mallory", token=admin)).status == 204
    assert (await phub.api("POST", "/users/victim", token=admin)).status == 201
    await phub.new_token("victim")  # may take mallory's old token id
    r = await phub.api("GET", "/user", token=mallory)
    assert r.status == 403, r.body
    assert (await get(phub, "/user/victim/api/status", mallory))[0] in (403, 404)


async def test_slash_redirect_never_carries_the_token(phub):
    token = await phub.new_token("hal")
    await start(phub, "hal")
    status, _, headers = await get(phub, f"/user/hal?token={token}&x=1")
    assert status == 302 and token not in headers["Location"] and headers["Location"] == "/user/hal/?x=1"
