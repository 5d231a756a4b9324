"""Hooks and options on gateway's own local spawner (c.Spawner.* without any plugin), as JupyterHub
5+/6 runs them: auth_state_hook, group_overrides, apply_user_options, pre_spawn_hook before the
start, post_stop_hook after the stop; environment callables; mem/cpu limits passed on; options_form
on the spawn page. The servers are the fake single-user server, which shows its real environment."""

from __future__ import annotations

import asyncio
import re
import time

import aiohttp
import pytest

from tests.helpers.pages import add_user, logged_in_session

PASSWORD = "correct horse battery"


def recording_hooks(calls: list):
    def auth_state_hook(spawner, auth_state):
        calls.append(("auth_state", spawner.user.name, auth_state))

    def apply_user_options(spawner, options):
        flavor = options.get("flavor", "vanilla")
        if not isinstance(flavor, str) or not flavor.isalpha():
            raise ValueError("flavor must be a word")
        spawner.environment["FLAVOR"] = flavor

    async def pre_spawn_hook(spawner):  # async hooks are awaited
        calls.append(("pre", spawner.user.name, sorted(g.name for g in spawner.user.groups)))
        spawner.environment["PRE_SPAWN"] = f"ran for {spawner.user.name}"
        spawner.args = [*spawner.args, "--ignored-by-the-fake-server"]

    def post_stop_hook(spawner):
        calls.append(("post", spawner.user.name, None))

    return dict(
        spawner_auth_state_hook=auth_state_hook,
        spawner_apply_user_options=apply_user_options,
        spawner_pre_spawn_hook=pre_spawn_hook,
        spawner_post_stop_hook=post_stop_hook,
        spawner_group_overrides={"01-staff": {"groups": ["staff"],
                                              "spawner_override": {"environment": {"STAFF": "yes"},
                                                                   "mem_limit": 2 * 1024 ** 3}}},
        spawner_environment={"FROM_CALLABLE": lambda spawner: f"callable saw {spawner.user.name}"},
        spawner_mem_limit=1024 ** 3,
        spawner_cpu_limit=1.5,
    )


async def server_env(hub, user: str, token: str) -> dict:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{hub.url}/user/{user}/api/env", headers={"Authorization": f"token {token}"}) as r:
            assert r.status == 200, await r.text()
            return await r.json()


async def wait_ready(hub, user: str, token: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        model = (await hub.api("GET", f"/users/{user}/server", token=token)).body
        if model["ready"]:
            return model
        assert model["pending"] and time.monotonic() < deadline, model
        await asyncio.sleep(0.05)


async def test_hooks_run_in_jupyterhubs_order_with_their_effects(page_hub):
    calls: list = []
    hub = await page_hub(**recording_hooks(calls))
    await hub.new_user("ann")
    await hub.new_user("bob")
    await hub.store.create_groups(["staff"], [(await hub.store.get_user("ann")).id])
    ann, bob = await hub.new_token("ann"), await hub.new_token("bob")

    result = await hub.api("POST", "/users/ann/server", token=ann, json_body={"user_options": {"flavor": "mint"}})
    assert result.status in (201, 202), result.text
    await wait_ready(hub, "ann", ann)
    env = await server_env(hub, "ann", ann)
    assert env["FLAVOR"] == "mint"  # apply_user_options
    assert env["PRE_SPAWN"] == "ran for ann"  # pre_spawn_hook
    assert env["FROM_CALLABLE"] == "callable saw ann"
    assert env["STAFF"] == "yes" and env["MEM_LIMIT"] == str(2 * 1024 ** 3)  # ann is in staff
    assert env["CPU_LIMIT"] == "1.5"
    assert calls == [("auth_state", "ann", None), ("pre", "ann", ["staff"])]

    assert (await hub.api("POST", "/users/bob/server", token=bob)).status in (201, 202)
    await wait_ready(hub, "bob", bob)
    env = await server_env(hub, "bob", bob)
    assert "STAFF" not in env and env["MEM_LIMIT"] == str(1024 ** 3) and env["FLAVOR"] == "vanilla"

    assert (await hub.api("DELETE", "/users/ann/server", token=ann)).status in (202, 204)
    deadline = time.monotonic() + 30
    while ("post", "ann", None) not in calls:
        assert time.monotonic() < deadline, calls
        await asyncio.sleep(0.05)


async def test_refused_user_options_are_a_400(page_hub):
    hub = await page_hub(**recording_hooks([]))
    token = await hub.new_token("cid")
    result = await hub.api("POST", "/users/cid/server", token=token, json_body={"user_options": {"flavor": "5; rm"}})
    assert result.status == 400 and "Invalid user options" in result.body["message"]
    model = (await hub.api("GET", "/users/cid/server", token=token)).body
    assert model["stopped"] and not model["pending"]


async def test_options_form_on_the_local_spawner(page_hub):
    form = '<label for="flavor">Flavour</label><input id="flavor" name="flavor"><input type="checkbox" name="cone">'
    hub = await page_hub(authenticator_class="password", spawner_options_form=form, spawner_options_from_form="simple")
    await add_user(hub, "dee", PASSWORD)
    async with logged_in_session(hub, "dee", PASSWORD) as s:
        async with s.get(hub.url + "/hub/spawn") as r:
            page = await r.text()
            assert r.status == 200 and form in page
        action = re.search(r'<form id="spawn_form" enctype="multipart/form-data" method="post" action="([^"]+)"', page)
        assert action and "_xsrf=" in action.group(1)
        data = aiohttp.FormData()
        data.add_field("flavor", "pistachio")
        data.add_field("cone", "on")
        async with s.post(hub.url + action.group(1).replace("&amp;", "&"), data=data, allow_redirects=False) as r:
            assert r.status == 302, await r.text()
    token = await hub.new_token("dee")
    model = await wait_ready(hub, "dee", token)
    assert model["user_options"] == {"flavor": "pistachio", "cone": True}  # 'simple' options_from_form


async def test_shell_cmd_and_disable_user_config(page_hub, tmp_path):
    """LocalProcessSpawner.shell_cmd runs the command line as one argument of that shell (here behind
    `env`, so the server shows it went through it); disable_user_config reaches the server's environment,
    where jupyterhub-singleuser reads it (the config check requires that command; the fake server stands in)."""
    hub = await page_hub(spawner_shell_cmd=("env", "VIA_SHELL_CMD=yes", "sh", "-c"), spawner_disable_user_config=True,
                         spawner_debug=True)
    token = await hub.new_token("ann")
    assert (await hub.api("POST", "/users/ann/server", token=token)).status in (201, 202)
    await wait_ready(hub, "ann", token)
    env = await server_env(hub, "ann", token)
    assert env["VIA_SHELL_CMD"] == "yes" and env["JUPYTERHUB_DISABLE_USER_CONFIG"] == "1"
    assert env["JUPYTERHUB_DEBUG"] == "1"


def test_spawner_keys_at_jupyterhubs_default_are_accepted(tmp_path):
    from gateway.config import ConfigError, load_settings

    config = tmp_path / "jupyterhub_config.py"
    config.write_text("c.LocalProcessSpawner.shell_cmd = ['bash', '-l', '-c']\n"
                      "c.Spawner.cmd = ['jupyterhub-singleuser']\nc.Spawner.disable_user_config = True\n"
                      "c.Spawner.consecutive_failure_limit = 0\nc.LocalProcessSpawner.popen_kwargs = {}\n"
                      "c.Spawner.ip = '127.0.0.1'\nc.Spawner.port = 0\nc.Spawner.oauth_roles = []\n"
                      "c.Spawner.server_token_scopes = []\nc.Spawner.debug = False\n")
    settings = load_settings(str(config))
    assert settings.spawner_shell_cmd == ("bash", "-l", "-c") and settings.spawner_disable_user_config
    config.write_text("c.Spawner.consecutive_failure_limit = 3\nc.Spawner.ip = ''\n")
    with pytest.raises(ConfigError) as refused:
        load_settings(str(config))
    assert refused.value.problems == ["Spawner.consecutive_failure_limit: gateway's local spawner cannot honour this key",
                                      "Spawner.ip: gateway's local spawner cannot honour this key"]
    # plain jupyter-server (the default command) has no way to ignore the user's config
    config.write_text("c.Spawner.disable_user_config = True\n")
    with pytest.raises(ConfigError) as refused:
        load_settings(str(config))
    assert "carried out by jupyterhub-singleuser" in refused.value.problems[0]
