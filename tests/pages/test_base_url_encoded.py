"""A base_url with percent-escapes (``/a%40b/``) or characters such as '@' that clients may send raw or encoded.

The gateway keeps base_url as configured (its *URL form*, in links, redirects and cookie paths, as
JupyterHub does) and routes by its decoded *route form*, since aiohttp matches decoded paths. So
``/a%40b/hub/api/`` and ``/a@b/hub/api/`` both answer, and every Location keeps ``%40``.
A base_url whose decoded form aiohttp cannot route (space, non-ASCII, '%', braces ...) is refused
at config load, exit 2.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from yarl import URL

from gateway.config import ConfigError, load_settings
from gateway.identity.caches import SESSION_COOKIE
from tests.helpers.pages import add_user, form_xsrf
from tests.helpers.paths import ROOT

PASSWORD = "correct horse battery"
BASE = "/a%40b/"  # '@' encoded
RAW = "/a@b/"  # the same prefix as a client may send it


async def get(hub, path: str, **kwargs):
    """GET ``path`` exactly as written (yarl would turn %40 into '@' otherwise); no redirects followed."""
    async with hub.session.get(URL(hub.url + path, encoded=True), allow_redirects=False, **kwargs) as r:
        return r.status, await r.text(), r.headers


@pytest.mark.parametrize("base", [BASE, RAW, "/x%2By/%7Ejh/"])
async def test_hub_api_answers_in_both_spellings(start_hub, base):
    hub = await start_hub(base_url=base)
    decoded = base.replace("%40", "@").replace("%2B", "+").replace("%7E", "~")
    for prefix in {base, decoded, BASE if base == RAW else base}:
        status, text, headers = await get(hub, prefix + "hub/api/")
        if prefix != hub.settings.base_url:  # a navigation in the other spelling: to the configured one
            assert (status, headers["Location"]) == (302, hub.settings.base_url + "hub/api/"), (prefix, text)
            status, text, headers = await get(hub, prefix + "hub/api/", headers={"Authorization": "token x"})
            assert status == 200  # an API client (any Authorization header) is answered in either spelling
            continue
        assert status == 200, (prefix, text)
        assert headers["X-JupyterHub-Version"] and '"version"' in text
    # the error middleware and the JSON shape still apply under the prefix
    status, text, headers = await get(hub, base + "hub/api/no-such-thing")
    assert status == 404 and headers["Content-Type"].startswith("application/json")
    status, _, _ = await get(hub, base + "hub/health")
    assert status == 200


async def test_token_calls_api_user(start_hub):
    hub = await start_hub(base_url=BASE)
    token = await hub.new_token("alice")
    for prefix in (BASE, RAW):
        status, text, _ = await get(hub, prefix + "hub/api/user", headers={"Authorization": f"token {token}"})
        assert status == 200 and '"name": "alice"' in text.replace('":"', '": "'), text
    result = await hub.api("GET", "/user", token=token)  # the fixture's helper, URL built from api_prefix
    assert result.status == 200 and result.body["name"] == "alice"
    status, _, _ = await get(hub, BASE + "hub/api/user")
    assert status == 403  # no credentials: still the API's answer, not a 404


async def test_redirects_keep_the_encoded_form(start_hub):
    hub = await start_hub(base_url=BASE)
    status, _, headers = await get(hub, BASE + "?x=1")
    assert status == 302 and headers["Location"] == BASE + "hub/?x=1"
    status, _, headers = await get(hub, BASE + "hub")
    assert status == 301 and headers["Location"] == BASE + "hub/"
    # the other spelling: first to the configured one, path and query kept
    for path in ("?x=1", "hub", "hub/home?a=%2F", "user/alice/tree/x%20y"):
        status, _, headers = await get(hub, RAW + path)
        assert (status, headers["Location"]) == (302, BASE + path)
    status, _, _ = await get(hub, "/a@b")  # not under base_url at all: not redirected
    assert status == 404
    status, _, headers = await get(hub, BASE + "hub/home")
    assert status == 302 and headers["Location"].startswith(BASE + "hub/login?next=")
    status, _, headers = await get(hub, BASE + "hub/user/alice")
    assert status == 301 and headers["Location"] == BASE + "hub/user/alice/"


async def test_login_page_session_and_pages(page_hub, browsers):
    hub = await page_hub(base_url=BASE)
    await add_user(hub, "alice", PASSWORD)
    browser = browsers(hub)
    status, text, _ = await get_b(browser, BASE + "hub/login")
    assert status == 200 and f'action="{BASE}hub/login"' in text
    assert f"{BASE}hub/static/style.css" in text
    status, css, _ = await get_b(browser, BASE + "hub/static/style.css")
    assert status == 200 and css
    # aiohttp's client jar matches cookie paths against the decoded URL path, so it would not send
    # Path=/a%40b/ cookies (browsers compare the path as written and do): send the jar's cookies by hand
    async with browser.session.post(URL(hub.url + BASE + "hub/login", encoded=True), allow_redirects=False,
                                    cookies=session_cookies(browser),
                                    data={"username": "alice", "password": PASSWORD, "_xsrf": form_xsrf(text)}) as r:
        assert r.status == 302 and r.headers["Location"] == BASE + "hub/spawn"
        cookies = {h.split("=", 1)[0]: h for h in r.headers.getall("Set-Cookie", [])}
    assert f"Path={BASE};" in cookies[SESSION_COOKIE] + ";" and f"Path={BASE}hub/" in cookies["_xsrf"]
    status, text, _ = await get_b(browser, BASE + "hub/home", cookies=session_cookies(browser))
    assert status == 200 and "alice" in text
    # pages reached through the other spelling go to the configured one, where the cookies live
    # (a browser would not send Path=/a%40b/ cookies to /a@b/: login would loop)
    status, _, headers = await get_b(browser, RAW + "hub/home")
    assert (status, headers["Location"]) == (302, BASE + "hub/home")
    # the part after the prefix is taken as sent
    status, _, headers = await get_b(browser, BASE + "hub/user-redirect/tree/x%20y?q=1",
                                     cookies=session_cookies(browser))
    assert status == 302, headers
    location = headers["Location"]
    assert location.startswith(BASE + "hub/spawn/alice?next=")
    assert "%2Fa%2540b%2Fuser%2Falice%2Ftree%2Fx%2520y%3Fq%3D1" in location, location


def session_cookies(browser) -> dict[str, str]:
    return {m.key: m.value for m in browser.session.cookie_jar}


async def get_b(browser, path: str, **kwargs):
    async with browser.session.get(URL(browser.base + path, encoded=True), allow_redirects=False, **kwargs) as r:
        return r.status, await r.text(), r.headers


@pytest.mark.parametrize("bad", ["/a b/", "/%C3%A9/", "/a%25b/", "/a%2Fb/", "/a%zz/", "/x/%2e%2e/", "/{x}/"])
def test_unroutable_base_url_is_a_config_error(bad):
    with pytest.raises(ConfigError) as info:
        load_settings(None, {"JupyterHub": {"base_url": bad}})
    assert "JupyterHub.base_url" in str(info.value)


def test_unroutable_base_url_exits_2(tmp_path):
    config = tmp_path / "jupyterhub_config.py"
    config.write_text("c = get_config()\nc.JupyterHub.base_url = '/caf%C3%A9/'\n")
    result = subprocess.run([sys.executable, "-m", "gateway", "-f", str(config)], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2
    assert "JupyterHub.base_url" in result.stderr and "cannot route" in result.stderr
    assert not (tmp_path / "gateway.sqlite").exists()  # nothing started


def test_routable_base_urls_are_kept_verbatim():
    for value in ("/a%40b/", "/a@b/", "jh", "/x;y=(1)/~z/"):
        settings = load_settings(None, {"JupyterHub": {"base_url": value}})
        assert settings.base_url == (value if value != "jh" else "/jh/")
    settings = load_settings(None, {"JupyterHub": {"base_url": "/a%40b/"}})
    assert (settings.base_route, settings.hub_route, settings.api_route) == ("/a@b/", "/a@b/hub/", "/a@b/hub/api/")


async def test_proxy_under_an_encoded_base_url(start_hub):
    """A user's server under ``/a%40b/user/<name>/``: reached with a token on both of the gateway's
    paths (a front door's lean path for a plain request, aiohttp's for a chunked one), refused
    without one, and the not-running answers keep the configured spelling."""
    from tests.helpers.wire import raw_exchange, status_of
    from tests.proxy.test_proxy_integrated import start_server

    hub = await start_hub(base_url=BASE)
    token = await hub.new_token("kim")
    await start_server(hub, "kim", token)
    port = int(hub.url.rsplit(":", 1)[1])
    served = hub.site.doors.served
    plain = f"GET {BASE}user/kim/api/status HTTP/1.1\r\nHost: h\r\nAuthorization: token {token}\r\n\r\n"
    raw = await raw_exchange(port, plain.encode())
    assert status_of(raw) == 200 and b'"user": "kim"' in raw.replace(b'"user":"kim"', b'"user": "kim"')
    assert hub.site.doors.served == served + 1
    chunked = (f"POST {BASE}user/kim/echo HTTP/1.1\r\nHost: h\r\nAuthorization: token {token}\r\n"
               "Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n")
    assert status_of(await raw_exchange(port, chunked.encode())) == 200
    assert status_of(await raw_exchange(port, f"GET {BASE}user/kim/api/status HTTP/1.1\r\nHost: h\r\n\r\n".encode())) == 403
    result = await hub.api("DELETE", "/users/kim/server", token=token)
    assert result.status in (202, 204), result.text
    for _ in range(100):  # bounded: until the stop is done
        if (await hub.api("GET", "/users/kim", token=token)).body["servers"] == {}:
            break
        await asyncio.sleep(0.1)
    status, text, headers = await get(hub, f"{BASE}user/kim/api/status", headers={"Authorization": f"token {token}"})
    assert status == 424 and f"{BASE}hub/spawn/kim" in text, text
    for spelling in (BASE, RAW):
        status, _, headers = await get(hub, f"{spelling}user/kim/tree?x=1",
                                       headers={"Authorization": f"token {token}", "Accept": "text/html"})
        assert (status, headers["Location"]) == (302, f"{BASE}hub/user/kim/tree?x=1")
