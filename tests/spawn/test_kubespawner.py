"""kubespawner.KubeSpawner loaded from a config with a profile_list. There is no Kubernetes cluster
here, and these tests never pretend there is one: the kubeconfig names an API server address where
nothing listens, and no test starts a pod. What is run for real: gateway loads the class by its
import path with its c.KubeSpawner.* config, shows its profile form on the spawn page in
Chromium, and KubeSpawner itself turns the chosen profile into the pod manifest it would submit
(load_user_options + get_pod_manifest, the first steps of its own start)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from gateway.config import load_settings
from gateway.spawners.base import ServerSpec, SpawnerOptions
from gateway.spawners.plugin import PluginContext, plugin_spawner_class
from tests.helpers.spawn import api, browser_log_in, chromium_page

ADMIN = "kube-admin-token-0123456789abcdef"
KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- name: none
  cluster: {server: "https://127.0.0.1:9"}
users:
- name: none
  user: {token: not-a-real-token}
contexts:
- name: none
  context: {cluster: none, user: none, namespace: jhub}
current-context: none
"""
CONFIG = f'''
c = get_config()  # noqa
c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.api_tokens = {{{ADMIN!r}: "admin"}}
c.Authenticator.admin_users = {{"admin"}}
c.KubeSpawner.namespace = "jhub"
c.KubeSpawner.profile_list = [
    {{"display_name": "Small notebook", "slug": "small", "default": True,
      "kubespawner_override": {{"image": "quay.io/jupyter/base-notebook:2024-12-02", "cpu_limit": 1,
                               "mem_limit": "1G", "environment": {{"PROFILE": "small"}}}}}},
    {{"display_name": "Large scipy", "slug": "large",
      "kubespawner_override": {{"image": "quay.io/jupyter/scipy-notebook:2024-12-02", "cpu_limit": 4,
                               "cpu_guarantee": 2, "mem_limit": "8G", "mem_guarantee": "4G",
                               "environment": {{"PROFILE": "large"}}}}}},
]
'''


@pytest.fixture
def kube_config(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    monkeypatch.setenv("KUBECONFIG", str(path))
    config = tmp_path / "kube_config.py"
    config.write_text(CONFIG)
    return config


async def pod_manifest(config: Path, user_options: dict) -> dict:
    """KubeSpawner, built by gateway's adapter from the config file, makes its pod manifest."""
    settings = load_settings(str(config))
    assert settings.spawner_class == "plugin" and settings.spawner_plugin.__name__ == "KubeSpawner"
    cls = plugin_spawner_class(settings.spawner_plugin, settings.plugin_config, PluginContext(store=None))
    spec = ServerSpec(user="kim", base_url="/", api_token="server-token", route_secret="route-secret",
                      hub_api_url="http://10.0.0.5:8000/hub/api", user_options=user_options)
    adapter = cls(SpawnerOptions(), spec)
    await adapter.prepare(None)
    await adapter.plugin.load_user_options()  # KubeSpawner's own first step of start()
    manifest = await adapter.plugin.get_pod_manifest()
    return manifest.to_dict()


async def test_profile_form_on_the_spawn_page_and_the_chosen_profiles_manifest(gateway_process, kube_config):
    proc = gateway_process(kube_config.read_text())
    proc.start()
    await proc.wait_ready()
    async with aiohttp.ClientSession() as s:
        assert (await api(s, proc.url, "POST", "/users/kim", ADMIN))[0] == 201
    async with chromium_page() as page:
        await browser_log_in(page, proc.url, "kim")
        await page.goto(proc.url + "/hub/spawn")
        form = page.locator("form#spawn_form")
        await form.get_by_text("Small notebook").wait_for()
        await form.get_by_text("Large scipy").wait_for()
        await page.locator("input[name=profile][value=large]").check()
        # what the browser would post: the form's fields as a dict of lists, as options_from_form gets them
        form_data = await page.evaluate("""() => {
            const data = {};
            for (const [k, v] of new FormData(document.getElementById('spawn_form'))) (data[k] ||= []).push(v);
            return data;
        }""")
    assert form_data["profile"] == ["large"]

    settings = load_settings(str(kube_config))
    cls = plugin_spawner_class(settings.spawner_plugin, settings.plugin_config, PluginContext(store=None))
    adapter = cls(SpawnerOptions(), ServerSpec(user="kim", api_token="t"))
    user_options = adapter.options_from_form(form_data)
    assert user_options["profile"] == "large"

    manifest = await pod_manifest(kube_config, user_options)
    container = manifest["spec"]["containers"][0]
    assert container["image"] == "quay.io/jupyter/scipy-notebook:2024-12-02"
    assert container["resources"]["limits"] == {"cpu": 4.0, "memory": 8 * 1024 ** 3}
    assert container["resources"]["requests"] == {"cpu": 2.0, "memory": 4 * 1024 ** 3}
    env = {e["name"]: e["value"] for e in container["env"] if e.get("value") is not None}
    assert env["PROFILE"] == "large"
    assert env["JUPYTERHUB_USER"] == "kim" and env["JUPYTERHUB_API_URL"] == "http://10.0.0.5:8000/hub/api"
    assert env["JUPYTERHUB_SERVICE_PREFIX"] == "/user/kim/"
    assert env["JUPYTER_TOKEN"] == "route-secret"  # what the proxy will present
    assert manifest["metadata"]["namespace"] == "jhub" or manifest["metadata"].get("namespace") is None

    small = await pod_manifest(kube_config, {})  # no choice: the default profile
    assert small["spec"]["containers"][0]["image"] == "quay.io/jupyter/base-notebook:2024-12-02"
