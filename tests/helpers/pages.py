"""Helpers for page tests: real gateways whose servers are the fake single-user server, a
browser-like HTTP client that logs in through the real login form, users with passwords, a
throw-away system account for PAM.

Vocabulary: a *gate* is a file a fake server waits for before it listens (``FAKE_SERVER_GATE``),
so a test can hold a real start in its pending state and release it when it wants.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from gateway import keys
from gateway.vocab.models import User
from tests.helpers.paths import FAKE_SERVER

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

    async def send(self, method: str, path: str, **kwargs):
        """One request, redirects not followed; (status, body, headers)."""
        kwargs.setdefault("allow_redirects", False)
        async with self.session.request(method, self.base + path, **kwargs) as r:
            return r.status, await r.text(), r.headers

    async def get(self, path: str, **kwargs):
        return await self.send("GET", path, **kwargs)

    async def post(self, path: str, data=None, **kwargs):
        return await self.send("POST", path, data=data, **kwargs)

    async def delete(self, path: str, **kwargs):
        return await self.send("DELETE", path, **kwargs)

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


def fake_server_settings(**overrides) -> dict:
    """Settings overrides for a gateway whose servers are the fast fake server (tests/backends/fake_server.py)."""
    return {"spawner_cmd": FAKE_SERVER, "spawner_start_timeout": 60.0, "spawner_poll_interval": 1.0, **overrides}


def gate_path(gates: Path, user_name: str, server_name: str = "") -> Path:
    return gates / (f"{user_name}-{server_name}" if server_name else user_name)


def gated_environment(gates: Path, *users: str) -> dict:
    """Spawner.environment making the fake servers of ``users`` wait for their gate, the file
    ``gates/<user>[-<server>]``, before they listen: their starts stay pending until ``open_gate``."""
    def gate(spawner) -> str:
        return str(gate_path(gates, spawner.user.name, spawner.name)) if spawner.user.name in users else ""

    return {"FAKE_SERVER_GATE": gate}


def open_gate(gates: Path, user_name: str, server_name: str = "") -> None:
    gate_path(gates, user_name, server_name).touch()


async def wait_for_status(hub, user_name: str, server_name: str, wanted: str | None, timeout: float = 60) -> None:
    """Wait until the server manager reports ``wanted`` (bounded by ``timeout``, never an assertion on time)."""
    manager = hub.app[keys.SERVERS]
    async with asyncio.timeout(timeout):
        while manager.status(user_name, server_name) != wanted:
            entry = manager.entry(user_name, server_name)
            if entry is not None and entry.task is not None and not entry.task.done():
                await manager.wait(entry, 1.0)
            else:
                await asyncio.sleep(0.05)


async def start_page_hub(settings, configure=None):
    """conftest's ``start_hub_with``, kept under the name the page tests use."""
    from tests.helpers.hub import start_hub_with

    return await start_hub_with(settings, configure)


async def add_user(hub, name: str, password: str | None = None, *, admin: bool = False) -> User:
    """A user in the hub's store, with a password for the password authenticator."""
    from gateway.authenticators.builtin import set_user_password

    user = await hub.store.get_user(name) or await hub.new_user(name, admin=admin)
    if password is not None:
        await set_user_password(hub.store, user, password)
    return user


@contextlib.asynccontextmanager
async def logged_in_session(hub, username: str, password: str) -> AsyncIterator[aiohttp.ClientSession]:
    """A browser-like session (its own cookie jar) logged in to ``hub`` through the login form."""
    browser = Browser(hub.url)
    try:
        status, text, _ = await browser.login(username, password)
        assert status == 302, text
        yield browser.session
    finally:
        await browser.close()
