"""The pages in a real headless Chromium (Debian's /usr/bin/chromium) driven by Playwright.

Each test starts a gateway in this process on a loopback port, so the browser and the gateway share
the event loop (Playwright's async API). Screenshots of every page go to test-artifacts/screenshots/.
The server manager is ``StandInServers`` where a test needs servers; the spawn → JupyterLab journey
is left for when the real ServerManager and progress API are on the same branch.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from gateway.auth import SESSION_COOKIE
from tests.pagetools import (StandInServers, add_stand_in_tokens_api, add_user, page_hub,  # noqa: F401 (fixtures)
                             system_account)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
PASSWORD = "correct horse battery"
TIMEOUT_MS = 15_000


@pytest.fixture
async def chromium():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install -y chromium)")
    from playwright.async_api import async_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def new_page(chromium, *, phone: bool = False):
    viewport = {"width": 375, "height": 740} if phone else {"width": 1200, "height": 820}
    context = await chromium.new_context(viewport=viewport, reduced_motion="reduce")
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))  # confirm() on revoke/delete
    return context, page


async def shot(page, name: str) -> None:
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


async def log_in(page, hub, name: str, password: str, next_url: str | None = None) -> None:
    url = hub.url + "/hub/login" + (f"?next={next_url}" if next_url else "")
    await page.goto(url)
    await page.get_by_label("Username").fill(name)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_load_state()


async def session_cookie(context) -> str | None:
    for cookie in await context.cookies():
        if cookie["name"] == SESSION_COOKIE:
            return cookie["value"]
    return None


async def api_status(hub, path: str, *, token: str | None = None, cookie: str | None = None) -> tuple[int, dict]:
    headers = {}
    if token:
        headers["Authorization"] = f"token {token}"
    if cookie:
        headers["Cookie"] = f"{SESSION_COOKIE}={cookie}"
    async with aiohttp.ClientSession() as session:
        async with session.get(hub.url + path, headers=headers) as r:
            return r.status, await r.json(content_type=None)


async def test_login_bad_password_logout_and_replay(page_hub, chromium):
    hub = await page_hub(servers=None)
    await add_user(hub, "alice", PASSWORD)
    context, page = await new_page(chromium)
    await page.goto(hub.url + "/hub/")
    assert page.url == hub.url + "/hub/login?next=%2Fhub%2F"
    await shot(page, "login")
    # a bad password: 403 page, the form again, no session cookie
    response_status = []
    page.on("response", lambda r: response_status.append(r.status) if r.request.method == "POST" else None)
    await log_in(page, hub, "alice", "wrong password")
    assert response_status[-1] == 403
    await page.get_by_text("Invalid username or password").wait_for()
    assert await session_cookie(context) is None
    await shot(page, "login-failed")
    # the right one: home (no server manager here: the clear "not available" state)
    await log_in(page, hub, "alice", PASSWORD)
    assert page.url == hub.url + "/hub/home"
    await page.locator("#servers-unavailable").wait_for()
    await shot(page, "home-no-servers")
    saved = await session_cookie(context)
    assert saved and (await api_status(hub, "/hub/api/user", cookie=saved))[0] == 200
    # log out: back to the login page; the saved cookie is dead everywhere (K3, K4)
    await page.get_by_role("link", name="Log out").click()
    await page.wait_for_url(hub.url + "/hub/login")
    assert await session_cookie(context) is None
    assert (await api_status(hub, "/hub/api/user", cookie=saved))[0] == 403
    await page.goto(hub.url + "/hub/home")
    assert page.url.startswith(hub.url + "/hub/login?next=")
    await context.close()


async def test_evil_next_lands_on_hub(page_hub, chromium):
    hub = await page_hub(servers=None)
    await add_user(hub, "alice", PASSWORD)
    context, page = await new_page(chromium)
    await log_in(page, hub, "alice", PASSWORD, next_url="https://evil.example/")
    assert page.url.startswith(hub.url + "/hub/"), page.url
    await page.goto(hub.url + "/hub/login?next=%2F%2Fevil.example%2F")  # logged in: straight to next, if safe
    assert page.url.startswith(hub.url + "/hub/"), page.url
    await page.goto(hub.url + "/hub/login?next=http://" + hub.url.split("//")[1] + "//evil.example/")
    assert page.url == hub.url + "/evil.example/", page.url  # CVE-2026-33709: a path on this host
    await context.close()


async def test_login_csrf_from_another_site_refused(page_hub, chromium):
    """X13 in a browser: a page on another site auto-posts the login form with valid credentials."""
    hub = await page_hub(servers=None)
    await add_user(hub, "alice", PASSWORD)
    evil_app = web.Application()
    form = (f'<form id="f" method="post" action="{hub.url}/hub/login">'
            f'<input name="username" value="alice"><input name="password" value="{PASSWORD}">'
            '<input name="_xsrf" value="guess"></form><script>document.getElementById("f").submit()</script>')

    async def evil_page(request: web.Request) -> web.Response:
        return web.Response(text=form, content_type="text/html")

    evil_app.router.add_get("/", evil_page)
    runner = web.AppRunner(evil_app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    evil_url = f"http://localhost:{runner.addresses[0][1]}/"  # another site than 127.0.0.1
    try:
        context, page = await new_page(chromium)
        await page.goto(hub.url + "/hub/login")  # the victim has visited the hub: holds a nonce cookie
        async with page.expect_response(lambda r: r.url.startswith(hub.url + "/hub/login")
                                        and r.request.method == "POST") as posted:
            await page.goto(evil_url)
        assert (await posted.value).status == 403
        assert await session_cookie(context) is None
        await context.close()
    finally:
        await runner.cleanup()


async def test_token_page_create_use_revoke(page_hub, chromium):
    # With the real tokens API on the branch this drives it; until then a stand-in to the same contract.
    hub = await page_hub(servers=None, configure=add_stand_in_tokens_api)
    await add_user(hub, "alice", PASSWORD)
    context, page = await new_page(chromium)
    await log_in(page, hub, "alice", PASSWORD, next_url="%2Fhub%2Ftoken")
    assert page.url == hub.url + "/hub/token"
    await shot(page, "token")
    await page.get_by_label("Note").fill("browser test")
    await page.get_by_label("Expires in").select_option(label="1 day")
    await page.get_by_role("button", name="Request new API token").click()
    token_box = page.locator("#token-value")
    await token_box.wait_for()
    token = (await token_box.text_content()).strip()
    assert len(token) >= 32
    await shot(page, "token-created")
    status, body = await api_status(hub, "/hub/api/user", token=token)
    assert status == 200 and body["name"] == "alice"
    row = page.locator("#token-table tbody tr", has_text="browser test")
    await row.get_by_role("button", name="Revoke").click()
    await row.wait_for(state="detached")
    assert (await api_status(hub, "/hub/api/user", token=token))[0] == 403
    await page.reload()
    assert await page.locator("#token-table tbody tr", has_text="browser test").count() == 0
    await context.close()


async def test_admin_adds_user_and_stops_a_server(page_hub, chromium):
    servers = StandInServers(instant=True)
    hub = await page_hub(servers=servers)
    await add_user(hub, "root", PASSWORD, admin=True)
    bob = await add_user(hub, "bob", PASSWORD)
    await servers.start(bob, "", None)
    context, page = await new_page(chromium)
    await log_in(page, hub, "root", PASSWORD, next_url="%2Fhub%2Fadmin")
    assert page.url == hub.url + "/hub/admin"
    await shot(page, "admin")
    await page.locator("#add-users-card summary").click()
    await page.get_by_label("User names").fill("newbie")
    await page.get_by_label("Password (optional").fill("newbies-password")
    await page.get_by_role("button", name="Add users").click()
    await page.locator("#admin-notice").wait_for()
    assert await page.locator('tr[data-user="newbie"]').count() == 1
    assert await hub.store.get_user("newbie") is not None
    await page.get_by_role("button", name="Stop server default of bob").click()
    await page.locator("#admin-notice", has_text="Server stopping").wait_for()
    assert servers.status("bob", "") is None
    await shot(page, "admin-after-actions")
    # the new user can log in with the password the admin gave
    other, other_page = await new_page(chromium)
    await log_in(other_page, hub, "newbie", "newbies-password")
    assert other_page.url == hub.url + "/hub/spawn" or other_page.url.startswith(hub.url + "/user/newbie/")
    await other.close()
    phone, phone_page = await new_page(chromium, phone=True)
    await log_in(phone_page, hub, "root", PASSWORD, next_url="%2Fhub%2Fadmin")
    await shot(phone_page, "admin-phone")
    await phone.close()
    await context.close()


async def test_home_spawn_progress_and_not_running(page_hub, chromium):
    """Home with servers, the progress bar fed by a stand-in event stream, and the 424 page."""
    servers = StandInServers()
    release = asyncio.Event()
    seen_xsrf = []

    async def progress(request: web.Request) -> web.StreamResponse:
        # The progress stream's contract (JupyterHub 6.1.1): data-only events, keepalive first.
        seen_xsrf.append(request.query.get("_xsrf"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        await response.write(b"\n\n")
        for event in ({"progress": 0, "message": "Server requested"},
                      {"progress": 50, "message": "Spawning server..."}):
            await response.write(f"data: {json.dumps(event)}\n\n".encode())
        await asyncio.wait_for(release.wait(), 30)
        servers.states[("alice", "")] = "ready"
        ready = {"progress": 100, "ready": True, "message": "Server ready at /user/alice/", "url": "/user/alice/"}
        await response.write(f"data: {json.dumps(ready)}\n\n".encode())
        return response

    real_api = []

    def add_stand_in_stream(app: web.Application) -> None:
        real_api.extend(r for r in app.router.resources() if r.canonical.endswith("/server/progress"))
        if not real_api:
            app.router.add_get("/hub/api/users/alice/server/progress", progress)

    hub = await page_hub(servers=servers, allow_named_servers=True, named_server_limit_per_user=2,
                         configure=add_stand_in_stream)
    if real_api:
        pytest.skip("the real progress API is on this branch: the spawn end-to-end test covers the bar")
    await add_user(hub, "alice", PASSWORD)
    context, page = await new_page(chromium)
    await log_in(page, hub, "alice", PASSWORD, next_url="%2Fhub%2Fhome")
    await shot(page, "home")
    await page.get_by_role("link", name="Start").click()
    await page.wait_for_url(hub.url + "/hub/spawn-pending/alice")
    bar = page.get_by_role("progressbar")
    await page.wait_for_function("document.getElementById('progress').getAttribute('aria-valuenow') === '50'")
    await shot(page, "spawn-pending")
    assert seen_xsrf and seen_xsrf[0]
    release.set()
    await page.wait_for_url(hub.url + "/user/alice/")  # on to the server (not served in this test)
    assert await bar.count() == 0
    # the server "stopped": the not-running page with its launch button (424)
    servers.states.pop(("alice", ""))
    response = await page.goto(hub.url + "/hub/user/alice/lab")
    assert response.status == 424
    await page.get_by_role("link", name="Launch server").wait_for()
    await shot(page, "not-running")
    # a named server from the home page's form
    await page.goto(hub.url + "/hub/home")
    await page.get_by_label("Server name").fill("nb1")
    await page.get_by_role("button", name="Create and start").click()
    await page.wait_for_url(hub.url + "/hub/spawn-pending/alice/nb1")
    assert ("alice", "nb1", None) in servers.started
    response = await page.goto(hub.url + "/hub/nosuch")
    assert response.status == 404
    await shot(page, "error-404")
    phone, phone_page = await new_page(chromium, phone=True)
    await log_in(phone_page, hub, "alice", PASSWORD, next_url="%2Fhub%2Fhome")
    await shot(phone_page, "home-phone")
    await phone.close()
    await context.close()


async def test_pam_login_in_browser(page_hub, chromium, system_account):
    name, password = system_account
    hub = await page_hub(servers=None, authenticator_class="pam", allow_all=True)
    context, page = await new_page(chromium)
    await log_in(page, hub, name, password)
    assert page.url == hub.url + "/hub/home"
    assert await page.locator(".username").text_content() == name
    await shot(page, "pam-home")
    await context.close()
