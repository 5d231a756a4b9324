"""A spawner written in jupyterhub_config.py: a LocalProcessSpawner subclass with an options form,
options_from_form, a get_env override, pre_spawn_hook and post_stop_hook, run by a real gateway
process. The servers are real jupyterhub-singleuser processes; the tests read the environment the
server really has by running code in its kernel through the gateway.

The class derives from SimpleLocalProcessSpawner (JupyterHub's LocalProcessSpawner without the
switch to the user's Unix account): on this machine kind the Python interpreter lives under /root
(pyenv), which no other account may execute, so a server run as a fresh account could not start.
Everything the subclass adds (form, options, get_env, hooks) is the same code either way.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.helpers.pages import form_xsrf
from tests.helpers.spawn import api, browser_log_in, chromium_page, run_in_kernel, wait_server

ADMIN_TOKEN = "spawncore-admin-token-0123456789"
SINGLEUSER = str(Path(sys.executable).parent / "jupyterhub-singleuser")

CONFIG = '''
c = get_config()  # noqa
import json, pathlib
from jupyterhub.spawner import SimpleLocalProcessSpawner
from traitlets import default

HOOK_LOG = pathlib.Path({hook_log!r})
FORM = """
<label for="flavor">Flavour</label>
<select id="flavor" name="flavor"><option value="vanilla">Vanilla</option><option value="mint">Mint</option></select>
<label for="scoops">Scoops</label> <input id="scoops" name="scoops" value="1">
"""


class IceCreamSpawner(SimpleLocalProcessSpawner):
    @default("options_form")
    def _default_options_form(self):
        return FORM

    def options_from_form(self, form_data):
        return {{"flavor": form_data["flavor"][0], "scoops": int(form_data.get("scoops", ["1"])[0])}}

    def get_env(self):
        env = super().get_env()
        options = self.user_options
        env["ICE_CREAM"] = "{{}}x{{}}".format(options.get("flavor", "none"), options.get("scoops", 0))
        return env


def pre_spawn(spawner):
    with HOOK_LOG.open("a") as f:
        f.write(json.dumps({{"hook": "pre", "user": spawner.user.name, "options": spawner.user_options}}) + "\\n")
    spawner.environment["PRE_SPAWN_HOOK"] = "ran for " + spawner.user.name


def post_stop(spawner):
    with HOOK_LOG.open("a") as f:
        f.write(json.dumps({{"hook": "post", "user": spawner.user.name}}) + "\\n")


c.JupyterHub.spawner_class = IceCreamSpawner
c.Spawner.pre_spawn_hook = pre_spawn
c.Spawner.post_stop_hook = post_stop
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.args = ["--allow-root"]  # the test gateway runs as root
c.SimpleLocalProcessSpawner.home_dir_template = {homes!r} + "/{{username}}"
c.Spawner.environment = {{"FROM_CALLABLE": lambda spawner: "callable saw " + spawner.user.name}}
c.Spawner.mem_limit = "1G"
c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.api_tokens = {{{admin_token!r}: "admin"}}
c.Authenticator.admin_users = {{"admin"}}
'''

ENV_PROBE = ("import os, json; json.dumps({k: os.environ.get(k) for k in "
             "('ICE_CREAM', 'PRE_SPAWN_HOOK', 'FROM_CALLABLE', 'MEM_LIMIT', 'JUPYTERHUB_API_URL', "
             "'JUPYTERHUB_USER', 'JUPYTERHUB_SERVICE_PREFIX', 'HOME')})")


@pytest.fixture
def account():
    return "alice"


@pytest.fixture
async def gateway(gateway_process, tmp_path):
    hook_log = tmp_path / "hooks.jsonl"
    homes = tmp_path / "homes"
    homes.mkdir()
    proc = gateway_process(CONFIG.format(hook_log=str(hook_log), singleuser=SINGLEUSER, admin_token=ADMIN_TOKEN,
                                         homes=str(homes)))
    proc.start()
    await proc.wait_ready()
    proc.hook_log = hook_log
    return proc


def hook_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def user_token(session, base: str, user: str) -> str:
    status, body = await api(session, base, "POST", f"/users/{user}/tokens", ADMIN_TOKEN, {"note": "test"})
    assert status == 201, body
    return body["token"]


async def test_user_options_environment_and_hooks_through_the_api(gateway, account):
    base = gateway.url
    async with aiohttp.ClientSession() as s:
        assert (await api(s, base, "POST", f"/users/{account}", ADMIN_TOKEN))[0] == 201
        status, body = await api(s, base, "POST", f"/users/{account}/server", ADMIN_TOKEN,
                                 {"user_options": {"flavor": "mint", "scoops": 2}})
        assert status in (201, 202), body
        model = await wait_server(s, base, ADMIN_TOKEN, account, ready=True)
        assert model["user_options"] == {"flavor": "mint", "scoops": 2}
        # LocalProcessSpawner's state (its pid) is shown to holders of admin:server_state (admin)
        status, server = await api(s, base, "GET", f"/users/{account}/server", ADMIN_TOKEN)
        assert status == 200 and isinstance(server.get("state", {}).get("pid"), int), server

        token = await user_token(s, base, account)
        env = json.loads((await run_in_kernel(base, account, token, ENV_PROBE)).strip("'"))
        assert env["HOME"] == str(gateway.workdir / "homes" / account)  # SimpleLocalProcessSpawner's home_dir
        assert env["ICE_CREAM"] == "mintx2"  # get_env override reading user_options
        assert env["PRE_SPAWN_HOOK"] == f"ran for {account}"  # set by the hook before start
        assert env["FROM_CALLABLE"] == f"callable saw {account}"
        assert env["MEM_LIMIT"] == str(1024 ** 3)
        assert env["JUPYTERHUB_USER"] == account and env["JUPYTERHUB_SERVICE_PREFIX"] == f"/user/{account}/"
        assert env["JUPYTERHUB_API_URL"] == f"{base}/hub/api"
        assert hook_lines(gateway.hook_log) == [
            {"hook": "pre", "user": account, "options": {"flavor": "mint", "scoops": 2}}]

        status, _ = await api(s, base, "DELETE", f"/users/{account}/server", ADMIN_TOKEN)
        assert status in (202, 204)
        stopped = await wait_server(s, base, ADMIN_TOKEN, account, ready=False)
        assert stopped["user_options"] == {"flavor": "mint", "scoops": 2}  # kept after the stop, as JupyterHub
        assert hook_lines(gateway.hook_log)[-1] == {"hook": "post", "user": account}
        # the proxy no longer forwards to it
        async with s.get(f"{base}/user/{account}/api/status", headers={"Authorization": f"token {token}"},
                         allow_redirects=False) as r:
            assert r.status in (302, 424), r.status


async def test_options_form_in_chromium(gateway, account):
    base = gateway.url
    async with chromium_page() as page:
        await browser_log_in(page, base, account)
        await page.goto(base + "/hub/spawn")
        # JupyterHub's form: multipart, XSRF token in the action URL
        form = page.locator("form#spawn_form")
        assert await form.get_attribute("enctype") == "multipart/form-data"
        assert "_xsrf=" in (await form.get_attribute("action") or "")
        await page.get_by_label("Flavour").select_option("mint")
        await page.get_by_label("Scoops").fill("3")
        await page.get_by_role("button", name="Start").click()
        await page.wait_for_url(f"**/user/{account}/**", timeout=120_000)
    async with aiohttp.ClientSession() as s:
        model = await wait_server(s, base, ADMIN_TOKEN, account, ready=True)
        assert model["user_options"] == {"flavor": "mint", "scoops": 3}  # options_from_form's result
        token = await user_token(s, base, account)
        env = json.loads((await run_in_kernel(base, account, token, ENV_PROBE)).strip("'"))
        assert env["ICE_CREAM"] == "mintx3"
        await api(s, base, "DELETE", f"/users/{account}/server", ADMIN_TOKEN)
        await wait_server(s, base, ADMIN_TOKEN, account, ready=False)


async def test_form_post_without_xsrf_is_refused(gateway, account):
    base = gateway.url
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.get(base + "/hub/login") as r:
            login_xsrf = form_xsrf(await r.text())
        async with s.post(base + "/hub/login", data={"username": account, "password": "x", "_xsrf": login_xsrf},
                          allow_redirects=False) as r:
            assert r.status == 302, r.status
        async with s.get(base + "/hub/spawn") as r:
            assert r.status == 200 and 'name="flavor"' in await r.text()
        for query in ("", "?_xsrf=not-the-token"):
            data = aiohttp.FormData()
            data.add_field("flavor", "mint")
            async with s.post(base + "/hub/spawn" + query, data=data, allow_redirects=False) as r:
                assert r.status == 403, query
        status, model = await api(s, base, "GET", f"/users/{account}", ADMIN_TOKEN)
        assert status == 200 and model["servers"] == {}  # nothing started
