"""The pages in a real headless Chromium (Debian's /usr/bin/chromium) driven by Playwright.

Each test starts a gateway in this process on a loopback port, so the browser and the gateway share
the event loop (Playwright's async API). Screenshots of every page go to test-artifacts/screenshots/.
Servers are real: the fast fake server (tests/backends/fake_server.py, held pending by a gate where a test
watches the progress bar), and jupyter-server with JupyterLab for the journey into a notebook.
Every wait is bounded (Playwright's default timeout, or an explicit one).
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

from gateway import keys
from gateway.identity.caches import SESSION_COOKIE
from tests.helpers.chromium import (LAB_TIMEOUT_MS, RECORD_PROGRESS, TIMEOUT_MS, fill_login_form, new_page,
                                    progress_seen, run_one_plus_one, session_cookie, shot)
from tests.helpers.pages import add_user, gated_environment, open_gate

PASSWORD = "correct horse battery"


async def log_in(page, hub, name: str, password: str, next_url: str | None = None) -> None:
    url = hub.url + "/hub/login" + (f"?next={next_url}" if next_url else "")
    await page.goto(url)
    await fill_login_form(page, name, password)
    await page.wait_for_load_state()


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
    hub = await page_hub()
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
    # the right one: on to the page asked for
    await log_in(page, hub, "alice", PASSWORD, next_url="%2Fhub%2Fhome")
    assert page.url == hub.url + "/hub/home"
    await page.locator('#servers tr[data-server=""][data-status="stopped"]').wait_for()
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


def on_this_hub(url: str, hub) -> bool:
    """The default landing after login: the spawn page, or the user's server once it has started
    (which of the two depends on how fast the server starts)."""
    return url.startswith((hub.url + "/hub/", hub.url + "/user/alice/"))


async def settle_on_server(page, hub) -> None:
    """Lets the landing's own navigation chain end at the started server before the next step.
    The spawn page goes on to the server by itself; a step begun (or a page closed) while that
    navigation commits races it, and Chromium can then leave page.close() waiting forever."""
    await page.wait_for_url(hub.url + "/user/alice/")


async def test_evil_next_lands_on_hub(page_hub, chromium):
    hub = await page_hub()
    await add_user(hub, "alice", PASSWORD)
    context, page = await new_page(chromium)
    await log_in(page, hub, "alice", PASSWORD, next_url="https://evil.example/")
    assert on_this_hub(page.url, hub), page.url
    await settle_on_server(page, hub)
    await page.goto(hub.url + "/hub/login?next=%2F%2Fevil.example%2F")  # logged in: straight to next, if safe
    assert on_this_hub(page.url, hub), page.url
    await settle_on_server(page, hub)
    await page.goto(hub.url + "/hub/login?next=http://" + hub.url.split("//")[1] + "//evil.example/")
    assert page.url == hub.url + "/evil.example/", page.url  # CVE-2026-33709: a path on this host
    await context.close()


async def test_login_csrf_from_another_site_refused(page_hub, chromium):
    """X13 in a browser: a page on another site auto-posts the login form with valid credentials."""
    hub = await page_hub()
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
        # the refusal page commits after its response arrives: let it, closing mid-navigation can hang Chromium
        await page.wait_for_url(hub.url + "/hub/login")
        assert await session_cookie(context) is None
        await context.close()
    finally:
        await runner.cleanup()


async def test_token_page_create_use_revoke(page_hub, chromium):
    # With the real tokens API on the branch this drives it; until then a stand-in to the same contract.
    hub = await page_hub()
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
    hub = await page_hub()
    manager = hub.app[keys.SERVERS]
    await add_user(hub, "root", PASSWORD, admin=True)
    bob = await add_user(hub, "bob", PASSWORD)
    await manager.wait((await manager.start(bob, ""))[0], 30)
    assert manager.status("bob", "") == "ready"
    context, page = await new_page(chromium)
    await log_in(page, hub, "root", PASSWORD, next_url="%2Fhub%2Fadmin")
    assert page.url == hub.url + "/hub/admin"
    await shot(page, "admin")
    await page.locator("#add-users-card summary").click()
    await page.get_by_label("User names").fill("newbie")
    await page.get_by_label("Password (optional").fill("newbies-password")
    await page.get_by_role("button", name="Add users").click()
    await page.locator("#admin-notice").wait_for()
    await page.locator('tr[data-user="newbie"]').wait_for()
    assert await page.locator('tr[data-user="newbie"]').count() == 1
    assert await hub.store.get_user("newbie") is not None
    await page.get_by_role("button", name="Stop server default of bob").click()
    await page.locator("#admin-notice", has_text="Server stopped").wait_for()
    assert manager.status("bob", "") is None
    await page.get_by_role("button", name="Start server default of bob").wait_for()
    await shot(page, "admin-after-actions")
    # the new user logs in with the password the admin gave, and is taken through a start to the server
    other, other_page = await new_page(chromium)
    await log_in(other_page, hub, "newbie", "newbies-password")
    await other_page.wait_for_url(hub.url + "/user/newbie/")
    assert manager.status("newbie", "") == "ready"
    await other.close()
    phone, phone_page = await new_page(chromium, phone=True)
    await log_in(phone_page, hub, "root", PASSWORD, next_url="%2Fhub%2Fadmin")
    await shot(phone_page, "admin-phone")
    await phone.close()
    await context.close()


async def test_home_spawn_progress_and_not_running(page_hub, chromium, tmp_path):
    """Home, the progress bar fed by the real progress stream (a start held at its gate), the server
    through the proxy, then the 424 page with its launch button once the server stopped."""
    hub = await page_hub(allow_named_servers=True, named_server_limit_per_user=2,
                         spawner_environment=gated_environment(tmp_path, "alice"))
    manager = hub.app[keys.SERVERS]
    await add_user(hub, "alice", PASSWORD)
    context, page = await new_page(chromium)
    progress_requests = []
    page.on("request", lambda r: progress_requests.append(r.url) if "/progress" in r.url else None)
    await log_in(page, hub, "alice", PASSWORD, next_url="%2Fhub%2Fhome")
    await shot(page, "home")
    await page.get_by_role("link", name="Start").click()
    await page.wait_for_url(hub.url + "/hub/spawn-pending/alice")
    bar = page.get_by_role("progressbar")
    await page.wait_for_function("document.getElementById('progress').getAttribute('aria-valuenow') === '50'",
                                 timeout=TIMEOUT_MS)
    await page.get_by_text("Spawning server...").first.wait_for()
    await shot(page, "spawn-pending")
    assert progress_requests and "?_xsrf=" in progress_requests[0]  # EventSource: cookie plus the hub XSRF token
    open_gate(tmp_path, "alice")
    await page.wait_for_url(hub.url + "/user/alice/")  # on to the server, through the proxy
    assert await bar.count() == 0
    response = await page.goto(hub.url + "/user/alice/echo/from-browser")
    assert response.status == 200 and (await response.json())["path"] == "/user/alice/echo/from-browser"
    # the server stopped: the proxy sends the browser to the not-running page (424) and it stays there
    await manager.wait(await manager.stop(await hub.store.get_user("alice"), ""), 30)
    response = await page.goto(hub.url + "/user/alice/echo/x")
    assert response.status == 424 and page.url == hub.url + "/hub/user/alice/echo/x"
    launch = page.get_by_role("link", name="Launch server")
    await launch.wait_for()
    await shot(page, "not-running")
    await launch.click()  # the gate is open now: a quick start, then back to where the browser was going
    await page.wait_for_url(hub.url + "/user/alice/echo/x")
    # a named server from the home page's form
    await page.goto(hub.url + "/hub/home")
    await page.get_by_label("Server name").fill("nb1")
    await page.get_by_role("button", name="Create and start").click()
    await page.wait_for_url(hub.url + "/hub/spawn-pending/alice/nb1")
    assert manager.status("alice", "nb1") == "spawn"
    response = await page.goto(hub.url + "/hub/nosuch")
    assert response.status == 404
    await shot(page, "error-404")
    phone, phone_page = await new_page(chromium, phone=True)
    await log_in(phone_page, hub, "alice", PASSWORD, next_url="%2Fhub%2Fhome")
    await shot(phone_page, "home-phone")
    await phone.close()
    await context.close()


async def test_start_from_home_into_jupyterlab_and_run_a_cell(page_hub, chromium):
    """The journey: home → Start → progress to 100% → JupyterLab through the proxy → a notebook → 1+1 = 2."""
    hub = await page_hub(spawner_cmd=(), spawner_default_url="/lab", spawner_start_timeout=90.0)
    await add_user(hub, "alice", PASSWORD)
    context, page = await new_page(chromium)
    await context.add_init_script(RECORD_PROGRESS)
    sockets, writes = [], []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.on("request", lambda r: writes.append(r.headers.get("x-xsrftoken"))
            if r.method in ("POST", "PUT", "PATCH", "DELETE") and "/user/alice/" in r.url else None)
    await log_in(page, hub, "alice", PASSWORD, next_url="%2Fhub%2Fhome")
    await page.get_by_role("link", name="Start").click()
    await page.wait_for_url(hub.url + "/user/alice/lab**", timeout=LAB_TIMEOUT_MS)
    seen = await progress_seen(page)
    assert seen and seen[-1] == 100 and seen == sorted(seen), seen
    await run_one_plus_one(page, hub.url + "/user/alice/lab", shot_prefix="")
    # what JupyterLab was served: the proxy's XSRF cookie on the server's path, and never the server's secret
    cookies = {(c["name"], c["path"]) for c in await context.cookies()}
    assert ("_xsrf", "/user/alice/") in cookies
    user = await hub.store.get_user("alice")
    server = await hub.store.get_server(user.id, "")
    secret = hub.app[keys.COOKIE_CIPHER].decrypt(server.state["secret"])
    assert secret not in await page.content()
    assert any("/user/alice/api/kernels/" in url and url.startswith("ws://") for url in sockets), sockets
    # JupyterLab's writes (new notebook, kernel session) carried the proxy's _xsrf cookie back as X-XSRFToken
    xsrf = next(c["value"] for c in await context.cookies() if c["name"] == "_xsrf" and c["path"] == "/user/alice/")
    assert writes and set(writes) == {xsrf}, writes
    await context.close()


async def test_pam_login_in_browser(page_hub, chromium, system_account):
    name, password = system_account
    hub = await page_hub(authenticator_class="pam", allow_all=True)
    context, page = await new_page(chromium)
    await log_in(page, hub, name, password, next_url="%2Fhub%2Fhome")
    assert page.url == hub.url + "/hub/home"
    assert await page.locator(".username").text_content() == name
    await shot(page, "pam-home")
    await context.close()
