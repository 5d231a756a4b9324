"""A gateway restart finds a plugin's server again: the plugin's get_state() was stored, a new
gateway process builds the plugin, load_state()s it, poll()s it, and routes to it again."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

import aiohttp

from tests.helpers.paths import BACKENDS
from tests.helpers.spawn import api, wait_server

ADMIN = "restart-admin-token-0123456789"
FAKE_SERVER = str(BACKENDS / "fake_server.py")

CONFIG = f'''
c = get_config()  # noqa
from jupyterhub.spawner import SimpleLocalProcessSpawner


class KeptSpawner(SimpleLocalProcessSpawner):
    """An operator's class: the state JupyterHub's LocalProcessSpawner keeps is its pid."""


c.JupyterHub.spawner_class = KeptSpawner
c.Spawner.cmd = [{sys.executable!r}, {FAKE_SERVER!r}]
c.SimpleLocalProcessSpawner.home_dir_template = "{{tmp}}/{{{{username}}}}"
c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.api_tokens = {{{ADMIN!r}: "admin"}}
c.Authenticator.admin_users = {{"admin"}}
'''


async def test_restart_finds_the_plugins_server_again(gateway_process, tmp_path):
    proc = gateway_process(CONFIG.replace("{tmp}", str(tmp_path)))
    proc.start()
    await proc.wait_ready()
    pid = 0
    try:
        async with aiohttp.ClientSession() as s:
            assert (await api(s, proc.url, "POST", "/users/gil", ADMIN))[0] == 201
            assert (await api(s, proc.url, "POST", "/users/gil/server", ADMIN))[0] in (201, 202)
            await wait_server(s, proc.url, ADMIN, "gil", ready=True)
            status, token = await api(s, proc.url, "POST", "/users/gil/tokens", ADMIN, {})
            token = token["token"]
            pid = (await api(s, proc.url, "GET", "/users/gil/server", ADMIN))[1]["state"]["pid"]
            async with s.get(f"{proc.url}/user/gil/api/status", headers={"Authorization": f"token {token}"}) as r:
                assert r.status == 200 and (await r.json())["pid"] == pid

        assert proc.stop() == 0  # the server keeps running (cleanup_servers is off)
        os.kill(pid, 0)
        proc.start()
        await proc.wait_ready()

        async with aiohttp.ClientSession() as s:
            model = await wait_server(s, proc.url, ADMIN, "gil", ready=True, timeout=5)
            assert model["state"] == {"pid": pid}
            async with s.get(f"{proc.url}/user/gil/api/status", headers={"Authorization": f"token {token}"}) as r:
                assert r.status == 200 and (await r.json())["pid"] == pid  # the same server, proxied again
            assert (await api(s, proc.url, "DELETE", "/users/gil/server", ADMIN))[0] in (202, 204)
            await wait_server(s, proc.url, ADMIN, "gil", ready=False)
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    finally:
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
