"""Login, sessions, cookies, XSRF and rate limiting over real HTTP (security cases K, X, I of security-cases.md)."""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
import sys

import aiohttp
import pytest

from gateway.identity.caches import SESSION_COOKIE
from tests.helpers.pages import add_user, form_xsrf

PASSWORD = "correct horse battery"


def set_cookies(headers) -> dict[str, str]:
    """Set-Cookie headers by cookie name (raw header text)."""
    return {h.split("=", 1)[0]: h for h in headers.getall("Set-Cookie", [])}


async def test_login_sets_session_cookie_with_flags(page_hub, browsers):
    hub = await page_hub()
    await add_user(hub, "alice", PASSWORD)
    browser = browsers(hub)
    status, _, headers = await browser.login("alice", PASSWORD)
    assert status == 302 and headers["Location"] == "/hub/spawn"  # redirect_to_server: not running, so spawn
    cookies = set_cookies(headers)
    assert set(cookies) == {SESSION_COOKIE, "_xsrf"}
    session = cookies[SESSION_COOKIE]
    # K1, K2: the auth cookie is HttpOnly and SameSite=Lax, valid for the whole base_url
    assert "HttpOnly" in session and "SameSite=Lax" in session and "Path=/;" in session + ";"
    assert f"Max-Age={14 * 86400}" in session
    assert "Secure" not in session  # plain http on loopback
    xsrf = cookies["_xsrf"]
    assert "HttpOnly" not in xsrf and "Path=/hub/" in xsrf and "SameSite=Lax" in xsrf
    # the cookie holds an encrypted session id, not the id itself
    body = await (await browser.session.get(hub.url + "/hub/api/user")).json()
    assert body["name"] == "alice" and body["session_id"] not in session


async def test_secure_cookies_when_public_url_is_https(page_hub, browsers):
    hub = await page_hub(public_url="https://hub.example.org/")
    await add_user(hub, "alice", PASSWORD)
    browser = browsers(hub)
    _, text, headers = await browser.get("/hub/login")
    nonce_cookie = set_cookies(headers)["_xsrf"]
    assert "Secure" in nonce_cookie
    nonce = nonce_cookie.split(";")[0].split("=", 1)[1]
    # the client jar keeps Secure cookies off plain http, as a browser would: send the nonce by hand
    _, _, headers = await browser.post("/hub/login", headers={"Cookie": f"_xsrf={nonce}"},
                                       data={"username": "alice", "password": PASSWORD, "_xsrf": form_xsrf(text)})
    cookies = set_cookies(headers)
    assert "Secure" in cookies[SESSION_COOKIE] and "Secure" in cookies["_xsrf"]


async def test_base_url_scopes_cookies(page_hub, browsers):
    hub = await page_hub(base_url="/jh/")
    await add_user(hub, "alice", PASSWORD)
    browser = browsers(hub)
    status, text, _ = await browser.get("/jh/hub/login")
    assert status == 200
    status, _, headers = await browser.post("/jh/hub/login", data={
        "username": "alice", "password": PASSWORD, "_xsrf": form_xsrf(text)})
    assert status == 302 and headers["Location"] == "/jh/hub/spawn"
    cookies = set_cookies(headers)
    assert "Path=/jh/;" in cookies[SESSION_COOKIE] + ";" and "Path=/jh/hub/" in cookies["_xsrf"]


async def test_bad_password_is_403_without_session(page_hub, browsers):
    hub = await page_hub()
    await add_user(hub, "alice", PASSWORD)
    browser = browsers(hub)
    status, text, headers = await browser.login("alice", "wrong password")
    assert status == 403
    assert "Invalid username or password" in text
    assert SESSION_COOKIE not in set_cookies(headers) and browser.cookie(SESSION_COOKIE) is None
    # unknown user and an injected name: same answer, escaped, password never echoed (I2)
    status, text, _ = await browser.login('"><script>alert(1)</script>', "s3cret-never-shown")
    assert status == 403 and "<script>alert(1)" not in text and "s3cret-never-shown" not in text
    assert "&#34;&gt;&lt;script&gt;" in text or "&quot;&gt;&lt;script&gt;" in text


async def test_login_csrf_refused(page_hub, browsers):
    """X13: a login post with the right password but no, a forged or another browser's token is refused."""
    hub = await page_hub()
    await add_user(hub, "alice", PASSWORD)
    victim, attacker = browsers(hub), browsers(hub)
    _, attacker_page, _ = await attacker.get("/hub/login")
    await victim.get("/hub/login")  # the victim holds its own _xsrf nonce
    for token in (None, "forged-token", form_xsrf(attacker_page)):
        data = {"username": "alice", "password": PASSWORD}
        if token is not None:
            data["_xsrf"] = token
        status, text, headers = await victim.post("/hub/login", data=data)
        assert status == 403, token
        assert SESSION_COOKIE not in set_cookies(headers)
        assert "expired or was sent from another site" in text
    # a cross-site form post carries no cookies at all (SameSite): no nonce, refused
    fresh = browsers(hub)
    status, _, _ = await fresh.post("/hub/login", data={"username": "alice", "password": PASSWORD,
                                                       "_xsrf": form_xsrf(attacker_page)})
    assert status == 403 and fresh.cookie(SESSION_COOKIE) is None


async def test_logout_revokes_session_everywhere(page_hub, browsers):
    """K3, K4: after logout the same jar and a saved copy of the cookie are refused."""
    hub = await page_hub()
    await add_user(hub, "alice", PASSWORD)
    browser = browsers(hub)
    await browser.login("alice", PASSWORD)
    saved = browser.cookie(SESSION_COOKIE)
    assert saved
    copy = browsers(hub)
    copy.session.cookie_jar.update_cookies({SESSION_COOKIE: saved})
    assert (await copy.get("/hub/api/user"))[0] == 200
    status, _, headers = await browser.get("/hub/logout")
    assert status == 302 and headers["Location"] == "/hub/login"
    cleared = set_cookies(headers)
    assert 'gateway-login=""' in cleared[SESSION_COOKIE] and "Max-Age=0" in cleared[SESSION_COOKIE]
    assert (await browser.get("/hub/api/user"))[0] == 403  # K3
    status, text, _ = await copy.get("/hub/api/user")
    assert status == 403  # K4: replaying the saved cookie
    assert (await copy.get("/hub/home"))[0] == 302


async def test_logout_stops_servers_when_configured(page_hub, browsers):
    from gateway import keys

    hub = await page_hub(shutdown_on_logout=True)
    user = await add_user(hub, "alice", PASSWORD)
    manager = hub.app[keys.SERVERS]
    entry, _ = await manager.start(user, "")
    await manager.wait(entry, 30)
    assert manager.status("alice", "") == "ready"
    browser = browsers(hub)
    await browser.login("alice", PASSWORD, next_url="/hub/home")
    await browser.get("/hub/logout")
    assert manager.status("alice", "") is None
    assert (await hub.store.get_server(user.id, "")).started is None


async def test_cookie_api_calls_need_xsrf(page_hub, browsers):
    """X10 and the XSRF rule for cookie-authenticated API reads made by scripts (fetch mode cors)."""
    hub = await page_hub()
    await add_user(hub, "alice", PASSWORD)
    browser = browsers(hub)
    await browser.login("alice", PASSWORD)
    cors = {"Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-origin"}
    assert (await browser.get("/hub/api/user", headers=cors))[0] == 403
    cross = {"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Site": "cross-site"}
    assert (await browser.get("/hub/api/user", headers=cross))[0] == 403
    token = browser.cookie("_xsrf")
    assert (await browser.get("/hub/api/user", headers={**cors, "X-XSRFToken": token}))[0] == 200
    assert (await browser.get(f"/hub/api/user?_xsrf={token}", headers=cors))[0] == 200


async def test_cookie_token_requests_need_xsrf_and_json(page_hub, browsers):
    """X7-X9 on POST /hub/api/users/alice/tokens with a cookie session (the tokens API of the API branch)."""
    hub = await page_hub()
    user = await add_user(hub, "alice", PASSWORD)
    browser = browsers(hub)
    await browser.login("alice", PASSWORD)
    before = len(await hub.store.list_tokens("user", user.id))
    json_type = {"Content-Type": "application/json"}
    status, _, _ = await browser.post("/hub/api/users/alice/tokens", data="{}", headers=json_type)
    assert status == 403  # X7
    token = browser.cookie("_xsrf")
    status, _, _ = await browser.post(f"/hub/api/users/alice/tokens?_xsrf={token}", data="{}",
                                      headers={"Content-Type": "text/plain"})
    assert status == 403  # X9
    assert len(await hub.store.list_tokens("user", user.id)) == before
    status, _, _ = await browser.post(f"/hub/api/users/alice/tokens?_xsrf={token}", data="{}", headers=json_type)
    assert status == 201  # X8


async def test_failed_logins_are_throttled(page_hub, browsers):
    """5 failures for one name within 60 s → 429 with Retry-After, even with the right password; others unaffected."""
    hub = await page_hub()
    await add_user(hub, "alice", PASSWORD)
    await add_user(hub, "bob", PASSWORD)
    browser = browsers(hub)
    for _ in range(5):
        assert (await browser.login("alice", "wrong"))[0] == 403
    status, text, headers = await browser.login("Alice", PASSWORD)  # same user after normalisation
    assert status == 429
    assert "Too many failed login attempts" in text and 0 < int(headers["Retry-After"]) <= 60
    assert browser.cookie(SESSION_COOKIE) is None
    status, _, _ = await browsers(hub).login("bob", PASSWORD)
    assert status == 302


async def test_failed_logins_throttled_per_address(page_hub, browsers):
    hub = await page_hub()
    await add_user(hub, "zed", PASSWORD)
    browser = browsers(hub)
    for i in range(20):  # 20 different names from one address
        assert (await browser.login(f"guess{i}", "wrong"))[0] == 403
    status, _, headers = await browser.login("zed", PASSWORD)
    assert status == 429 and "Retry-After" in headers


async def test_huge_username_refused_quickly(page_hub, browsers):
    """I3: a 1 MB user name gets a small 4xx and the hub keeps answering."""
    hub = await page_hub()
    browser = browsers(hub)
    status, text, _ = await browser.login("x" * 1_000_000, "pw")
    assert 400 <= status < 500 and len(text) < 100_000
    assert (await browser.get("/hub/login"))[0] == 200


async def test_pages_redirect_anonymous_to_login(page_hub, browsers):
    """I7, and JupyterHub's next= on the login redirect."""
    hub = await page_hub()
    browser = browsers(hub)
    for page in ("admin", "token", "home", "spawn"):
        status, _, headers = await browser.get(f"/hub/{page}?x=1")
        assert status == 302 and headers["Location"] == f"/hub/login?next=%2Fhub%2F{page}%3Fx%3D1", page
    status, _, headers = await browser.get("/hub/")
    assert status == 302 and headers["Location"] == "/hub/login?next=%2Fhub%2F"
    status, _, headers = await browser.get("/hub")
    assert status == 301 and headers["Location"] == "/hub/"
    assert (await browser.post("/hub/admin/action", data={"action": "add"}))[0] == 403


async def test_pages_ignore_token_header(page_hub, browsers):
    """Pages are cookie-only (as JupyterHub): an API token does not open /hub/home."""
    hub = await page_hub()
    token = await hub.new_token("alice")
    status, _, headers = await browsers(hub).get("/hub/home", headers={"Authorization": f"token {token}"})
    assert status == 302 and headers["Location"].startswith("/hub/login")


async def test_admin_page_needs_admin_ui(page_hub, browsers):
    """I8: a plain user's session gets a 403 HTML page on /hub/admin."""
    hub = await page_hub()
    await add_user(hub, "alice", PASSWORD)
    browser = browsers(hub)
    await browser.login("alice", PASSWORD)
    status, text, headers = await browser.get("/hub/admin")
    assert status == 403 and headers["Content-Type"].startswith("text/html")
    assert "requires any of [admin-ui]" in text


async def test_error_pages_escape_and_forbid_framing(page_hub, browsers):
    """I4, I6: no raw script in error pages; CSP frame-ancestors on pages."""
    hub = await page_hub()
    browser = browsers(hub)
    status, text, headers = await browser.get("/hub/nosuch%3Cscript%3Ealert(1)%3C/script%3E")
    assert status == 404 and "<script>alert" not in text and "Not Found" in text
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    _, _, headers = await browser.get("/hub/login")
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert "script-src 'self'" in headers["Content-Security-Policy"]


async def test_host_header_never_reaches_location(page_hub, browsers):
    """H9: Host / X-Forwarded-Host are not used to build redirects."""
    hub = await page_hub()
    await add_user(hub, "alice", PASSWORD)
    browser = browsers(hub)
    evil = {"Host": "evil.example", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}
    for path in ("/hub/", "/hub/admin", "/hub/home", "/hub/login?next=/hub/token"):
        status, text, headers = await browser.get(path, headers=evil)
        assert "evil.example" not in headers.get("Location", "") and "evil.example" not in text, path
    await browser.login("alice", PASSWORD)
    status, _, headers = await browser.get("/hub/login?next=http://evil.example/x", headers=evil)
    assert status == 302 and headers["Location"] == "/x"  # own-host URL (per Host) reduced to a path


async def test_logged_in_login_page_follows_next(page_hub, browsers):
    hub = await page_hub()
    await add_user(hub, "alice", PASSWORD)
    browser = browsers(hub)
    status, _, headers = await browser.login("alice", PASSWORD, next_url="/user/alice/lab?x=1")
    assert status == 302 and headers["Location"] == "/user/alice/lab?x=1"
    status, _, headers = await browser.get("/hub/login?next=%2Fhub%2Ftoken")
    assert status == 302 and headers["Location"] == "/hub/token"
    status, _, headers = await browser.get("/hub/login")
    assert status == 302 and headers["Location"] == "/hub/spawn"


async def test_first_start_creates_admin_once(page_hub, browsers, caplog):
    caplog.set_level(logging.WARNING, logger="gateway.auth")
    hub = await page_hub(create_first_admin=True)
    lines = [r.getMessage() for r in caplog.records if "First start" in r.getMessage()]
    assert len(lines) == 1
    password = re.search(r"with password (\S+) ", lines[0]).group(1)
    user = await hub.store.get_user("admin")
    assert user is not None and user.admin
    status, _, _ = await browsers(hub).login("admin", password)
    assert status == 302
    # the database keeps only a hash
    assert password not in (await hub.store.get_password_hash("admin"))
    from gateway.authenticators.builtin import ensure_first_admin
    assert await ensure_first_admin(hub.store, hub.settings) is None  # someone has a password: nothing to do


async def test_first_admin_is_the_configured_admin(page_hub, caplog):
    caplog.set_level(logging.WARNING, logger="gateway.auth")
    hub = await page_hub(create_first_admin=True, admin_users=frozenset({"Root2", "carol"}))
    assert any("admin user 'carol'" in r.getMessage() for r in caplog.records)
    assert await hub.store.get_password_hash("carol") and await hub.store.get_user("admin") is None


def run_cli(proc, *args: str, input_text: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=proc.workdir, env=proc.env(),
                          input=input_text, capture_output=True, text=True, timeout=60)


async def test_set_password_cli(gateway_process):
    proc = gateway_process("c.Authenticator.admin_users = {'alice'}\nc.Gateway.create_first_admin = False\n")
    result = run_cli(proc, "set-password", "alice", "-f", str(proc.config_path), "--stdin",
                          input_text="a-new-password\n")
    assert result.returncode == 0, result.stderr
    assert "a-new-password" not in result.stdout + result.stderr
    proc.start()
    await proc.wait_ready()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.get(proc.url + "/hub/login") as r:
            xsrf = form_xsrf(await r.text())
        async with session.post(proc.url + "/hub/login", allow_redirects=False,
                                data={"username": "alice", "password": "a-new-password", "_xsrf": xsrf}) as r:
            assert r.status == 302
        async with session.get(proc.url + "/hub/api/user") as r:
            assert r.status == 200
        # a reset while the gateway runs ends the sessions at once
        result = run_cli(proc, "set-password", "alice", "-f", str(proc.config_path), "--stdin",
                              input_text="another-password\n")
        assert result.returncode == 0, result.stderr
        # the running gateway notices another process's write within its watch interval (1 s)
        for _ in range(100):
            async with session.get(proc.url + "/hub/api/user") as r:
                if r.status == 403:
                    break
            await asyncio.sleep(0.05)
        assert r.status == 403
    assert "a-new-password" not in proc.log() and "another-password" not in proc.log()
    short = run_cli(proc, "set-password", "alice", "-f", str(proc.config_path), "--stdin", input_text="short\n")
    assert short.returncode == 1 and "at least 8" in short.stderr
    missing = run_cli(proc, "set-password", "nobody", "-f", str(proc.config_path), "--stdin", input_text="long-enough\n")
    assert missing.returncode == 1 and "No such user: nobody" in missing.stderr
    created = run_cli(proc, "set-password", "dave", "--create", "-f", str(proc.config_path), "--stdin",
                           input_text="long-enough\n")
    assert created.returncode == 0, created.stderr


def test_throttle_window_slides():
    from gateway.authenticators.throttle import LoginThrottle

    now = [1000.0]
    throttle = LoginThrottle(per_user=3, per_address=5, window=60, clock=lambda: now[0])
    for _ in range(3):
        assert throttle.retry_after("alice", "10.0.0.1") == 0
        throttle.failure("alice", "10.0.0.1")
        now[0] += 10
    assert throttle.retry_after("alice", "10.0.0.2") == pytest.approx(30)  # first failure at 1000 leaves at 1060
    now[0] = 1060.5
    assert throttle.retry_after("alice", "10.0.0.2") == 0
    throttle.failure("bob", "10.0.0.1")  # address: failures at 1010, 1020, now, now
    assert throttle.retry_after("dave", "10.0.0.1") == 0
    throttle.failure("carol", "10.0.0.1")
    throttle.failure("erin", "10.0.0.1")
    assert throttle.retry_after("dave", "10.0.0.1") == pytest.approx(9.5)  # 5 failures from one address
    throttle.success("alice")
    assert throttle.retry_after("alice", None) == 0
    small = LoginThrottle(max_keys=4, clock=lambda: now[0])
    for i in range(100):
        small.failure(f"u{i}", f"a{i}")
    assert len(small._failures) <= 4


async def test_blocked_user_is_logged_out_at_start(make_settings, browsers):
    from tests.helpers.pages import start_page_hub

    hub = await start_page_hub(make_settings())
    try:
        await add_user(hub, "mallory", PASSWORD)
        browser = browsers(hub)
        await browser.login("mallory", PASSWORD)
        saved = browser.cookie(SESSION_COOKIE)
    finally:
        await hub.session.close()
        await hub.runner.cleanup()
    hub = await start_page_hub(make_settings(blocked_users=frozenset({"mallory"})))
    try:
        replay = browsers(hub)
        replay.session.cookie_jar.update_cookies({SESSION_COOKIE: saved})
        assert (await replay.get("/hub/api/user"))[0] == 403
        assert (await replay.login("mallory", PASSWORD))[0] == 403
    finally:
        await hub.session.close()
        await hub.runner.cleanup()
