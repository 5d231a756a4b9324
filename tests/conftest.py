"""Shared fixtures: a real gateway on a real loopback port with a real sqlite file.

- ``make_settings(**overrides)``: Settings whose state lives in the test's tmp_path.
- ``hub``: a started gateway (in this process, real sockets) with the default settings; ``start_hub(**overrides)``
  starts one with other settings. Each has ``.url``, ``.app``, ``.store``, ``.settings`` and helpers
  ``api()`` (JSON API call), ``new_user()`` and ``new_token()``.
- ``GatewayProcess``: the gateway as a separate OS process (``python -m gateway``), for restart and kill tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway import keys
from gateway.app import create_app
from gateway.config import Settings
from gateway.frontdoor import listening_site

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def make_settings(tmp_path: Path):
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = dict(
            bind_url=f"http://127.0.0.1:{free_port()}",
            db_url=f"sqlite:///{tmp_path / 'gateway.sqlite'}",
            cookie_secret_file=str(tmp_path / "gateway_cookie_secret"),
            data_dir=str(tmp_path / "data"),
            activity_resolution=1,
            # test hubs stop the servers they started; tests of survival across restarts turn this off
            cleanup_servers=True,
            # the fast fake single-user server; tests of jupyter-server itself ask for it (spawner_cmd=())
            spawner_cmd=(sys.executable, str(ROOT / "tests" / "fake_server.py")),
            create_first_admin=False,  # tests make their own users; the first-admin start is tested on its own
        )
        values.update(overrides)
        return Settings(**values)

    return make


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
        self.site = site  # gateway.frontdoor.FrontDoorSite: site.doors counts front-door traffic
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
    ``front_door=False``: then every request takes aiohttp's path); ``configure(app)`` runs before it starts."""
    app = create_app(settings)
    if configure is not None:
        configure(app)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout)  # as the CLI
    await runner.setup()
    site = listening_site(runner, "127.0.0.1", settings.listen_port, shutdown_timeout=shutdown_timeout,
                          front_door=front_door)
    await site.start()
    port = runner.addresses[0][1]
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    return Hub(app, runner, f"http://127.0.0.1:{port}", session, site)


@pytest.fixture
async def start_hub(make_settings) -> AsyncIterator:
    hubs: list[Hub] = []

    async def start(configure: Callable[[web.Application], Any] | None = None, **overrides: Any) -> Hub:
        hub = await start_hub_with(make_settings(**overrides), configure)
        hubs.append(hub)
        return hub

    yield start
    for hub in reversed(hubs):
        await hub.session.close()
        await hub.runner.cleanup()


@pytest.fixture
async def hub(start_hub) -> Hub:
    return await start_hub()


class GatewayProcess:
    """``python -m gateway -f <config>`` as a child process in ``workdir``; stopped by pid only."""

    def __init__(self, workdir: Path, config: str, port: int | None = None, extra_args: Sequence[str] = ()):
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.config_path = self.workdir / "jupyterhub_config.py"
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
            [sys.executable, "-m", "gateway", "-f", str(self.config_path), f"--port={self.port}", "--ip=127.0.0.1",
             *self.extra_args],
            cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, env=self.env(),
        )
        log.close()

    async def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"gateway exited {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
                try:
                    async with session.get(self.url + "/hub/health") as r:
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


@pytest.fixture
def gateway_process(tmp_path: Path):
    processes: list[GatewayProcess] = []

    def make(config: str, **kwargs: Any) -> GatewayProcess:
        proc = GatewayProcess(tmp_path, config, **kwargs)
        processes.append(proc)
        return proc

    yield make
    for proc in processes:
        proc.stop()
    # Gateways leave user servers running by design (cleanup_servers is off): end the ones these
    # tests started, found by the pids the gateway recorded, so test runs leave no processes behind.
    for db in {p.workdir for p in processes}:
        stop_recorded_servers(db)


def stop_recorded_servers(workdir: Path) -> None:
    import json
    import sqlite3

    from gateway import procs

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


# ---------------------------------------------------------------- proxy-core fixtures (echo backend, harness)

from gateway.httpstrict import server_handler_args  # noqa: E402
from gateway.routing import Route, user_prefix  # noqa: E402
from tests.proxy_harness import Events, make_app  # noqa: E402

ATTACKER = "sxxxx"  # a strict prefix of the victim's name (security-cases A3)
VICTIM = "sxxxxv"
TOKENS = {"tok-a": ATTACKER, "tok-v": VICTIM}
SECRETS = {ATTACKER: "secret-of-attacker", VICTIM: "secret-of-victim"}


class Process:
    """A child process that prints ``ready`` once it serves; killed by pid."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
            text=True,
        )
        line = self.proc.stdout.readline()  # bounded: the child exits or says ready
        if line.strip() != "ready":
            self.kill()
            raise RuntimeError(f"{args[1:]} did not start: {line!r}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


def start_echo_backend(port: int) -> Process:
    return Process([sys.executable, str(ROOT / "tests" / "echo_backend.py"), str(port)])


@pytest.fixture(scope="module")
def echo_port():
    port = free_port()
    proc = start_echo_backend(port)
    yield port
    proc.kill()


def user_routes(base_url: str, backend_port: int) -> list[Route]:
    target = f"http://127.0.0.1:{backend_port}"
    return [
        Route(user_prefix(base_url, ATTACKER), target, "user", ATTACKER, "", None, SECRETS[ATTACKER]),
        Route(user_prefix(base_url, VICTIM), target, "user", VICTIM, "", None, SECRETS[VICTIM]),
        Route(user_prefix(base_url, VICTIM, "nb1"), target, "user", VICTIM, "nb1", None, SECRETS[VICTIM] + "-nb1"),
    ]


@pytest.fixture(params=["/", "/a%40b/"], ids=["base-root", "base-odd"])
def base_url(request) -> str:
    return request.param


@pytest.fixture
async def gateway(aiohttp_server, echo_port, base_url):
    """(server, events, base_url) for a gateway in front of the echo backend."""
    events = Events()
    app = make_app(
        routes=user_routes(base_url, echo_port),
        tokens=TOKENS,
        base_url=base_url,
        events=events,
        read_timeout=3.0,
        max_body_size=1024**3,
    )
    server = await aiohttp_server(app, **server_handler_args(keepalive_timeout=2.0))
    return server, events, base_url


def _complete_responses(data: bytes) -> int:
    """How many complete Content-Length-framed responses ``data`` holds."""
    count = 0
    while True:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return count
        head = data[:end].lower()
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line.startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        if len(data) < end + 4 + length:
            return count
        data = data[end + 4 + length :]
        count += 1


async def raw_exchange(port: int, data: bytes, *, limit: float = 10.0, responses: int | None = 1) -> bytes:
    """Send raw bytes; return what came back once ``responses`` complete
    responses arrived (None: until the server closes), or after ``limit``
    seconds (a bound, not an assertion)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        received = b""
        try:
            async with asyncio.timeout(limit):
                while chunk := await reader.read(65536):
                    received += chunk
                    if responses is not None and _complete_responses(received) >= responses:
                        break
        except (TimeoutError, ConnectionResetError):
            pass
        return received
    finally:
        writer.close()


def status_of(response: bytes) -> int:
    """Status code of the first response in raw bytes (0 if none)."""
    if not response.startswith(b"HTTP/1."):
        return 0
    return int(response.split(b" ", 2)[1])
