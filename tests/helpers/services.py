"""Helpers for service tests: service specs for the test services, and bounded waits."""

from __future__ import annotations

import asyncio
import sys
import time

from yarl import URL

from tests.helpers.hub import free_port
from tests.helpers.paths import BACKENDS

ENV_SERVICE = str(BACKENDS / "env_service.py")
WHOAMI_SERVICE = str(BACKENDS / "whoami_oauth.py")


def managed(name: str, script: str, *, url: bool = True, **extra) -> dict:
    """A managed-service spec running ``script`` with this interpreter, on a free port if ``url``."""
    spec = {"name": name, "command": [sys.executable, script], **extra}
    if url:
        spec["url"] = f"http://127.0.0.1:{free_port()}"
    return spec


async def eventually(check, *, timeout: float = 30.0, interval: float = 0.1):
    """Poll ``check`` (sync or async) until it returns a truthy value; return it (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout} s")
        await asyncio.sleep(interval)


async def service_answers(hub, path: str, token: str, status: int = 200) -> bool:
    """True once GET <base>services/<path> through the gateway answers ``status``."""
    async with hub.session.get(URL(f"{hub.url}{hub.settings.base_url}services/{path}", encoded=True),
                               headers={"Authorization": f"token {token}"}, allow_redirects=False) as r:
        await r.read()
        return r.status == status
