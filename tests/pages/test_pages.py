"""Pages over real HTTP with the real server manager: home, spawn, spawn-pending and its progress
stream, not-running (424), token list, admin actions.

Servers are real fake-server processes (tests/backends/fake_server.py); a *gate* (see tests/helpers/pages.py)
holds a start pending while a test looks at the pending state. The journey into JupyterLab is the
browser suite's.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

import aiohttp
from aiohttp import web

from gateway import keys
from tests.helpers.pages import add_user, form_xsrf, gated_environment, open_gate, wait_for_status

PASSWORD = "correct horse battery"
CORS = {"Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-origin"}  # what EventSource and fetch() send


async def logged_in(page_hub, browsers, name="alice", admin=False, **settings):
    hub = await page_hub(**settings)
    await add_user(hub, name, PASSWORD, admin=admin)
    browser = browsers(hub)
    status, _, _ = await browser.login(name, PASSWORD, next_url="/hub/home")
    assert status == 302
    return hub, browser


async def read_events(browser, path: str, *, until_first: bool = False, headers=None) -> list[dict]:
    """Data events of a progress stream (to its end, or only the first one)."""
    events = []
    async with browser.session.get(browser.base + path, headers=headers or CORS,
                                   timeout=aiohttp.ClientTimeout(total=60)) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "text/event-stream", await r.text()
        async for line in r.content:
            if line.startswith(b"data: "):
                events.append(json.loads(line[6:]))
                if until_first:
                    break
    return events


async def test_home_lists_the_default_server(page_hub, browsers):
    _, browser = await logged_in(page_hub, browsers)
    status, text, headers = await browser.get("/hub/home")
    assert status == 200 and headers["Cache-Control"] == "no-store"
    assert 'data-server="" data-status="stopped"' in text and 'href="/hub/spawn/alice"' in text
    assert 'id="new-server"' not in text  # named servers are off by default


async def test_spawn_flow(page_hub, browsers, tmp_path):
    hub, browser = await logged_in(page_hub, browsers, allow_named_servers=True,
                                   spawner_environment=gated_environment(tmp_path, "alice"))
    manager = hub.app[keys.SERVERS]
    status, text, _ = await browser.get("/hub/home")
    assert status == 200 and 'href="/hub/spawn/alice"' in text and 'id="new-server"' in text
    status, _, headers = await browser.get("/hub/")  # redirect_to_server: not running → /hub/spawn
    assert headers["Location"] == "/hub/spawn"
    status, _, headers = await browser.get("/hub/spawn?next=%2Fuser%2Falice%2Fecho%2Flab&opt-image=big")
    assert status == 302 and headers["Location"] == "/hub/spawn-pending/alice?next=%2Fuser%2Falice%2Fecho%2Flab"
    alice = await hub.store.get_user("alice")
    assert (await hub.store.get_server(alice.id, "")).user_options == {"image": "big"}
    assert manager.status("alice", "") == "spawn"  # held at its gate
    status, text, _ = await browser.get(headers["Location"])
    assert status == 200
    assert 'data-progress-url="/hub/api/users/alice/server/progress"' in text
    assert 'data-next="/user/alice/echo/lab"' in text and 'role="progressbar"' in text
    status, text, _ = await browser.get("/hub/home")
    assert 'data-status="spawn"' in text and "Show progress" in text
    # the progress stream, as the page's EventSource reads it: cookie plus the hub XSRF token as ?_xsrf=
    progress = "/hub/api/users/alice/server/progress"
    assert (await browser.get(progress, headers=CORS))[0] == 403
    xsrf = browser.cookie("_xsrf")
    first = await read_events(browser, f"{progress}?_xsrf={xsrf}", until_first=True)
    assert first == [{"progress": 0, "message": "Server requested"}]
    open_gate(tmp_path, "alice")
    events = await read_events(browser, f"{progress}?_xsrf={xsrf}")
    assert events[0]["progress"] == 0 and events[-1]["ready"] is True and events[-1]["progress"] == 100
    assert events[-1]["url"] == "/user/alice/"
    await wait_for_status(hub, "alice", "", "ready")
    status, _, headers = await browser.get("/hub/spawn-pending/alice?next=%2Fuser%2Falice%2Fecho%2Flab")
    assert status == 302 and headers["Location"] == "/user/alice/echo/lab"
    status, text, _ = await browser.get(headers["Location"])  # through the proxy with the login cookie
    assert status == 200 and json.loads(text)["path"] == "/user/alice/echo/lab"
    status, _, headers = await browser.get("/hub/spawn?next=https://evil.example/")
    assert status == 302 and headers["Location"] == "/user/alice/"  # evil next dropped, ready: to the server
    status, _, headers = await browser.get("/hub/")
    assert headers["Location"] == "/user/alice/"
    status, text, _ = await browser.get("/hub/home")
    assert 'href="/user/alice/"' in text and "js-stop" in text
    # a named server
    status, _, headers = await browser.get("/hub/spawn/alice/nb1")
    assert status == 302 and headers["Location"] == "/hub/spawn-pending/alice/nb1"
    status, text, _ = await browser.get("/hub/spawn-pending/alice/nb1")
    assert 'data-progress-url="/hub/api/users/alice/servers/nb1/progress"' in text
    assert (await browser.get("/hub/spawn/alice/Bad_Name"))[0] == 400
    open_gate(tmp_path, "alice", "nb1")
    await wait_for_status(hub, "alice", "nb1", "ready")
    status, _, headers = await browser.get("/hub/spawn-pending/alice/nb1")
    assert status == 302 and headers["Location"] == "/user/alice/nb1/"


async def test_spawn_needs_scope_and_xsrf(page_hub, browsers):
    hub, browser = await logged_in(page_hub, browsers)
    await hub.new_user("bob")
    status, _, _ = await browser.get("/hub/spawn/bob")
    assert status == 404  # alice holds servers only for herself
    assert (await browser.get("/hub/spawn/nosuch"))[0] == 404
    # X12: a form post without the XSRF token spawns nothing, whatever the fetch metadata says
    for headers in ({"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Site": "cross-site"},
                    {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Site": "cross-site"}, {}):
        status, _, _ = await browser.post("/hub/spawn", data={"x": "1"}, headers=headers)
        assert status == 403
    alice = await hub.store.get_user("alice")
    assert hub.app[keys.SERVERS].status("alice", "") is None and await hub.store.get_server(alice.id, "") is None
    assert hub.app[keys.SERVERS].status("bob", "") is None
    token = browser.cookie("_xsrf")
    status, _, headers = await browser.post("/hub/spawn", data={"_xsrf": token, "size": "m"})
    assert status == 302 and hub.app[keys.SERVERS].status("alice", "") in ("spawn", "ready")
    assert (await hub.store.get_server(alice.id, "")).user_options == {"size": "m"}


async def test_admin_spawns_for_others(page_hub, browsers):
    hub, browser = await logged_in(page_hub, browsers, name="root", admin=True)
    await hub.new_user("bob")
    status, _, headers = await browser.get("/hub/spawn/bob")
    assert status == 302 and headers["Location"] == "/hub/spawn-pending/bob"
    await wait_for_status(hub, "bob", "", "ready")
    status, _, headers = await browser.get("/hub/spawn/bob")
    assert status == 302 and headers["Location"] == "/user/bob/"


async def test_not_running_page(page_hub, browsers, tmp_path):
    environment = {**gated_environment(tmp_path, "alice"),
                   "FAKE_SERVER_FAIL": lambda spawner: "1" if spawner.user.name == "carol" else ""}
    hub, browser = await logged_in(page_hub, browsers, spawner_environment=environment)
    manager = hub.app[keys.SERVERS]
    status, text, headers = await browser.get("/hub/user/alice/lab/tree?x=1")
    assert status == 424 and headers["Content-Type"].startswith("text/html")
    launch = "/hub/spawn/alice?next=" + quote("/user/alice/lab/tree?x=1", safe="")
    assert f'href="{launch}"' in text.replace("&amp;", "&") and 'id="last-failure"' not in text
    status, text, headers = await browser.get("/hub/user/alice/api/contents")
    assert status == 424 and headers["Content-Type"].startswith("application/json")
    assert json.loads(text) == {"status": 424, "message": "JupyterHub server no longer running at "
                                "/user/alice/api/contents. Restart the server at /hub/spawn/alice"}
    status, _, headers = await browser.get("/hub/user/alice/files/x", headers={"Accept": "application/json"})
    assert status == 424 and headers["Content-Type"].startswith("application/json")
    status, _, _ = await browser.get("/hub/user/alice/lab", headers={"Accept": "text/html,application/json;q=0.9"})
    assert status == 424
    # the proxy sends a browser of a stopped server here, and it stays here (no loop back to /user/...)
    status, _, headers = await browser.get("/user/alice/lab?x=1")
    assert status == 302 and headers["Location"] == "/hub/user/alice/lab?x=1"
    assert (await browser.get(headers["Location"]))[0] == 424
    # someone else's server: existence hidden
    await hub.new_user("bob")
    status, text, _ = await browser.get("/hub/user/bob/lab")
    assert status == 404 and "No access to resources or resources not found" in text
    assert (await browser.get("/hub/user/nosuch/lab"))[0] == 404
    # starting: on to the progress page
    alice = await hub.store.get_user("alice")
    await manager.start(alice, "")
    status, _, headers = await browser.get("/hub/user/alice/lab")
    assert status == 303 and headers["Location"] == "/hub/spawn-pending/alice?next=%2Fuser%2Falice%2Flab"
    # ready and routed: back to the server (hop counted)
    open_gate(tmp_path, "alice")
    await wait_for_status(hub, "alice", "", "ready")
    status, _, headers = await browser.get("/hub/user/alice/lab?x=1")
    assert status == 302 and headers["Location"] == "/user/alice/lab?x=1&redirects=1"
    assert (await browser.get("/hub/user/alice/lab?redirects=4"))[0] == 500
    # ready as the manager says, but the proxy has no route (a server being marked stopped loses its
    # route first): the page must not send the browser back to /user/..., which would bounce it here
    hub.app[keys.ROUTES].remove("/user/alice/")
    status, text, _ = await browser.get("/hub/user/alice/lab")
    assert status == 424 and 'id="launch"' in text
    assert (await browser.get("/hub/spawn-pending/alice"))[0] == 200
    status, text, _ = await browser.get("/hub/home")
    assert 'data-server="" data-status="stopped"' in text
    await manager.check_routes()  # routed again
    assert (await browser.get("/hub/user/alice/lab"))[0] == 302
    # stopped server, cookie POST without XSRF: 403; with it: 424 JSON
    await manager.wait(await manager.stop(alice, ""), 30)
    assert (await browser.post("/hub/user/alice/api/kernels", data="{}"))[0] == 403
    status, _, _ = await browser.post("/hub/user/alice/api/kernels", data="{}",
                                      headers={"X-XSRFToken": browser.cookie("_xsrf")})
    assert status == 424
    # spawn-pending of a stopped server: the not-running page with 200, as JupyterHub
    status, text, _ = await browser.get("/hub/spawn-pending/alice")
    assert status == 200 and 'id="launch"' in text
    # a start that failed: the not-running page says why
    carol = await add_user(hub, "carol", PASSWORD)
    entry, _ = await manager.start(carol, "")
    await manager.wait(entry, 30)
    carols = browsers(hub)
    await carols.login("carol", PASSWORD)
    status, text, _ = await carols.get("/hub/user/carol/lab")
    assert status == 424 and 'id="last-failure"' in text and "Spawn failed" in text


async def test_not_running_with_token_and_anonymous(page_hub, browsers):
    hub = await page_hub(allow_named_servers=True)
    user = await add_user(hub, "alice", PASSWORD)
    await hub.store.create_server(user.id, "nb1")
    token = await hub.new_token("alice")
    browser = browsers(hub)
    status, _, headers = await browser.get("/hub/user/alice/lab")
    assert status == 302 and headers["Location"] == "/hub/login?next=%2Fhub%2Fuser%2Falice%2Flab"
    status, text, _ = await browser.get("/hub/user/alice/nb1/api/status", headers={"Authorization": f"token {token}"})
    assert status == 424 and "/user/alice/nb1/api/status" in text and "/hub/spawn/alice/nb1" in text
    status, _, _ = await browser.post("/hub/user/alice/api/kernels", headers={"Authorization": f"token {token}"})
    assert status == 424
    assert (await browser.post("/hub/user/alice/api/kernels"))[0] == 403


async def test_token_page_lists_tokens(page_hub, browsers):
    hub, browser = await logged_in(page_hub, browsers, token_expires_in_max_seconds=86400 * 7)
    user = await hub.store.get_user("alice")
    await hub.store.create_token("user", user.id, note="for <b>ci</b>", scopes=("read:users!user=alice",))
    server = await hub.store.create_server(user.id, "")
    await hub.store.create_token("user", user.id, note="Server at /user/alice/", server_id=server.id)
    status, text, _ = await browser.get("/hub/token")
    assert status == 200
    assert "for &lt;b&gt;ci&lt;/b&gt;" in text and "read:users!user=alice" in text
    assert "Server at /user/alice/" not in text  # a server's own secret is not listed
    assert 'data-tokens-url="/hub/api/users/alice/tokens"' in text
    assert 'value="604800"' in text and 'value="2592000"' not in text and ">Never<" not in text
    assert f'data-xsrf="{browser.cookie("_xsrf")}"' in text


async def test_admin_actions(page_hub, browsers):
    hub, browser = await logged_in(page_hub, browsers, name="root", admin=True)
    manager = hub.app[keys.SERVERS]
    status, text, _ = await browser.get("/hub/admin")
    assert status == 200 and 'data-user="root"' in text
    xsrf = form_xsrf(text)

    async def act(**fields):
        return await browser.post("/hub/admin/action", data={"_xsrf": xsrf, **fields})

    status, _, headers = await act(action="add", usernames="Carol dave\nerin", password="carols-password")
    assert status == 303 and headers["Location"] == "/hub/admin?done=added&n=3"
    assert (await browsers(hub).login("carol", "carols-password"))[0] == 302
    status, text, _ = await browser.get(headers["Location"])
    assert "Added 3 user(s)." in text and 'data-user="carol"' in text
    assert (await act(action="add", usernames="bad/name"))[0] == 400
    status, _, _ = await act(action="set-admin", user="carol", admin="1")
    assert status == 303 and (await hub.store.get_user("carol")).admin
    await act(action="set-admin", user="carol", admin="0")
    assert not (await hub.store.get_user("carol")).admin
    assert (await act(action="set-admin", user="root", admin="0"))[0] == 400
    status, _, _ = await act(action="password", user="carol", password="a-brand-new-one")
    assert status == 303 and (await browsers(hub).login("carol", "a-brand-new-one"))[0] == 302
    assert (await act(action="password", user="carol", password="short"))[0] == 400
    status, _, headers = await act(action="start", user="dave", server="")
    assert status == 303 and headers["Location"] == "/hub/admin?done=started"
    assert manager.status("dave", "") in ("spawn", "ready")
    await wait_for_status(hub, "dave", "", "ready")
    status, text, _ = await browser.get("/hub/admin?name_filter=dav")
    assert 'data-user="dave"' in text and 'data-user="carol"' not in text and "Stop server default of dave" in text
    status, _, headers = await act(action="stop", user="dave", server="", name_filter="dav")
    assert headers["Location"] == "/hub/admin?name_filter=dav&done=stopped"  # the stop finished before the answer
    assert manager.status("dave", "") is None
    status, text, _ = await browser.get(headers["Location"])
    assert "Server stopped." in text and "Start server default of dave" in text
    await act(action="start", user="dave", server="")
    status, _, _ = await act(action="delete", user="dave")
    assert status == 303 and await hub.store.get_user("dave") is None and manager.status("dave", "") is None
    assert manager.entry("dave", "") is None
    assert (await act(action="delete", user="root"))[0] == 400
    assert (await act(action="nonsense"))[0] == 400
    # X11 for the admin forms: no XSRF token, nothing happens
    status, _, _ = await browser.post("/hub/admin/action", data={"action": "add", "usernames": "sneaky"})
    assert status == 403 and await hub.store.get_user("sneaky") is None


async def test_admin_pagination_and_search(page_hub, browsers):
    hub, browser = await logged_in(page_hub, browsers, name="root", admin=True)
    await hub.store.create_users([f"user{i:02d}" for i in range(30)])
    status, text, _ = await browser.get("/hub/admin?limit=10&offset=10")
    assert status == 200 and "Users 11&ndash;20 of 31" in text
    assert 'rel="prev"' in text and 'rel="next"' in text
    assert 'data-user="user09"' in text and 'data-user="user08"' not in text  # 'root' sorts first
    status, text, _ = await browser.get("/hub/admin?name_filter=user2&limit=50")
    assert text.count('<tr data-user=') == 10
    status, text, _ = await browser.get("/hub/admin?name_filter=%25")
    assert "No users match" in text  # LIKE wildcards are literal


async def test_user_admin_limits(page_hub, browsers):
    """A non-admin holding admin-ui and admin:users (a custom role) cannot create admins or touch admins' passwords."""
    roles = ({"name": "helpdesk", "scopes": ["admin-ui", "admin:users", "list:users"], "users": ["helper"]},)
    hub = await page_hub(load_roles=roles)
    await add_user(hub, "helper", PASSWORD)
    await add_user(hub, "boss", PASSWORD, admin=True)
    browser = browsers(hub)
    await browser.login("helper", PASSWORD)
    status, text, _ = await browser.get("/hub/admin")
    assert status == 200
    xsrf = form_xsrf(text)
    status, _, _ = await browser.post("/hub/admin/action", data={"_xsrf": xsrf, "action": "add", "usernames": "x",
                                                                 "admin": "on"})
    assert status == 403 and await hub.store.get_user("x") is None
    assert (await browser.post("/hub/admin/action", data={"_xsrf": xsrf, "action": "set-admin", "user": "helper",
                                                          "admin": "1"}))[0] == 403
    assert (await browser.post("/hub/admin/action", data={"_xsrf": xsrf, "action": "password", "user": "boss",
                                                          "password": "taken-over!"}))[0] == 403
    status, _, _ = await browser.post("/hub/admin/action", data={"_xsrf": xsrf, "action": "add", "usernames": "y"})
    assert status == 303 and await hub.store.get_user("y") is not None



async def test_progress_reader_leaving_early_is_not_an_error(page_hub, browsers, tmp_path, caplog):
    """The spawn page closes its EventSource as soon as it has what it needs; the stream then just ends."""
    finished: list[str] = []
    done = asyncio.Event()

    def watch_progress(app: web.Application) -> None:
        @web.middleware
        async def watch(request: web.Request, handler):
            try:
                response = await handler(request)
                finished.append(f"answered {response.status}")
                return response
            except BaseException as e:
                finished.append(f"raised {e!r}")
                raise
            finally:
                if request.path.endswith("/progress"):
                    done.set()

        app.middlewares.append(watch)

    hub, browser = await logged_in(page_hub, browsers, configure=watch_progress,
                                   spawner_environment=gated_environment(tmp_path, "alice"))
    await browser.get("/hub/spawn")
    xsrf = browser.cookie("_xsrf")
    async with aiohttp.ClientSession(cookie_jar=browser.session.cookie_jar) as reader:
        async with reader.get(f"{hub.url}/hub/api/users/alice/server/progress?_xsrf={xsrf}", headers=CORS) as r:
            assert (await r.content.readuntil(b"\n\n")) == b"\n\n"  # the opening keepalive
            assert json.loads((await r.content.readuntil(b"\n\n"))[6:]) == {"progress": 0,
                                                                             "message": "Server requested"}
    # the reader has gone; the start goes on, and the stream's handler meets the closed connection
    open_gate(tmp_path, "alice")
    await wait_for_status(hub, "alice", "", "ready")
    await asyncio.wait_for(done.wait(), 30)
    assert finished[-1] == "answered 200"
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
