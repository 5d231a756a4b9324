"""Helpers for page tests: a browser-like HTTP client that logs in through the real login form,
and ``StandInServers``, a minimal in-memory stand-in for the server manager (``app[keys.SERVERS]``)
so the pages can be driven before the real ServerManager is wired in. It implements only the
interface the pages call (start/stop/status/list_servers/stop_all); it is not the thing under test.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field

import aiohttp
import pytest

from gateway.errors import ApiError
from gateway.models import Server, User

XSRF_INPUT = re.compile(r'name="_xsrf" value="([^"]+)"')


def form_xsrf(html: str) -> str:
    match = XSRF_INPUT.search(html)
    assert match, "no _xsrf input in the page"
    return match.group(1)


class Browser:
    """An aiohttp session with its own cookie jar, used like a browser against one gateway."""

    def __init__(self, base: str):
        self.base = base
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def close(self) -> None:
        await self.session.close()

    async def get(self, path: str, **kwargs):
        kwargs.setdefault("allow_redirects", False)
        async with self.session.get(self.base + path, **kwargs) as r:
            return r.status, await r.text(), r.headers

    async def post(self, path: str, data=None, **kwargs):
        kwargs.setdefault("allow_redirects", False)
        async with self.session.post(self.base + path, data=data, **kwargs) as r:
            return r.status, await r.text(), r.headers

    def cookie(self, name: str) -> str | None:
        for morsel in self.session.cookie_jar:
            if morsel.key == name:
                return morsel.value
        return None

    async def login(self, username: str, password: str, next_url: str | None = None):
        """GET the form (for its XSRF token), POST it; returns (status, body, headers) of the POST."""
        query = "" if next_url is None else "?next=" + aiohttp.helpers.quote(next_url, safe="")
        status, text, _ = await self.get("/hub/login" + query)
        assert status == 200, text
        return await self.post("/hub/login" + query,
                               data={"username": username, "password": password, "_xsrf": form_xsrf(text)})


@dataclass
class StandInServers:
    """In-memory servers for page tests: start makes a server 'spawn' (or 'ready' if ``instant``)."""

    instant: bool = False
    states: dict[tuple[str, str], str] = field(default_factory=dict)
    records: dict[tuple[str, str], Server] = field(default_factory=dict)
    started: list[tuple[str, str, dict | None]] = field(default_factory=list)
    stopped: list[tuple[str, str]] = field(default_factory=list)

    async def start(self, user: User, server_name: str, user_options: dict | None) -> None:
        key = (user.name, server_name)
        if self.states.get(key):
            raise ApiError(400, f"{user.name} is already running")
        self.records.setdefault(key, Server(id=len(self.records) + 1, user_id=user.id, user_name=user.name,
                                            name=server_name))
        self.states[key] = "ready" if self.instant else "spawn"
        self.started.append((user.name, server_name, user_options))

    async def stop(self, user: User, server_name: str) -> None:
        self.states.pop((user.name, server_name), None)
        self.stopped.append((user.name, server_name))

    def status(self, user_name: str, server_name: str) -> str | None:
        return self.states.get((user_name, server_name))

    async def list_servers(self, user: User) -> list[Server]:
        return [s for (u, _), s in sorted(self.records.items()) if u == user.name]

    async def stop_all(self, user: User) -> None:
        for (u, s) in list(self.states):
            if u == user.name:
                await self.stop(user, s)


_ABSENT = object()


async def start_page_hub(settings, servers=_ABSENT, configure=None):
    """A started gateway like conftest's ``hub``; ``servers`` replaces app[keys.SERVERS] once the app's own
    contexts ran (a StandInServers, or None for "no server manager"); ``configure(app)`` runs before start."""
    from aiohttp import web

    from gateway import keys
    from gateway.app import create_app
    from tests.conftest import Hub

    app = create_app(settings)
    if servers is not _ABSENT:
        async def replace_servers(app):
            if servers is None:
                app.pop(keys.SERVERS, None)
            else:
                app[keys.SERVERS] = servers
            yield

        app.cleanup_ctx.append(replace_servers)
    if configure is not None:
        configure(app)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    return Hub(app, runner, f"http://127.0.0.1:{port}", session)


async def add_user(hub, name: str, password: str | None = None, *, admin: bool = False) -> User:
    """A user in the hub's store, with a password for the password authenticator."""
    from gateway.authenticators import set_user_password

    user = await hub.store.get_user(name) or await hub.new_user(name, admin=admin)
    if password is not None:
        await set_user_password(hub.store, user, password)
    return user


@pytest.fixture
async def page_hub(make_settings):
    """start(servers=..., **settings) -> Hub; servers: a StandInServers, None (no manager) or left out."""
    hubs = []

    async def start(servers=_ABSENT, configure=None, **overrides):
        hub = await start_page_hub(make_settings(**overrides), servers, configure)
        hubs.append(hub)
        return hub

    yield start
    for hub in reversed(hubs):
        await hub.session.close()
        await hub.runner.cleanup()


@pytest.fixture
async def browsers():
    """new(hub) -> Browser with its own cookie jar; all closed at the end."""
    made = []

    def new(hub) -> Browser:
        browser = Browser(hub.url)
        made.append(browser)
        return browser

    yield new
    for browser in made:
        await browser.close()


@pytest.fixture
def system_account():
    """A throw-away system user with a password (root and useradd needed), deleted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("PAM test needs root to create a system account")
    if not (shutil.which("useradd") and shutil.which("chpasswd") and shutil.which("userdel")):
        pytest.skip("PAM test needs useradd, chpasswd and userdel")
    name = "gwpam" + secrets.token_hex(3)
    password = "Pam-" + secrets.token_hex(8)
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
    try:
        subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True)
        yield name, password
    finally:
        subprocess.run(["userdel", name], check=False)


def add_stand_in_tokens_api(app) -> bool:
    """Until the tokens API lands: POST/DELETE /hub/api/users/{name}/tokens to the documented contract
    (POST {note, expires_in, scopes} -> 201 {token, id, ...}; DELETE /tokens/{id} -> 204), over the real
    store and behind the real ``requires_scope`` (cookie + XSRF + JSON rules). Returns False (and adds
    nothing) when the app already has the real API."""
    import time

    from aiohttp import web

    from gateway import keys
    from gateway.auth import requires_scope
    from gateway.errors import json_response

    path = app[keys.SETTINGS].api_prefix + "users/{user_name}/tokens"
    if any(r.canonical == path for r in app.router.resources()):
        return False

    @requires_scope("tokens")
    async def create(request: web.Request) -> web.Response:
        body = await request.json()
        user = await request.app[keys.STORE].get_user(request.match_info["user_name"])
        expires_at = time.time() + body["expires_in"] if body.get("expires_in") else None
        token, plaintext = await request.app[keys.STORE].create_token(
            "user", user.id, note=body.get("note", ""), scopes=body.get("scopes") or ("inherit",),
            expires_at=expires_at)
        return json_response({"token": plaintext, "id": token.api_id, "note": token.note,
                              "expires_at": None}, 201)

    @requires_scope("tokens")
    async def delete(request: web.Request) -> web.Response:
        await request.app[keys.STORE].delete_token(int(request.match_info["token_id"][1:]))
        return web.Response(status=204)

    app.router.add_post(path, create)
    app.router.add_delete(path + "/{token_id}", delete)
    return True
