"""OpenID Connect login in Chromium: oauthenticator's GenericOAuthenticator, configured as an operator would,
against a real oidc-provider (node) and a real gateway process.

One provider and two gateways serve the module: ``hub`` (the login page with its button) and ``auto``
(``auto_login``). Each test uses its own browser context (cookie jar). The provider demands PKCE (S256)
from its client, so every successful login also proves the plugin's challenge and verifier made the
round trip. An ``auditor`` service token (admin:users, admin:auth_state, tokens) reads what the hub stored.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
import time
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import aiohttp
import pytest

from gateway.identity.caches import SESSION_COOKIE
from tests.helpers.chromium import new_page as new_page_with, session_cookie, shot as shot_as
from tests.helpers.hub import GatewayProcess, free_port, stop_recorded_servers
from tests.helpers.processes import FAKE
from tests.login.oidc_provider import ACCOUNTS, start_oidc_provider

TIMEOUT_MS = 20_000
FAKE_SERVER = list(FAKE)
LOGIN_SERVICE = "University SSO"
STATE_COOKIE = "oauthenticator-state"
AUDITOR = secrets.token_hex(20)
CRYPT_KEY = secrets.token_hex(32)


def operator_config(idp, port: int, *, auto_login: bool = False) -> str:
    """A jupyterhub_config.py as an operator writes it for an OIDC provider."""
    return f"""
import os

c.JupyterHub.authenticator_class = "generic-oauth"
c.GenericOAuthenticator.client_id = {idp.client_id!r}
c.GenericOAuthenticator.client_secret = os.environ["OIDC_CLIENT_SECRET"]
c.GenericOAuthenticator.oauth_callback_url = "http://127.0.0.1:{port}/hub/oauth_callback"
c.GenericOAuthenticator.authorize_url = {idp.authorize_url!r}
c.GenericOAuthenticator.token_url = {idp.token_url!r}
c.GenericOAuthenticator.userdata_url = {idp.userdata_url!r}
c.GenericOAuthenticator.username_claim = "preferred_username"
c.GenericOAuthenticator.scope = ["openid", "profile", "email", "groups"]
c.GenericOAuthenticator.login_service = {LOGIN_SERVICE!r}
c.GenericOAuthenticator.manage_groups = True
c.GenericOAuthenticator.auth_state_groups_key = "oauth_user.groups"
c.GenericOAuthenticator.allowed_groups = {{"students", "staff"}}
c.GenericOAuthenticator.admin_groups = {{"staff"}}
c.GenericOAuthenticator.auto_login = {auto_login!r}
c.Authenticator.enable_auth_state = True

def pass_identity(spawner, auth_state):
    # what a deployment does with auth_state: hand the provider's identity to the user's server
    spawner.environment["OIDC_SUB"] = auth_state["oauth_user"]["sub"]
    spawner.environment["OIDC_GROUPS"] = ",".join(auth_state["oauth_user"]["groups"])

c.Spawner.auth_state_hook = pass_identity
c.Spawner.cmd = {FAKE_SERVER!r}
c.Spawner.start_timeout = 60
c.JupyterHub.redirect_to_server = False
c.JupyterHub.services = [{{"name": "auditor", "api_token": {AUDITOR!r}}}]
c.JupyterHub.load_roles = [{{"name": "auditor", "services": ["auditor"],
                            "scopes": ["admin:users", "admin:auth_state", "tokens", "admin:servers",
                                       "read:groups"]}}]
c.Gateway.create_first_admin = False
"""


def start_gateway(workdir: Path, idp, port: int, **options) -> GatewayProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    gw = GatewayProcess(workdir, operator_config(idp, port, **options), port=port)
    env = gw.env()

    def with_secrets() -> dict[str, str]:  # secrets by environment, as an operator's unit file would
        return {**env, "OIDC_CLIENT_SECRET": idp.client_secret, "JUPYTERHUB_CRYPT_KEY": CRYPT_KEY}

    gw.env = with_secrets  # type: ignore[method-assign]
    gw.start()
    asyncio.run(gw.wait_ready())
    return gw


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """(provider, hub, auto_login hub)."""
    base = tmp_path_factory.mktemp("oidc")
    hub_port, auto_port = free_port(), free_port()
    idp = start_oidc_provider(free_port(), [f"http://127.0.0.1:{p}/hub/oauth_callback" for p in (hub_port, auto_port)])
    gateways: list[GatewayProcess] = []
    try:
        gateways.append(start_gateway(base / "hub", idp, hub_port))
        gateways.append(start_gateway(base / "auto", idp, auto_port, auto_login=True))
        yield idp, gateways[0], gateways[1]
    finally:
        for gw in gateways:
            gw.stop()
            stop_recorded_servers(gw.workdir)
        idp.stop()


async def new_page(chromium):
    return await new_page_with(chromium, timeout_ms=TIMEOUT_MS)


async def shot(page, name: str) -> None:
    await shot_as(page, f"oidc-{name}")


async def sign_in_at_provider(page, idp, name: str, password: str | None = None) -> None:
    """Fill in the provider's own login form (the page the hub sent the browser to)."""
    await page.wait_for_url(idp.issuer + "/interaction/**")
    await page.get_by_label("Username").fill(name)
    await page.get_by_label("Password").fill(password if password is not None else idp.password(name))
    await page.get_by_role("button", name="Sign in").click()


async def log_in(page, gw, idp, name: str, *, next_url: str | None = None):
    """Hub login page → button → provider → back; returns the hub's last response."""
    await page.goto(gw.url + "/hub/login" + (f"?{urlencode({'next': next_url})}" if next_url else ""))
    await page.get_by_role("link", name=f"Sign in with {LOGIN_SERVICE}").click()
    async with page.expect_response(lambda r: "/hub/oauth_callback" in r.url) as callback:
        await sign_in_at_provider(page, idp, name)
    await page.wait_for_load_state()
    return await callback.value


async def api(gw, method: str, path: str, token: str, body=None):
    async with aiohttp.ClientSession() as s:
        async with s.request(method, gw.url + "/hub/api" + path, headers={"Authorization": f"token {token}"},
                             json=body) as r:
            text = await r.text()
            return r.status, (json.loads(text) if text else None)


def provider_userinfo(idp, access_token: str) -> dict:
    request = urllib.request.Request(idp.userdata_url, headers={"Authorization": f"Bearer {access_token}"})
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.load(r)


# ---------------------------------------------------------------- the tests


async def test_login_through_the_provider_lands_on_the_hub_as_that_user(deployment, chromium):
    idp, hub, _ = deployment
    context, page = await new_page(chromium)
    authorize_requests: list[str] = []
    page.on("request", lambda r: authorize_requests.append(r.url) if r.url.startswith(idp.authorize_url) else None)
    await page.goto(hub.url + "/hub/login")
    await shot(page, "login-page")
    assert await page.get_by_label("Password").count() == 0  # no password form: the provider asks for it
    await page.get_by_role("link", name=f"Sign in with {LOGIN_SERVICE}").click()
    await sign_in_at_provider(page, idp, "alice")
    await page.wait_for_url(hub.url + "/hub/home")
    await shot(page, "alice-home")
    assert await page.evaluate("document.body.dataset.user") == "alice"
    assert await session_cookie(context)
    assert STATE_COOKIE not in {c["name"] for c in await context.cookies()}  # used once, then cleared

    # the plugin built the request: its client, callback, scope, state and a PKCE S256 challenge
    query = parse_qs(urlsplit(authorize_requests[0]).query)
    assert query["client_id"] == [idp.client_id]
    assert query["redirect_uri"] == [f"{hub.url}/hub/oauth_callback"]
    assert query["scope"] == ["openid profile email groups"]
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["state"][0]

    status, model = await api(hub, "GET", "/users/alice", AUDITOR)
    assert status == 200
    assert model["admin"] is False
    assert model["groups"] == ["students"]
    # logout is gateway's own (oauthenticator's get_handlers also lists its /logout handler): the session ends
    saved = await session_cookie(context)
    await page.goto(hub.url + "/hub/logout")
    await page.wait_for_url(hub.url + "/hub/login")
    assert await session_cookie(context) is None
    async with aiohttp.ClientSession() as s:
        async with s.get(hub.url + "/hub/api/user", headers={"Cookie": f"{SESSION_COOKIE}={saved}"}) as r:
            assert r.status == 403
    await context.close()


async def test_next_survives_the_round_trip_and_an_offsite_next_does_not(deployment, chromium):
    idp, hub, _ = deployment
    context, page = await new_page(chromium)
    await log_in(page, hub, idp, "alice", next_url="/hub/token")
    assert page.url == hub.url + "/hub/token"
    await context.close()

    context, page = await new_page(chromium)
    await log_in(page, hub, idp, "alice", next_url="https://evil.example/steal")
    assert urlsplit(page.url).netloc == urlsplit(hub.url).netloc
    assert await session_cookie(context)
    await context.close()


async def test_a_staff_account_becomes_admin_with_its_groups(deployment, chromium):
    idp, hub, _ = deployment
    context, page = await new_page(chromium)
    await log_in(page, hub, idp, "sam")
    assert await page.evaluate("document.body.dataset.user") == "sam"
    await page.goto(hub.url + "/hub/admin")  # an admin page answers an admin only
    await shot(page, "sam-admin")
    assert urlsplit(page.url).path == "/hub/admin"
    status, model = await api(hub, "GET", "/users/sam", AUDITOR)
    assert status == 200 and model["admin"] is True
    assert sorted(model["groups"]) == ["staff", "students"]
    status, group = await api(hub, "GET", "/groups/staff", AUDITOR)
    assert status == 200 and group["users"] == ["sam"]
    await context.close()


async def test_an_account_outside_allowed_groups_is_refused_with_no_session(deployment, chromium):
    idp, hub, _ = deployment
    context, page = await new_page(chromium)
    response = await log_in(page, hub, idp, "mallory")
    await shot(page, "mallory-refused")
    assert response.status == 403
    assert "not currently authorized" in await page.content()
    assert await session_cookie(context) is None
    status, _ = await api(hub, "GET", "/users/mallory", AUDITOR)
    assert status == 404  # no user record for a refused login
    await page.goto(hub.url + "/hub/home")
    assert urlsplit(page.url).path == "/hub/login"
    await context.close()


async def watch_callback(page, hub, *, hold: bool):
    """Note the provider's redirect back to the hub (URL, and the state cookie sent with it); with ``hold``
    the hub never sees it. Through the DevTools protocol: Playwright's own routing skips redirect hops,
    and the callback is the last hop of the provider's redirect chain."""
    cdp = await page.context.new_cdp_session(page)
    seen: asyncio.Future = asyncio.get_running_loop().create_future()

    async def paused(event):
        if not seen.done():
            cookies = {c["name"]: c["value"] for c in await page.context.cookies()}
            seen.set_result((event["request"]["url"], cookies.get(STATE_COOKIE)))
        command = "Fetch.failRequest" if hold else "Fetch.continueRequest"
        await cdp.send(command, {"requestId": event["requestId"], **({"errorReason": "Aborted"} if hold else {})})

    cdp.on("Fetch.requestPaused", lambda event: asyncio.ensure_future(paused(event)))
    await cdp.send("Fetch.enable", {"patterns": [{"urlPattern": f"{hub.url}/hub/oauth_callback*",
                                                  "requestStage": "Request"}]})
    return cdp, seen


async def test_a_tampered_state_is_refused(deployment, chromium):
    idp, hub, _ = deployment
    context, page = await new_page(chromium)
    cdp, seen = await watch_callback(page, hub, hold=True)
    await page.goto(hub.url + "/hub/oauth_login")
    await sign_in_at_provider(page, idp, "alice")
    url, state_cookie = await asyncio.wait_for(seen, TIMEOUT_MS / 1000)
    await cdp.send("Fetch.disable")
    assert state_cookie  # the browser still holds the state: only the URL's copy is changed
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    state = query["state"][0]
    query["state"] = [state[:-4] + ("AAAA" if not state.endswith("AAAA") else "BBBB")]
    response = await page.goto(urlunsplit(parts._replace(query=urlencode(query, doseq=True))))
    await shot(page, "tampered-state")
    assert response.status == 400
    assert "state mismatch" in await page.content()
    assert await session_cookie(context) is None
    await context.close()


async def test_a_replayed_state_is_refused(deployment, chromium):
    idp, hub, _ = deployment
    context, page = await new_page(chromium)
    cdp, seen = await watch_callback(page, hub, hold=False)
    await log_in(page, hub, idp, "alice")
    url, state_cookie = await asyncio.wait_for(seen, TIMEOUT_MS / 1000)
    await cdp.send("Fetch.disable")
    assert await session_cookie(context)

    # the same browser again: its state cookie was cleared by the first use
    response = await page.goto(url)
    assert response.status == 400

    # someone holding both the callback URL and the state cookie: the state was used already
    other, other_page = await new_page(chromium)
    await other.add_cookies([{"name": STATE_COOKIE, "value": state_cookie, "url": hub.url + "/"}])
    response = await other_page.goto(url)
    await shot(other_page, "replayed-state")
    assert response.status == 400
    assert "already used" in await other_page.content()
    assert await session_cookie(other) is None
    await other.close()
    await context.close()


async def test_bad_callbacks_are_clear_400s_without_a_session(deployment):
    _, hub, _ = deployment
    cases = ["", "?state=abc", "?code=abc", "?code=abc&state=abc", "?error=access_denied&state=abc",
             "?code=%00%ff&state=" + "A" * 5000]
    async with aiohttp.ClientSession() as s:
        for query in cases:
            async with s.get(hub.url + "/hub/oauth_callback" + query, allow_redirects=False) as r:
                body = await r.text()
                assert r.status == 400, (query, r.status, body[:300])
                assert "Traceback" not in body
                assert SESSION_COOKIE not in r.cookies


async def test_cancelling_at_the_provider_is_a_clear_400(deployment, chromium):
    idp, hub, _ = deployment
    context, page = await new_page(chromium)
    await page.goto(hub.url + "/hub/oauth_login")
    await page.wait_for_url(idp.issuer + "/interaction/**")
    async with page.expect_response(lambda r: "/hub/oauth_callback" in r.url) as callback:
        await page.get_by_role("link", name="Cancel").click()
    response = await callback.value
    assert response.status == 400
    assert "cancelled" in await page.content()
    assert await session_cookie(context) is None
    await context.close()


async def test_auth_state_holds_the_providers_token_for_admins_only(deployment, chromium):
    idp, hub, _ = deployment
    context, page = await new_page(chromium)
    await log_in(page, hub, idp, "alice")
    await context.close()

    status, model = await api(hub, "GET", "/users/alice", AUDITOR)
    assert status == 200
    auth_state = model["auth_state"]
    assert auth_state["oauth_user"]["groups"] == ["students"]
    assert auth_state["refresh_token"] and auth_state["id_token"]
    # the provider's own access token: the provider still answers it with alice's claims
    assert provider_userinfo(idp, auth_state["access_token"])["sub"] == "alice"

    # alice's own token (everything alice may do) does not show it: that needs admin:auth_state
    status, created = await api(hub, "POST", "/users/alice/tokens", AUDITOR, {"note": "alice's own"})
    assert status == 201, created
    status, own_view = await api(hub, "GET", "/users/alice", created["token"])
    assert status == 200 and own_view["name"] == "alice"
    assert "auth_state" not in own_view

    # stored encrypted, and never logged
    db = next(hub.workdir.glob("*.sqlite"))
    with sqlite3.connect(db) as conn:
        dump = "\n".join(conn.iterdump())
    assert auth_state["access_token"] not in dump
    assert auth_state["access_token"] not in hub.log()
    assert auth_state["refresh_token"] not in hub.log()


async def test_the_spawner_receives_auth_state(deployment, chromium):
    idp, hub, _ = deployment
    context, page = await new_page(chromium)
    await log_in(page, hub, idp, "sam")
    await context.close()
    status, created = await api(hub, "POST", "/users/sam/tokens", AUDITOR, {"note": "sam's own"})
    assert status == 201, created
    token = created["token"]
    status, body = await api(hub, "POST", "/users/sam/server", token)
    assert status in (201, 202), (body, hub.log()[-3000:])
    deadline = time.monotonic() + 60
    while True:
        status, model = await api(hub, "GET", "/users/sam", AUDITOR)
        if model["servers"].get("", {}).get("ready"):
            break
        assert time.monotonic() < deadline, model
        await asyncio.sleep(0.2)
    async with aiohttp.ClientSession() as s:
        async with s.get(hub.url + "/user/sam/api/env", headers={"Authorization": f"token {token}"}) as r:
            assert r.status == 200
            env = await r.json()
    assert env["OIDC_SUB"] == "sam"
    assert env["OIDC_GROUPS"] == "staff,students"
    await api(hub, "DELETE", "/users/sam/server", AUDITOR)


async def test_auto_login_goes_straight_to_the_provider_and_keeps_next(deployment, chromium):
    idp, _, auto = deployment
    context, page = await new_page(chromium)
    await page.goto(auto.url + "/hub/login?next=%2Fhub%2Ftoken")
    await sign_in_at_provider(page, idp, "alice")  # no hub page in between
    await page.wait_for_url(auto.url + "/hub/token")
    assert await page.evaluate("document.body.dataset.user") == "alice"
    await context.close()


async def test_provider_fixture_publishes_discovery(deployment):
    idp, _, _ = deployment
    with urllib.request.urlopen(idp.issuer + "/.well-known/openid-configuration", timeout=10) as r:
        discovery = json.load(r)
    assert discovery["issuer"] == idp.issuer
    assert discovery["authorization_endpoint"] == idp.authorize_url
    assert discovery["token_endpoint"] == idp.token_url
    assert discovery["userinfo_endpoint"] == idp.userdata_url
    assert "groups" in discovery["claims_supported"]
    assert set(ACCOUNTS) == {"alice", "sam", "mallory"}
