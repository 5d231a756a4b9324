"""Helpers for spawner tests: the REST calls a client makes, code run in
a server's kernel over the kernel websocket through the gateway, and a headless Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
IN_CI = os.environ.get("CI", "").lower() == "true"


def missing(reason: str) -> None:
    """A real component this test needs is missing: a failure in CI, a skip on a workstation."""
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


async def api(session: aiohttp.ClientSession, base: str, method: str, path: str, token: str,
              body: Any = None) -> tuple[int, Any]:
    async with session.request(method, f"{base}/hub/api{path}", json=body,
                               headers={"Authorization": f"token {token}"}) as r:
        text = await r.text()
        try:
            return r.status, json.loads(text) if text else None
        except ValueError:
            return r.status, text


async def wait_server(session: aiohttp.ClientSession, base: str, token: str, user: str, *, ready: bool,
                      server: str = "", timeout: float = 120) -> dict:
    """Poll the user model until the server is ready (or stopped); bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        status, model = await api(session, base, "GET", f"/users/{user}?include_stopped_servers=1", token)
        assert status == 200, model
        entry = (model.get("servers") or {}).get(server)
        if ready and entry and entry.get("ready"):
            return entry
        if not ready and (entry is None or entry.get("stopped")):
            return entry or {}
        assert time.monotonic() < deadline, f"server of {user} never became {'ready' if ready else 'stopped'}: {model}"
        await asyncio.sleep(0.2)


def execute_request(code: str, session: str) -> dict:
    return {
        "header": {"msg_id": uuid.uuid4().hex, "username": "test", "session": session,
                   "msg_type": "execute_request", "version": "5.3",
                   "date": datetime.datetime.now(datetime.timezone.utc).isoformat()},
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False},
    }


async def run_in_kernel(base: str, user: str, token: str, code: str, server: str = "") -> str:
    """Start a kernel in the user's server through the gateway, run ``code``, return its last expression."""
    prefix = f"{base}/user/{user}/" + (f"{server}/" if server else "")
    auth = {"Authorization": f"token {token}"}
    async with aiohttp.ClientSession() as s:
        async with s.post(prefix + "api/kernels", json={"name": "python3"}, headers=auth) as r:
            assert r.status == 201, await r.text()
            kernel = (await r.json())["id"]
        try:
            session = uuid.uuid4().hex
            url = f"{prefix}api/kernels/{kernel}/channels?session_id={session}"
            async with s.ws_connect(url, headers=auth) as ws:
                request = execute_request(code, session)
                await ws.send_str(json.dumps(request))
                for _ in range(300):  # bounded: status messages, then the result
                    msg = await ws.receive(timeout=60)
                    assert msg.type == aiohttp.WSMsgType.TEXT, msg
                    data = json.loads(msg.data)
                    if data.get("parent_header", {}).get("msg_id") != request["header"]["msg_id"]:
                        continue
                    assert data["msg_type"] != "error", data["content"]
                    if data["msg_type"] == "execute_result":
                        return data["content"]["data"]["text/plain"]
                raise AssertionError("no execute_result")
        finally:
            async with s.delete(f"{prefix}api/kernels/{kernel}", headers=auth):
                pass


@contextlib.asynccontextmanager
async def chromium_page() -> AsyncIterator[Any]:
    if not os.path.exists(CHROMIUM):
        missing(f"browser tests need Debian's chromium at {CHROMIUM}")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context()
            context.set_default_timeout(60_000)
            yield await context.new_page()
        finally:
            await browser.close()


async def browser_log_in(page: Any, base: str, name: str, password: str = "any-password") -> None:
    await page.goto(base + "/hub/login")
    await page.get_by_label("Username").fill(name)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_load_state()
