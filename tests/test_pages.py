"""Pages over real HTTP: home, spawn, spawn-pending, not-running (424), token list, admin actions.

The server manager is ``StandInServers`` (tests/pagetools.py), standing in for the real one until
it lands; the spawn-to-JupyterLab journey is the browser suite's job once it does.
"""

from __future__ import annotations

from urllib.parse import quote

from tests.pagetools import StandInServers, add_user, browsers, form_xsrf, page_hub  # noqa: F401 (fixtures)

PASSWORD = "correct horse battery"


async def logged_in(page_hub, browsers, servers, name="alice", admin=False, **settings):
    hub = await page_hub(servers=servers, **settings)
    await add_user(hub, name, PASSWORD, admin=admin)
    browser = browsers(hub)
    status, _, _ = await browser.login(name, PASSWORD, next_url="/hub/home")
    assert status == 302
    return hub, browser


async def test_home_without_server_manager(page_hub, browsers):
    hub, browser = await logged_in(page_hub, browsers, None)
    status, text, headers = await browser.get("/hub/home")
    assert status == 200 and 'id="servers-unavailable"' in text
    assert headers["Cache-Control"] == "no-store"
    for path in ("/hub/spawn", "/hub/spawn-pending/alice"):
        status, text, _ = await browser.get(path)
        assert status == 503 and "Servers are not available" in text
    status, _, headers = await browser.get("/hub/")
    assert status == 302 and headers["Location"] == "/hub/home"


async def test_spawn_flow(page_hub, browsers):
    servers = StandInServers()
    hub, browser = await logged_in(page_hub, browsers, servers, allow_named_servers=True)
    status, text, _ = await browser.get("/hub/home")
    assert status == 200 and 'href="/hub/spawn/alice"' in text and 'id="new-server"' in text
    status, _, headers = await browser.get("/hub/")  # redirect_to_server: not running → /hub/spawn
    assert headers["Location"] == "/hub/spawn"
    status, _, headers = await browser.get("/hub/spawn?next=%2Fuser%2Falice%2Flab&opt-image=big")
    assert status == 302 and headers["Location"] == "/hub/spawn-pending/alice?next=%2Fuser%2Falice%2Flab"
    assert servers.started == [("alice", "", {"image": "big"})]
    status, text, _ = await browser.get(headers["Location"])
    assert status == 200
    assert 'data-progress-url="/hub/api/users/alice/server/progress"' in text
    assert 'data-next="/user/alice/lab"' in text and 'role="progressbar"' in text
    status, text, _ = await browser.get("/hub/home")
    assert 'data-status="spawn"' in text and "Show progress" in text
    servers.states[("alice", "")] = "ready"
    status, _, headers = await browser.get("/hub/spawn-pending/alice?next=%2Fuser%2Falice%2Flab")
    assert status == 302 and headers["Location"] == "/user/alice/lab"
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


async def test_spawn_needs_scope_and_xsrf(page_hub, browsers):
    servers = StandInServers()
    hub, browser = await logged_in(page_hub, browsers, servers)
    await hub.new_user("bob")
    status, _, _ = await browser.get("/hub/spawn/bob")
    assert status == 404  # alice holds servers only for herself
    assert (await browser.get("/hub/spawn/nosuch"))[0] == 404
    # X12: a form post without the XSRF token spawns nothing, whatever the fetch metadata says
    for headers in ({"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Site": "cross-site"},
                    {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Site": "cross-site"}, {}):
        status, _, _ = await browser.post("/hub/spawn", data={"x": "1"}, headers=headers)
        assert status == 403
    assert servers.started == []
    token = browser.cookie("_xsrf")
    status, _, headers = await browser.post("/hub/spawn", data={"_xsrf": token, "size": "m"})
    assert status == 302 and servers.started == [("alice", "", {"size": "m"})]


async def test_admin_spawns_for_others(page_hub, browsers):
    servers = StandInServers(instant=True)
    hub, browser = await logged_in(page_hub, browsers, servers, name="root", admin=True)
    await hub.new_user("bob")
    status, _, headers = await browser.get("/hub/spawn/bob")
    assert status == 302 and headers["Location"] == "/user/bob/"
    assert servers.status("bob", "") == "ready"


async def test_not_running_page(page_hub, browsers):
    servers = StandInServers()
    hub, browser = await logged_in(page_hub, browsers, servers)
    status, text, headers = await browser.get("/hub/user/alice/lab/tree?x=1")
    assert status == 424 and headers["Content-Type"].startswith("text/html")
    launch = "/hub/spawn/alice?next=" + quote("/user/alice/lab/tree?x=1", safe="")
    assert f'href="{launch}"' in text.replace("&amp;", "&")
    status, text, headers = await browser.get("/hub/user/alice/api/contents")
    assert status == 424 and headers["Content-Type"].startswith("application/json")
    import json
    assert json.loads(text) == {"status": 424, "message": "JupyterHub server no longer running at "
                                "/user/alice/api/contents. Restart the server at /hub/spawn/alice"}
    status, _, headers = await browser.get("/hub/user/alice/files/x", headers={"Accept": "application/json"})
    assert status == 424 and headers["Content-Type"].startswith("application/json")
    status, _, _ = await browser.get("/hub/user/alice/lab", headers={"Accept": "text/html,application/json;q=0.9"})
    assert status == 424
    # someone else's server: existence hidden
    await hub.new_user("bob")
    status, text, _ = await browser.get("/hub/user/bob/lab")
    assert status == 404 and "No access to resources or resources not found" in text
    assert (await browser.get("/hub/user/nosuch/lab"))[0] == 404
    # starting: on to the progress page; ready: back to the server (hop counted)
    servers.states[("alice", "")] = "spawn"
    status, _, headers = await browser.get("/hub/user/alice/lab")
    assert status == 303 and headers["Location"] == "/hub/spawn-pending/alice?next=%2Fuser%2Falice%2Flab"
    servers.states[("alice", "")] = "ready"
    status, _, headers = await browser.get("/hub/user/alice/lab?x=1")
    assert status == 302 and headers["Location"] == "/user/alice/lab?x=1&redirects=1"
    assert (await browser.get("/hub/user/alice/lab?redirects=4"))[0] == 500
    # stopped server, cookie POST without XSRF: 403; with it: 424 JSON
    servers.states.pop(("alice", ""))
    assert (await browser.post("/hub/user/alice/api/kernels", data="{}"))[0] == 403
    status, _, _ = await browser.post("/hub/user/alice/api/kernels", data="{}",
                                      headers={"X-XSRFToken": browser.cookie("_xsrf")})
    assert status == 424
    # spawn-pending of a stopped server: the not-running page with 200, as JupyterHub
    status, text, _ = await browser.get("/hub/spawn-pending/alice")
    assert status == 200 and 'id="launch"' in text


async def test_not_running_with_token_and_anonymous(page_hub, browsers):
    servers = StandInServers()
    hub = await page_hub(servers=servers, allow_named_servers=True)
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
    hub, browser = await logged_in(page_hub, browsers, None, token_expires_in_max_seconds=86400 * 7)
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
    servers = StandInServers(instant=True)
    hub, browser = await logged_in(page_hub, browsers, servers, name="root", admin=True)
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
    status, _, _ = await act(action="start", user="dave", server="")
    assert status == 303 and servers.status("dave", "") == "ready"
    status, text, _ = await browser.get("/hub/admin?name_filter=dav")
    assert 'data-user="dave"' in text and 'data-user="carol"' not in text and "Stop server default of dave" in text
    await act(action="stop", user="dave", server="")
    assert servers.status("dave", "") is None
    await act(action="start", user="dave", server="")
    status, _, _ = await act(action="delete", user="dave")
    assert status == 303 and await hub.store.get_user("dave") is None and servers.status("dave", "") is None
    assert (await act(action="delete", user="root"))[0] == 400
    assert (await act(action="nonsense"))[0] == 400
    # X11 for the admin forms: no XSRF token, nothing happens
    status, _, _ = await browser.post("/hub/admin/action", data={"action": "add", "usernames": "sneaky"})
    assert status == 403 and await hub.store.get_user("sneaky") is None


async def test_admin_pagination_and_search(page_hub, browsers):
    hub, browser = await logged_in(page_hub, browsers, None, name="root", admin=True)
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
    hub = await page_hub(servers=None, load_roles=roles)
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
