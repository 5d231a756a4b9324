"""c.JupyterHub.spawner_class and plugin config sections, as traitlets hands them to a plugin."""

from __future__ import annotations

import subprocess
import sys

import pytest
from jupyterhub.spawner import LocalProcessSpawner

from gateway.config import ConfigError, load_settings
from gateway.spawners.base import ServerSpec, SpawnerOptions
from gateway.spawners.plugin import PluginContext, load_spawner_class, plugin_spawner_class
from tests.helpers.paths import ROOT


def settings_from(tmp_path, text: str):
    path = tmp_path / "jupyterhub_config.py"
    path.write_text("c = get_config()  # noqa\n" + text)
    return load_settings(str(path))


def test_class_by_entry_point_import_path_or_object():
    assert load_spawner_class("localprocess") is LocalProcessSpawner  # a jupyterhub.spawners entry point
    assert load_spawner_class("jupyterhub.spawner.LocalProcessSpawner") is LocalProcessSpawner
    assert load_spawner_class(LocalProcessSpawner) is LocalProcessSpawner
    for bad in ("nosuch", "nosuch.module.Spawner", "gateway.config.Settings", str):
        with pytest.raises(ValueError):
            load_spawner_class(bad)


def test_plugin_sections_reach_the_plugin(tmp_path):
    settings = settings_from(tmp_path, (
        "c.JupyterHub.spawner_class = 'batchspawner.SlurmSpawner'\n"
        "c.SlurmSpawner.req_partition = 'debug'\n"
        "c.BatchSpawnerBase.req_runtime = '0:30:00'\n"
        "c.Spawner.start_timeout = 300\n"
        "c.Spawner.env_keep = ['PATH']\n"
        "c.Spawner.mem_limit = '2G'\n"))
    assert settings.spawner_class == "plugin" and settings.spawner_plugin.__name__ == "SlurmSpawner"
    assert settings.spawner_start_timeout == 300  # gateway bounds the start with the plugin's own value
    cls = plugin_spawner_class(settings.spawner_plugin, settings.plugin_config, PluginContext(store=None))
    adapter = cls(SpawnerOptions(), ServerSpec(user="kim", api_token="t", hub_api_url="http://127.0.0.1:8000/hub/api"))
    plugin = adapter.plugin
    assert plugin.req_partition == "debug" and plugin.req_runtime == "0:30:00"
    assert plugin.start_timeout == 300 and plugin.env_keep == ["PATH"] and plugin.mem_limit == 2 * 1024 ** 3
    assert plugin.user.name == "kim" and plugin.hub.api_url == "http://127.0.0.1:8000/hub/api"
    assert plugin.server.base_url == "/user/kim/" and plugin.api_token == "t"


def test_keys_gateway_cannot_honour_stop_the_start(tmp_path):
    with pytest.raises(ConfigError) as e:
        settings_from(tmp_path, "c.JupyterHub.spawner_class = 'batchspawner.SlurmSpawner'\n"
                                "c.SlurmSpawner.req_partitoin = 'debug'\nc.Spawner.no_such_thing = 1\n")
    assert "SlurmSpawner.req_partitoin" in str(e.value) and "Spawner.no_such_thing" in str(e.value)
    with pytest.raises(ConfigError) as e:
        settings_from(tmp_path, "c.Spawner.disable_user_config = True\n")  # the built-in spawner
    assert "Spawner.disable_user_config" in str(e.value)
    with pytest.raises(ConfigError) as e:
        settings_from(tmp_path, "c.JupyterHub.spawner_class = 'gateway.config.Settings'\n")
    assert "spawner_class" in str(e.value)


def test_hub_connect_url_sets_the_servers_api_url(tmp_path):
    from gateway.servers import servers_hub_api_url

    local = "http://127.0.0.1:8000/hub/api"
    settings = settings_from(tmp_path, "c.JupyterHub.hub_connect_url = 'http://login-node:8000'\n")
    assert servers_hub_api_url(settings, local) == "http://login-node:8000/hub/api"
    settings = settings_from(tmp_path, "c.JupyterHub.hub_connect_ip = '10.1.2.3'\n")
    assert servers_hub_api_url(settings, local) == "http://10.1.2.3:8000/hub/api"


def test_a_gateway_without_plugins_never_imports_jupyterhub(tmp_path):
    config = tmp_path / "c.py"
    config.write_text("c = get_config()  # noqa\nc.Spawner.pre_spawn_hook = lambda spawner: None\n")
    code = ("import sys; from gateway.config import load_settings; from gateway import app, servers; "
            f"load_settings({str(config)!r}); "
            "assert not [m for m in sys.modules if m.split('.')[0] in ('jupyterhub', 'batchspawner', 'kubespawner')]")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
