"""Real JupyterHub clients from PyPI against the gateway, unchanged: jupyterhub-idle-culler as a managed
service, and jupyterhub-singleuser serving JupyterLab (with its own OAuth login through the hub)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest

from gateway import keys
from tests.helpers.pages import add_user, logged_in_session
from tests.helpers.services import eventually

PASSWORD = "correct horse battery"
SINGLEUSER = Path(sys.executable).parent / "jupyterhub-singleuser"


async def test_idle_culler_as_managed_service(start_hub):
    culler = {"name": "idle-culler",
              "command": [sys.executable, "-m", "jupyterhub_idle_culler", "--timeout=6", "--cull-every=1"]}
    role = {"name": "idle-culler", "services": ["idle-culler"],
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"]}
    hub = await start_hub(services=(culler,), load_roles=(role,), allow_named_servers=True)
    idle, busy = await hub.new_token("idle"), await hub.new_token("busy")
    assert (await hub.api("POST", "/users/idle/server", token=idle)).status == 201
    assert (await hub.api("POST", "/users/busy/servers/nb", token=busy)).status == 201
    servers = hub.app[keys.SERVERS]
    for user, server in (("idle", ""), ("busy", "nb")):
        await eventually(lambda: servers.status(user, server) == "ready")
    started = time.monotonic()

    async def keep_busy_active() -> None:  # a client using the server through the proxy
        async with hub.session.get(f"{hub.url}/user/busy/nb/api/status",
                                   headers={"Authorization": f"token {busy}"}) as r:
            assert r.status == 200

    async def idle_culled_busy_spared() -> bool:
        await keep_busy_active()
        return servers.status("idle", "") is None

    await eventually(idle_culled_busy_spared, timeout=60, interval=0.5)
    # the busy server outlives the timeout by several cull passes while it is used
    while time.monotonic() - started < 14:
        await keep_busy_active()
        await asyncio.sleep(0.5)
    assert servers.status("busy", "nb") == "ready"
    r = await hub.api("GET", "/users/idle/server", token=idle)
    assert r.body["stopped"] is True
    # left alone, it is culled too
    await eventually(lambda: servers.status("busy", "nb") is None, timeout=60)


@pytest.fixture
async def lab_hub(start_hub):
    if not SINGLEUSER.exists():  # a test extra: missing in CI is a broken install, not a reason to skip
        (pytest.fail if os.environ.get("CI") else pytest.skip)("jupyterhub-singleuser is not installed")
    hub = await start_hub(spawner_cmd=(str(SINGLEUSER),), spawner_start_timeout=120.0, spawner_http_timeout=120.0)
    return hub


async def start_lab(hub, name: str) -> str:
    token = await hub.new_token(name)
    r = await hub.api("POST", f"/users/{name}/server", token=token)
    assert r.status in (201, 202), r.body
    servers = hub.app[keys.SERVERS]
    await eventually(lambda: servers.status(name, "") == "ready", timeout=150, interval=0.25)
    return token


async def test_singleuser_serves_jupyterlab(lab_hub):
    hub = lab_hub
    token = await start_lab(hub, "kim")
    await add_user(hub, "kim", PASSWORD)
    auth = {"Authorization": f"token {token}"}
    async with hub.session.get(f"{hub.url}/user/kim/api/status", headers=auth) as r:
        assert r.status == 200 and "started" in await r.json()
    async with hub.session.get(f"{hub.url}/user/kim/lab", headers=auth) as r:
        html = await r.text()
        assert r.status == 200 and "text/html" in r.headers["Content-Type"] and "jupyter-config-data" in html
    stranger = await hub.new_token("stranger")
    async with hub.session.get(f"{hub.url}/user/kim/api/status", headers={"Authorization": f"token {stranger}"}) as r:
        assert r.status == 403

    # a browser: login cookie, the lab page, then a cookie-authenticated write with the XSRF token
    async with logged_in_session(hub, "kim", PASSWORD) as browser:
        async with browser.get(f"{hub.url}/user/kim/lab") as r:
            html = await r.text()
            assert r.status == 200 and "jupyter-config-data" in html
        page_token = page_config(html)["token"]  # singleuser hands the browser the server's own secret
        found = await hub.store.find_token(page_token)
        assert found is not None and found.server_id is not None
        lab_xsrf = next(m.value for m in browser.cookie_jar if m.key == "_xsrf" and m["path"] == "/user/kim/")
        lab = {"Authorization": f"token {page_token}", "X-XSRFToken": lab_xsrf, "Origin": hub.url}
        async with browser.post(f"{hub.url}/user/kim/api/contents", json={"type": "file", "ext": ".txt"},
                                headers=lab) as r:  # what JupyterLab sends
            assert r.status == 201, await r.text()
        async with browser.post(f"{hub.url}/user/kim/api/contents", json={"type": "file", "ext": ".txt"},
                                headers={"Authorization": f"token {page_token}"}) as r:
            assert r.status == 403  # without the XSRF token the gateway refuses it
    # that secret alone is no credential at the proxy: only the visitor's own session or token is
    async with hub.session.get(f"{hub.url}/user/kim/api/status", headers={"Authorization": f"token {page_token}",
                                                                         "Accept": "application/json"}) as r:
        assert r.status == 403


async def test_hub_token_straight_to_singleuser_is_refused(lab_hub):
    """jupyterhub-singleuser asks the hub who a token belongs to; a user's hub token sent straight to the
    server's port (bypassing the proxy) is not identified at the server's own API prefix, so the server
    refuses it. Through the gateway the same token works, and JupyterHub API clients still identify it."""
    hub = lab_hub
    token = await start_lab(hub, "kim")
    user = await hub.store.get_user("kim")
    server = await hub.store.get_server(user.id, "")
    api_url = f"{hub.api_url}/_server/{server.id}"
    auth = {"Authorization": f"token {token}", "Accept": "application/json"}
    async with hub.session.get(f"{server.url}/user/kim/api/status", headers=auth) as r:
        assert r.status == 403, await r.text()
    async with hub.session.get(f"{server.url}/user/kim/api/contents", headers=auth) as r:
        assert r.status == 403, await r.text()
    async with hub.session.get(f"{hub.url}/user/kim/api/status", headers=auth) as r:
        assert r.status == 200, await r.text()
    # the hub's side: at the server's prefix, only the server's own secret identifies anyone
    secret = hub.app[keys.COOKIE_CIPHER].decrypt(server.state["secret"])
    async with hub.session.get(f"{api_url}/user", headers=auth) as r:
        assert r.status == 403
    async with hub.session.get(f"{api_url}/user", headers={"Authorization": f"token {secret}"}) as r:
        assert r.status == 200 and (await r.json())["name"] == "kim"
    async with hub.session.get(f"{hub.api_url}/user", headers=auth) as r:  # services' HubAuth: unchanged
        assert r.status == 200 and (await r.json())["name"] == "kim"


def page_config(html: str) -> dict:
    match = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', html, re.S)
    assert match, "no page config in the lab page"
    return json.loads(match.group(1))


async def test_singleuser_own_oauth_login_through_the_hub(lab_hub):
    """jupyterhub-singleuser reached directly (not through the proxy) logs the browser in with the hub's
    OAuth provider, as it does behind JupyterHub: client jupyterhub-user-kim, PKCE, its own token as secret."""
    hub = lab_hub
    await start_lab(hub, "kim")
    await add_user(hub, "kim", PASSWORD)
    backend = (await hub.store.get_server((await hub.store.get_user("kim")).id, "")).url
    async with logged_in_session(hub, "kim", PASSWORD) as browser:
        async with browser.get(f"{backend}/user/kim/lab", allow_redirects=False) as r:
            assert r.status == 302
            authorize = r.headers["Location"]
        query = parse_qs(urlsplit(authorize).query)
        assert urlsplit(authorize).path == "/hub/api/oauth2/authorize"
        assert query["client_id"] == ["jupyterhub-user-kim"] and query["code_challenge_method"] == ["S256"]
        async with browser.get(urljoin(hub.url, authorize), allow_redirects=False) as r:
            assert r.status == 302, await r.text()  # the user's own server: no consent page
            callback = r.headers["Location"]
        assert urlsplit(callback).path == "/user/kim/oauth_callback"
        async with browser.get(urljoin(backend, callback), allow_redirects=False) as r:
            assert r.status == 302, await r.text()  # singleuser exchanged the code at /hub/api/oauth2/token
        async with browser.get(f"{backend}/user/kim/api/status") as r:
            assert r.status == 200
    user = await hub.store.get_user("kim")
    assert any(t.client_id == "jupyterhub-user-kim" for t in await hub.store.list_tokens("user", user.id))
    # stopping the server ends the tokens issued to it
    token = await hub.new_token("kim")
    assert (await hub.api("DELETE", "/users/kim/server", token=token)).status in (202, 204)
    await eventually(lambda: hub.app[keys.SERVERS].status("kim", "") is None, timeout=60)
    assert not any(t.client_id == "jupyterhub-user-kim" for t in await hub.store.list_tokens("user", user.id))
