"""The hub's OAuth2 provider, driven as a client would drive it (raw HTTP), and by a real HubOAuth service."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.helpers.pages import Browser, add_user, form_xsrf, logged_in_session
from tests.helpers.services import WHOAMI_SERVICE, eventually, managed, service_answers

PASSWORD = "correct horse battery"
EXT_SECRET = "ext-service-secret-" + "x" * 20
EXT_CALLBACK = "/services/ext/oauth_callback"
USERS_ACCESS = ({"name": "user", "scopes": ["self", "access:services"]},)


def ext_service(**extra) -> dict:
    # an external service: registered by url and token; nothing needs to listen for these tests
    return {"name": "ext", "url": "http://127.0.0.1:9", "api_token": EXT_SECRET, **extra}


def authorize_path(client_id="service-ext", redirect_uri=EXT_CALLBACK, **params) -> str:
    query = {"client_id": client_id, "redirect_uri": redirect_uri, "response_type": "code", "state": "st4te", **params}
    return "/hub/api/oauth2/authorize?" + urlencode({k: v for k, v in query.items() if v is not None})


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(32)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


async def logged_in(hub, name="alice") -> Browser:
    await add_user(hub, name, PASSWORD)
    browser = Browser(hub.url)
    status, _, _ = await browser.login(name, PASSWORD)
    assert status == 302
    return browser


async def code_for(browser: Browser, path: str) -> str:
    """Authorize (confirming on the page if asked) and return the code from the redirect."""
    status, text, headers = await browser.get(path)
    if status == 200:  # the consent page: post it back with the hub XSRF token
        status, text, headers = await browser.post(path, data={"_xsrf": form_xsrf(text), "scopes": re.findall(
            r'name="scopes" value="([^"]+)"', text)})
    assert status == 302, text
    location = urlsplit(headers["Location"])
    assert location.path == EXT_CALLBACK and not location.netloc
    query = parse_qs(location.query)
    assert query["state"] == ["st4te"]
    return query["code"][0]


async def exchange(hub, code: str, *, secret=EXT_SECRET, redirect_uri=EXT_CALLBACK, verifier=None, client="service-ext"):
    form = {"client_id": client, "client_secret": secret, "grant_type": "authorization_code", "code": code,
            "redirect_uri": redirect_uri}
    if verifier is not None:
        form["code_verifier"] = verifier
    async with hub.session.post(hub.api_url + "/oauth2/token", data=form) as r:
        return r.status, await r.json()


async def test_anonymous_browser_is_sent_to_login_then_back(start_hub):
    hub = await start_hub(services=(ext_service(),), load_roles=USERS_ACCESS)
    await add_user(hub, "alice", PASSWORD)
    browser = Browser(hub.url)
    try:
        path = authorize_path()
        status, _, headers = await browser.get(path)
        location = urlsplit(headers["Location"])
        assert status == 302 and location.path == "/hub/login"
        next_url = urlsplit(parse_qs(location.query)["next"][0])
        assert next_url.path == "/hub/api/oauth2/authorize" and parse_qs(next_url.query) == parse_qs(urlsplit(path).query)
        status, _, headers = await browser.login("alice", PASSWORD, next_url=next_url.geturl())
        assert status == 302 and urlsplit(headers["Location"]).path == "/hub/api/oauth2/authorize"
    finally:
        await browser.close()


async def test_redirect_uri_must_match_exactly(start_hub):
    """Security case R4: never a Location to anything but the registered redirect URI."""
    hub = await start_hub(services=(ext_service(),), load_roles=USERS_ACCESS)
    browser = await logged_in(hub)
    try:
        for bad in ("http://evil.example/cb", "//evil.example/cb", "/services/ext/oauth_callback/../../../\\evil.example",
                    EXT_CALLBACK + "x", EXT_CALLBACK + "?next=//evil.example", f"http://{hub.url[7:]}{EXT_CALLBACK}"):
            status, text, headers = await browser.get(authorize_path(redirect_uri=bad))
            assert status == 400 and "Location" not in headers, bad
            assert "text/html" in headers["Content-Type"] and "Mismatching redirect URI" in text
        status, _, headers = await browser.get(authorize_path(client_id="service-nosuch"))
        assert status == 400 and "Location" not in headers
        # with client and redirect known good, request errors go back to the client
        status, _, headers = await browser.get(authorize_path(response_type="token"))
        assert status == 302 and parse_qs(urlsplit(headers["Location"]).query)["error"] == ["unsupported_response_type"]
        status, _, headers = await browser.get(authorize_path(code_challenge="a" * 43, code_challenge_method="plain"))
        query = parse_qs(urlsplit(headers["Location"]).query)
        assert status == 302 and query["error"] == ["invalid_request"] and query["state"] == ["st4te"]
    finally:
        await browser.close()


async def test_user_without_access_is_refused(start_hub):
    hub = await start_hub(services=(ext_service(),))  # users lack access:services by default, as in JupyterHub
    browser = await logged_in(hub)
    try:
        status, text, headers = await browser.get(authorize_path())
        assert status == 403 and "Location" not in headers
        assert "You do not have permission to access JupyterHub service ext" in text
    finally:
        await browser.close()


async def test_consent_code_exchange_and_token(start_hub):
    hub = await start_hub(services=(ext_service(oauth_client_allowed_scopes=["read:users:activity!user", "admin:users"]),),
                          load_roles=USERS_ACCESS)
    browser = await logged_in(hub)
    try:
        status, text, _ = await browser.get(authorize_path())
        assert status == 200 and "JupyterHub service ext" in text and "read:users:activity!user" in text
        assert "admin:users" not in text  # a client's allowed scope the user does not hold is not offered
        status, _, _ = await browser.post(authorize_path(), data={"scopes": "read:users:activity!user"})
        assert status == 403  # no XSRF token: a cross-site form cannot consent for the user
        code = await code_for(browser, authorize_path())
        status, body = await exchange(hub, code, secret="wrong-secret-000")
        assert status == 401 and body["error"] == "invalid_client"
        assert (await exchange(hub, code, client="service-nosuch"))[0] == 401
        status, body = await exchange(hub, code)  # an unauthenticated attempt does not burn the code
        assert status == 200
        code = await code_for(browser, authorize_path())  # consented before: no page this time
        assert (await exchange(hub, code, redirect_uri="/services/ext/other"))[1]["error"] == "invalid_grant"
        code = await code_for(browser, authorize_path())
        status, body = await exchange(hub, code)
        assert status == 200 and body["token_type"] == "Bearer" and body["expires_in"] > 0
        assert set(body["scope"].split()) == {"access:services!service=ext", "read:users:activity!user"}
        assert (await exchange(hub, code))[1]["error"] == "invalid_grant"  # single use
        r = await hub.api("GET", "/user", token=body["access_token"])
        assert r.status == 200 and r.body["name"] == "alice"
        assert {"access:services!service=ext", "read:users:activity!user=alice"} <= set(r.body["scopes"])
        assert not any(s.startswith("admin:users") for s in r.body["scopes"])
        assert r.body["session_id"] is not None
        # the token carries only what the client may have: no read:tokens, so it cannot list alice's tokens
        assert (await hub.api("GET", "/users/alice/tokens", token=body["access_token"])).status == 403
        admin = await hub.new_token("root", admin=True)
        listed = (await hub.api("GET", "/users/alice/tokens", token=admin)).body["api_tokens"]
        oauth = [t for t in listed if t["oauth_client"] == "service-ext"]
        assert len(oauth) == 2 and {t["session_id"] for t in oauth} == {r.body["session_id"]}
        # logging out ends the session and every token issued within it
        await browser.get("/hub/logout")
        assert (await hub.api("GET", "/user", token=body["access_token"])).status == 403
    finally:
        await browser.close()


async def test_pkce_and_redirect_checked_at_the_token_endpoint(start_hub):
    hub = await start_hub(services=(ext_service(oauth_no_confirm=True),), load_roles=USERS_ACCESS)
    browser = await logged_in(hub)
    try:
        verifier, challenge = pkce()
        with_pkce = authorize_path(code_challenge=challenge, code_challenge_method="S256")
        code = await code_for(browser, with_pkce)
        assert (await exchange(hub, code))[1]["error"] == "invalid_grant"  # challenge sent, no verifier
        code = await code_for(browser, with_pkce)
        assert (await exchange(hub, code, verifier=pkce()[0]))[1]["error"] == "invalid_grant"
        code = await code_for(browser, with_pkce)
        assert (await exchange(hub, code, verifier=verifier, redirect_uri="/elsewhere"))[1]["error"] == "invalid_grant"
        code = await code_for(browser, with_pkce)
        status, body = await exchange(hub, code, verifier=verifier)
        assert status == 200 and body["access_token"]
        # an expired code is refused
        code = await code_for(browser, authorize_path())
        async with hub.store.transaction() as db:
            await db.execute("UPDATE oauth_codes SET expires_at = 0")
        assert (await exchange(hub, code))[1]["error"] == "invalid_grant"
        # client credentials by HTTP Basic work too (RFC 6749 2.3.1)
        code = await code_for(browser, authorize_path())
        basic = base64.b64encode(f"service-ext:{EXT_SECRET}".encode()).decode()
        async with hub.session.post(hub.api_url + "/oauth2/token", headers={"Authorization": f"Basic {basic}"},
                                    data={"grant_type": "authorization_code", "code": code,
                                          "redirect_uri": EXT_CALLBACK}) as r:
            assert r.status == 200 and (await r.json())["access_token"]
    finally:
        await browser.close()


async def test_real_huboauth_service_logs_a_browser_in(start_hub):
    """A tornado service built on jupyterhub.services.auth.HubOAuth, run as a managed service."""
    confirm = managed("whoami", WHOAMI_SERVICE)
    trusted = managed("trusted", WHOAMI_SERVICE, oauth_no_confirm=True)
    hub = await start_hub(services=(confirm, trusted), load_roles=USERS_ACCESS)
    admin = await hub.new_token("root", admin=True)
    for name in ("whoami", "trusted"):
        await eventually(lambda: service_answers(hub, f"{name}/", admin))
    await add_user(hub, "alice", PASSWORD)
    async with logged_in_session(hub, "alice", PASSWORD) as browser:
        # trusted: straight through the hub's OAuth flow back to the service
        async with browser.get(f"{hub.url}/services/trusted/", max_redirects=10) as r:
            assert r.status == 200, await r.text()
            model = json.loads(await r.text())
            hops = [str(h.url) for h in r.history]
        assert model["kind"] == "user" and model["name"] == "alice"
        assert "access:services!service=trusted" in model["scopes"]
        assert any("/hub/api/oauth2/authorize" in h for h in hops) and any("oauth_callback" in h for h in hops)
        # not trusted: a consent page first, then the same
        async with browser.get(f"{hub.url}/services/whoami/") as r:
            page = await r.text()
            assert r.status == 200 and "Authorize access" in page and "JupyterHub service whoami" in page
            consent_url = str(r.url)
        async with browser.post(consent_url, data={"_xsrf": form_xsrf(page)}) as r:
            assert r.status == 200
            assert json.loads(await r.text())["name"] == "alice"
        # the service's own cookie now identifies alice without another trip to the hub
        async with browser.get(f"{hub.url}/services/whoami/", allow_redirects=False) as r:
            assert r.status == 200 and json.loads(await r.text())["name"] == "alice"
    user = await hub.store.get_user("alice")
    clients = {t.client_id for t in await hub.store.list_tokens("user", user.id)}
    assert {"service-whoami", "service-trusted"} <= clients


async def test_external_client_with_absolute_redirect_uri(start_hub):
    service = {"name": "portal", "api_token": EXT_SECRET, "oauth_redirect_uri": "https://portal.example/cb"}
    hub = await start_hub(services=(service,), load_roles=USERS_ACCESS)
    browser = await logged_in(hub)
    try:
        path = authorize_path(client_id="service-portal", redirect_uri="https://portal.example/cb")
        status, text, headers = await browser.get(path)
        assert status == 200 and "form-action 'self' https://portal.example;" in headers["Content-Security-Policy"]
        status, _, headers = await browser.post(path, data={"_xsrf": form_xsrf(text)})
        assert status == 302 and headers["Location"].startswith("https://portal.example/cb?code=")
        bad = authorize_path(client_id="service-portal", redirect_uri="https://portal.example/cb/../evil")
        assert (await browser.get(bad))[0] == 400
    finally:
        await browser.close()
