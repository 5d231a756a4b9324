"""Helpers for tests that run the gateway as a process (``GatewayProcess``) with users' servers behind it.

- ``users_config(tokens, extra)``: a config whose ``api_tokens`` create one user per token, with the
  fake single-user server (tests/backends/fake_server.py) as the spawner command.
- ``start_servers(gw, tokens)``: each user starts their own default server through the REST API;
  returns when all are ready (bounded).
- ``peak_rss_mib(pid)`` / ``rss_mib(pid)``: VmHWM / VmRSS of a process, from /proc.
"""

from __future__ import annotations

import asyncio
import secrets
import time

import aiohttp

from tests.helpers.paths import FAKE_SERVER

FAKE = FAKE_SERVER


def new_tokens(names: list[str]) -> dict[str, str]:
    return {name: secrets.token_hex(20) for name in names}


def users_config(tokens: dict[str, str], extra: str = "") -> str:
    by_token = {token: name for name, token in tokens.items()}
    return (f"c.JupyterHub.api_tokens = {by_token!r}\n"
            f"c.Spawner.cmd = {list(FAKE)!r}\n"
            "c.Spawner.start_timeout = 60\n"
            "c.Gateway.create_first_admin = False\n"
            "c.JupyterHub.log_level = 'WARNING'\n" + extra)


async def start_servers(gw, tokens: dict[str, str], timeout: float = 90) -> None:
    async with aiohttp.ClientSession() as s:
        for name, token in tokens.items():
            async with s.post(f"{gw.url}/hub/api/users/{name}/server",
                              headers={"Authorization": f"token {token}"}) as r:
                assert r.status in (201, 202), await r.text()
        deadline = time.monotonic() + timeout
        for name, token in tokens.items():
            while True:
                async with s.get(f"{gw.url}/hub/api/users/{name}/server",
                                 headers={"Authorization": f"token {token}"}) as r:
                    if r.status == 200 and (await r.json()).get("ready"):
                        break
                assert time.monotonic() < deadline, f"{name}'s server not ready"
                await asyncio.sleep(0.1)


def _status_field(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for {pid}")


def peak_rss_mib(pid: int) -> float:
    return _status_field(pid, "VmHWM")


def rss_mib(pid: int) -> float:
    return _status_field(pid, "VmRSS")
