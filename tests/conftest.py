"""The one fixture world. Helpers (plain functions and classes) live in ``tests/helpers/``; programs the tests
run as processes (the fake single-user server, the echo backend, services) in ``tests/backends/``.

- ``make_settings(**overrides)``: Settings whose state lives in the test's tmp_path.
- ``hub``: a started gateway (in this process, real sockets) with the default settings; ``start_hub(**overrides)``
  starts one with other settings. Each has ``.url``, ``.app``, ``.store``, ``.settings`` and helpers
  ``api()`` (JSON API call), ``new_user()`` and ``new_token()``.
- ``gateway_process``: the gateway as a separate OS process (``python -m gateway``), for restart and kill tests.
- ``page_hub``: a started gateway whose servers are the fake server; ``browsers``: browser-like HTTP clients;
  ``chromium``: Debian's Chromium through Playwright (pages and journeys in tests/helpers/chromium.py);
  ``system_account``: a throw-away system user for PAM.
- ``gateway``: the proxy harness in front of the echo backend (``echo_port``), at each ``base_url``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.config import Settings
from gateway.wire.httpstrict import server_handler_args
from tests.helpers.chromium import CHROMIUM, CHROMIUM_ARGS, require_chromium
from tests.helpers.hub import GatewayProcess, Hub, free_port, start_hub_with, stop_recorded_servers
from tests.helpers.pages import Browser, fake_server_settings
from tests.helpers.paths import BACKENDS
from tests.helpers.proxy_harness import Events, make_app
from tests.helpers.wire import TOKENS, start_echo_backend, user_routes


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
            spawner_cmd=(sys.executable, str(BACKENDS / "fake_server.py")),
            create_first_admin=False,  # tests make their own users; the first-admin start is tested on its own
        )
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def front_door() -> bool:
    """Whether ``start_hub``'s gateways listen with front doors (the default). ``tests/proxy/``
    overrides it with both values: each proxy answer is checked on the front-door lane and on
    aiohttp's path."""
    return True


@pytest.fixture
async def start_hub(make_settings, front_door) -> AsyncIterator:
    hubs: list[Hub] = []

    async def start(configure: Callable[[web.Application], Any] | None = None, **overrides: Any) -> Hub:
        hub = await start_hub_with(make_settings(**overrides), configure, front_door=front_door)
        hubs.append(hub)
        return hub

    yield start
    for hub in reversed(hubs):
        await hub.session.close()
        await hub.runner.cleanup()


@pytest.fixture
async def hub(start_hub) -> Hub:
    return await start_hub()


@pytest.fixture
def gateway_process(tmp_path: Path):
    processes: list[GatewayProcess] = []

    def make(config: str | None, **kwargs: Any) -> GatewayProcess:
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


@pytest.fixture(scope="module")
def echo_port():
    port = free_port()
    proc = start_echo_backend(port)
    yield port
    proc.kill()


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


@pytest.fixture
async def page_hub(start_hub):
    """start(configure=None, **settings) -> Hub: a real gateway whose servers are the fake server
    unless ``spawner_cmd`` says otherwise (``spawner_cmd=()``: jupyter-server)."""

    async def start(configure=None, **overrides):
        return await start_hub(configure, **fake_server_settings(**overrides))

    return start


@pytest.fixture
async def chromium():
    """Debian's Chromium, launched by Playwright for one test; fails (never skips) under CI=true if missing."""
    require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


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
