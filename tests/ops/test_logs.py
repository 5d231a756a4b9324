"""Logs: access lines for every hub request, no secret ever written (security case T10), bounded fields."""

from __future__ import annotations

import asyncio
import logging
import secrets

import aiohttp

from gateway.ops.logs import ACCESS_LOGGER
from gateway.vocab.scrub import clip, loggable_url, scrub_query, scrub_text


def test_scrub_query_and_text():
    assert scrub_query("token=abc&x=1") == "token=[secret]&x=1"
    assert scrub_query("a=1&_xsrf=q&code=c&state=s&api_token=t&TOKEN=u") == \
        "a=1&_xsrf=[secret]&code=[secret]&state=[secret]&api_token=[secret]&TOKEN=[secret]"
    assert scrub_query("next=%2Fhub%2F&tok%65n=z") == "next=%2Fhub%2F&tok%65n=[secret]"  # encoded names too
    assert loggable_url("/user/a/lab?token=abc#x") == "/user/a/lab?token=[secret]"
    assert loggable_url("/hub/api/users") == "/hub/api/users"
    assert "abc123secret" not in scrub_text("Authorization: token abc123secret")
    assert "abc123secret" not in scrub_text("{'Cookie': 'gateway-login=abc123secret'}")
    assert "abc123secret" not in scrub_text("b'GET /x?token=abc123secret HTTP/1.1'")
    assert "abc123secret" not in scrub_text("headers: authorization=Bearer abc123secret")
    assert scrub_text("user=alice n=3 url=/x?token=abc123secret") == "user=alice n=3 url=/x?token=[secret]"
    assert scrub_text("200 GET /hub/api/user (alice@127.0.0.1) 1.2ms") == "200 GET /hub/api/user (alice@127.0.0.1) 1.2ms"


def test_clip_bounds_and_escapes():
    assert clip("a" * 1000).startswith("a" * 300) and clip("a" * 1000).endswith("...[700 more]")
    assert clip("x\ny\x1b[31m\u00e9") == "x\\ny\\x1b[31m\\xe9"
    assert clip("/plain/path") == "/plain/path"


async def test_access_line_per_hub_request(hub, caplog):
    caplog.set_level(logging.DEBUG, logger=ACCESS_LOGGER)
    token = await hub.new_token("alice")
    assert (await hub.api("GET", "/user", token=token)).status == 200
    assert (await hub.api("GET", "/nosuch")).status == 404
    async with hub.session.get(hub.url + "/hub/health") as r:
        assert r.status == 200
    async with hub.session.get(hub.url + "/user/alice/x?token=" + token) as r:
        await r.read()
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == ACCESS_LOGGER]
    assert lines[0][0] == logging.INFO and lines[0][1].startswith("200 GET /hub/api/user (alice@127.0.0.1) ")
    assert lines[0][1].endswith("ms") or " ua=" in lines[0][1]
    assert lines[1][0] == logging.WARNING and lines[1][1].startswith("404 GET /hub/api/nosuch (-@127.0.0.1) ")
    assert lines[2][0] == logging.DEBUG and lines[2][1].startswith("200 GET /hub/health ")
    # ?token= is not a credential on plain HTTP: a browser-looking request is sent to log in (302, DEBUG)
    assert lines[3][0] == logging.DEBUG and lines[3][1].startswith("302 GET /user/alice/x?token=[secret]")
    assert all(token not in message for _, message in lines)


async def test_attacker_sized_input_is_cut(hub, caplog):
    caplog.set_level(logging.DEBUG, logger=ACCESS_LOGGER)
    long_path = "/hub/api/" + "p" * 5000
    async with hub.session.get(hub.url + long_path, headers={"User-Agent": "U" * 5000}) as r:
        assert r.status == 404
    for target in (b"/hub/api/%0d%0aFAKE", b"/hub/api/\xc3\xa9t\xc3\xa9", b"/hub/api/\x7f\x1b"):
        reader, writer = await asyncio.open_connection("127.0.0.1", int(hub.url.rsplit(":", 1)[1]))
        writer.write(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await writer.drain()
        await reader.read()
        writer.close()
    messages = [r.getMessage() for r in caplog.records if r.name == ACCESS_LOGGER]
    assert len(messages[0]) < 1000 and "...[" in messages[0] and "more]" in messages[0]
    assert "U" * 301 not in messages[0]
    for message in messages:
        assert message.isascii() and message.isprintable()
    assert any("%0d%0aFAKE" in m for m in messages)  # kept encoded: no forged line


async def test_no_secret_in_log(gateway_process):
    """T10: tokens in headers, in ?token= (hub, proxy, missing user, websocket), cookies, XSRF and OAuth
    values, a failed login's password and malformed requests: none of them reaches the log, even at DEBUG."""
    gw = gateway_process("c.Authenticator.admin_users = {'alice'}\nc.JupyterHub.allow_named_servers = True\n",
                         extra_args=["--log-level=DEBUG"])
    gw.start()
    await gw.wait_ready()
    result = gw.run_cli("token", "alice", "-f", str(gw.config_path))
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    password = "pw-" + secrets.token_hex(12)
    cookie = "ck" + secrets.token_hex(16)
    xsrf, code, state = ("x" + secrets.token_hex(8), "c" + secrets.token_hex(8), "s" + secrets.token_hex(8))
    leaks = [token, password, cookie, xsrf, code, state]
    async with aiohttp.ClientSession() as s:
        async def call(method: str, path: str, **kwargs) -> int:
            async with s.request(method, gw.url + path, allow_redirects=False, **kwargs) as r:
                await r.read()
                return r.status

        assert await call("GET", "/hub/api/user", headers={"Authorization": f"token {token}"}) == 200
        await call("GET", "/hub/api/user", headers={"Authorization": f"Bearer {token}",
                                                    "Referer": f"http://x/hub/?token={token}"})
        await call("GET", f"/hub/api/user?token={token}")
        await call("GET", f"/hub/api/users/alice/server?token={token}&_xsrf={xsrf}")
        await call("GET", f"/user/alice/api/status?token={token}")
        await call("GET", f"/user/nobody/lab?token={token}")
        await call("GET", f"/user/alice/api/kernels/k1/channels?token={token}",
                   headers={"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
        await call("GET", f"/hub/oauth_callback?code={code}&state={state}")
        await call("POST", "/hub/login?next=%2Fhub%2F", data={"username": "alice", "password": password,
                                                             "_xsrf": xsrf})
        await call("POST", "/hub/api/users/alice/tokens", json={"password": password},
                   headers={"Cookie": f"gateway-login={cookie}; _xsrf={xsrf}", "X-XSRFToken": xsrf})
        await call("GET", "/hub/api/user", headers={"Authorization": f"token {token}x"})  # a bad token
    # malformed requests: aiohttp's parser errors quote the request line
    for raw in (f"FOO /hub/api/user?token={token} HTTP/1.1\r\nHost: x\r\n\r\n",
                f"GET /hub/api/user?token={token} HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
                f"GET /hub/api/user HTTP/1.1\r\nHost: x\r\nAuthorization: token {token}\r\nX-Big: {'a' * 20000}\r\n\r\n",
                f"GET /hub/api/user?token={token} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"):
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(raw.encode())
        await writer.drain()
        await asyncio.wait_for(reader.read(), 10)
        writer.close()
    gw.stop()
    log = gw.log()
    for secret in leaks:
        assert secret not in log, f"secret {secret[:6]}... in the log"
    assert token[:16] not in log
    assert "GET /hub/api/user?token=[secret] " in log
    assert "200 GET /hub/api/user (alice@127.0.0.1)" in log
    assert "referer=http://x/hub/?token=[secret]" in log  # DEBUG shows more, still scrubbed


def test_credentials_in_paths_are_scrubbed():
    from gateway.vocab.scrub import loggable_url

    line = loggable_url("/hub/api/authorizations/token/0123456789abcdef0123?x=1")
    assert "0123456789abcdef" not in line and line.startswith("/hub/api/authorizations/token/[secret]")
    assert "c00kie" not in loggable_url("/hub/api/authorizations/cookie/name/c00kie")
