"""A real gateway for tests: in this process on a real loopback port (``Hub``, ``start_hub_with``) or as its
own OS process (``GatewayProcess``), and the free-port picker."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from gateway import keys
from gateway.app import create_app
from gateway.config import Settings
from gateway.wire.frontdoor import listening_site
from tests.helpers.paths import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ApiResult:
    status: int
    body: Any
    headers: Any
    text: str


class Hub:
    """A running gateway and a client session for talking to it."""

    def __init__(self, app: web.Application, runner: web.AppRunner, url: str, session: aiohttp.ClientSession,
                 site: Any = None):
        self.app = app
        self.runner = runner
        self.site = site  # gateway.wire.frontdoor.FrontDoorSite: site.doors counts front-door traffic
        self.url = url  # e.g. http://127.0.0.1:PORT (no base_url)
        self.session = session

    @property
    def settings(self) -> Settings:
        return self.app[keys.SETTINGS]

    @property
    def store(self):
        return self.app[keys.STORE]

    @property
    def api_url(self) -> str:
        return self.url + self.settings.api_prefix.rstrip("/")

    async def api(self, method: str, path: str, *, token: str | None = None, json_body: Any = None,
                  data: Any = None, headers: dict[str, str] | None = None, **kwargs: Any) -> ApiResult:
        """Call /hub/api<path>. ``json_body`` is sent as JSON; ``data`` raw."""
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"token {token}"
        if json_body is not None:
            data = json.dumps(json_body)
            headers.setdefault("Content-Type", "application/json")
        async with self.session.request(method, self.api_url + path, data=data, headers=headers,
                                        allow_redirects=False, **kwargs) as response:
            text = await response.text()
            try:
                body = json.loads(text) if text else None
            except ValueError:
                body = None
            return ApiResult(response.status, body, response.headers, text)

    async def new_user(self, name: str, *, admin: bool = False):
        roles = ("user", "admin") if admin else ("user",)
        return await self.store.create_user(name, admin=admin, roles=roles)

    async def new_token(self, name: str, *, scopes: Sequence[str] = ("inherit",), admin: bool = False,
                        expires_at: float | None = None, service: bool = False) -> str:
        """A token for user (created if missing) or service ``name``."""
        if service:
            owner = await self.store.get_service(name)
            assert owner is not None, f"no service {name}"
            _, token = await self.store.create_token("service", owner.id, scopes=scopes, expires_at=expires_at)
            return token
        user = await self.store.get_user(name) or await self.new_user(name, admin=admin)
        _, token = await self.store.create_token("user", user.id, scopes=scopes, expires_at=expires_at)
        return token


async def start_hub_with(settings: Settings, configure: Callable[[web.Application], Any] | None = None, *,
                         front_door: bool = True, shutdown_timeout: float = 10) -> Hub:
    """A started gateway on the settings' port, listening as the CLI does (front doors unless
    ``front_door=False``, i.e. ``c.Gateway.front_doors = False``: then every request takes aiohttp's path);
    ``configure(app)`` runs before it starts."""
    if not front_door:
        settings = dataclasses.replace(settings, front_doors=False)
    app = create_app(settings)
    if configure is not None:
        configure(app)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout)  # as the CLI
    await runner.setup()
    site = listening_site(runner, "127.0.0.1", settings.listen_port, shutdown_timeout=shutdown_timeout,
                          lane=app.get(keys.FRONT_LANE) if front_door else None, drains=app[keys.FRONT_DRAINS])
    await site.start()
    port = runner.addresses[0][1]
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    return Hub(app, runner, f"http://127.0.0.1:{port}", session, site)


class GatewayProcess:
    """``python -m gateway -f <config>`` as a child process in ``workdir``; stopped by pid only.
    ``config=None``: no config file at all (the README's first run, on the embedded defaults)."""

    def __init__(self, workdir: Path, config: str | None, port: int | None = None, extra_args: Sequence[str] = ()):
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.config_path = self.workdir / "jupyterhub_config.py"
        self.config_file_args = [] if config is None else ["-f", str(self.config_path)]
        if config is not None:
            self.config_path.write_text(config)
        self.extra_args = list(extra_args)
        self.log_path = self.workdir / "gateway.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        return env

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", *self.config_file_args, f"--port={self.port}", "--ip=127.0.0.1",
             *self.extra_args],
            cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, env=self.env(),
        )
        log.close()

    async def wait_ready(self, timeout: float = 30, *, url: str | None = None, ssl: Any = True) -> None:
        """Until ``/hub/health`` answers 200 at ``url`` (default: the plain-http URL); ``ssl``: aiohttp's."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"gateway exited {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
                try:
                    async with session.get((url or self.url) + "/hub/health", ssl=ssl) as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise TimeoutError(f"gateway not ready:\n{self.log_path.read_text()[-3000:]}")

    def run_cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=self.workdir, env=self.env(),
                              capture_output=True, text=True, timeout=timeout)

    def signal(self, sig: int) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 15) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


def stop_recorded_servers(workdir: Path) -> None:
    import json
    import sqlite3

    from gateway.spawners import procs

    for path in workdir.glob("*.sqlite"):
        try:
            with sqlite3.connect(path) as db:
                states = [row[0] for row in db.execute("SELECT state FROM servers WHERE url != ''")]
        except sqlite3.Error:
            continue
        for state in states:
            spawner = json.loads(state or "{}").get("spawner") or {}
            pid, start_time, boot = spawner.get("pid"), spawner.get("start_time"), spawner.get("boot_id", "")
            if pid and start_time and procs.same_process(pid, start_time, boot):
                procs.signal_group(pid, signal.SIGKILL)
