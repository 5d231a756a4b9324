"""/hub/api/shutdown and /hub/api/proxy, and what the REST API asks of the server manager and route table.

Everything real: the ServerManager runs fake single-user server processes, the routing table is the
proxy's, and shutdown ends a real gateway process.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import time

import aiohttp
import pytest

from gateway import keys
from gateway.spawners import procs
from tests.helpers.api import expect, running, snapshot, token_with
from tests.helpers.paths import BACKENDS

FAKE = BACKENDS / "fake_server.py"


def missing(*scopes: str) -> str:
    return f"Action is not authorized with current scopes; requires any of [{', '.join(scopes)}]"


def alive(pid: int) -> bool:
    stat = procs.read_stat(pid)
    return stat is not None and not stat.exited


async def until_dead(pid: int) -> bool:
    for _ in range(200):
        if not alive(pid):
            return True
        await asyncio.sleep(0.05)
    return False


@pytest.fixture
async def nhub(start_hub):
    return await start_hub(allow_named_servers=True)


async def test_shutdown_refusals_change_nothing(nhub):
    hub = nhub
    admin = await hub.new_token("root", admin=True)
    alice = await hub.new_token("alice")
    before = snapshot(hub)
    await expect(hub, "POST", "/shutdown", 403, missing("shutdown"), token=alice)
    await expect(hub, "POST", "/shutdown", 403, "Missing or invalid credentials.")
    for body, message in (({"servers": "yes"}, "servers must be true or false, got 'yes'"),
                          ({"proxy": 1}, "proxy must be true or false, got 1"),
                          ({"servers": None}, "servers must be true or false, got None"),
                          ({"bogus": True}, "Invalid JSON keys: ['bogus']"),
                          ([True], "Request body must be a JSON dict")):
        await expect(hub, "POST", "/shutdown", 400, message, token=admin, json_body=body)
    for raw in ("{", "\t", " \n"):  # whitespace alone is invalid JSON, not "no body" (found by fuzzing)
        await expect(hub, "POST", "/shutdown", 400, "Invalid JSON in body of request", token=admin, data=raw,
                     headers={"Content-Type": "application/json"})
    await asyncio.sleep(0.05)
    assert snapshot(hub) == before
    assert (await expect(hub, "GET", "/", 200)).body == {"version": "6.1.1"}  # still serving


@pytest.mark.parametrize("servers", [False, True])
async def test_shutdown_answers_then_stops(gateway_process, servers):
    proc = gateway_process('c.JupyterHub.api_tokens = {"shutdown-token-0001": "root"}\n'
                           'c.Authenticator.admin_users = {"root"}\n'
                           f'c.Spawner.cmd = {[sys.executable, str(FAKE)]!r}\n')
    proc.start()
    await proc.wait_ready()
    headers = {"Authorization": "token shutdown-token-0001"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.post(proc.url + "/hub/api/users/root/server") as r:
            assert r.status == 201
        async with session.get(proc.url + "/hub/api/users/root/server") as r:
            pid = (await r.json())["state"]["pid"]
        async with session.post(proc.url + "/hub/api/shutdown", json={"servers": servers, "proxy": False}) as r:
            assert r.status == 202 and await r.json() == {"message": "Shutting down Hub"}
            assert r.headers["X-JupyterHub-Version"] == "6.1.1"
    deadline = time.monotonic() + 30
    while proc.proc.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert proc.proc.poll() == 0, proc.log()
    if servers:
        assert await until_dead(pid)
    else:
        assert alive(pid)  # servers keep running unless asked
        os.killpg(pid, 9)


async def test_shutdown_ends_the_process(gateway_process):
    proc = gateway_process('c.JupyterHub.api_tokens = {"shutdown-token-0001": "root"}\n'
                           'c.Authenticator.admin_users = {"root"}\n')
    proc.start()
    await proc.wait_ready()
    async with aiohttp.ClientSession() as session:
        async with session.post(proc.url + "/hub/api/shutdown",
                                headers={"Authorization": "token shutdown-token-0001"}) as r:
            assert r.status == 202 and await r.json() == {"message": "Shutting down Hub"}
    deadline = time.monotonic() + 20
    while proc.proc.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert proc.proc.poll() == 0, proc.log()


async def test_proxy_routing_table(nhub):
    hub = nhub
    admin = await hub.new_token("root", admin=True)
    default = await running(hub, "alice")
    named = await running(hub, "alice", "nb")
    r = await expect(hub, "GET", "/proxy", 200, token=admin)
    assert r.body == {
        "/": {"routespec": "/", "target": hub.url, "data": {"hub": True}},
        "/user/alice/": {"routespec": "/user/alice/", "target": default.url,
                         "data": {"user": "alice", "server_name": ""}},
        "/user/alice/nb/": {"routespec": "/user/alice/nb/", "target": named.url,
                            "data": {"user": "alice", "server_name": "nb"}},
    }
    r = await expect(hub, "GET", "/proxy?offset=1&limit=1", 200, token=admin,
                     headers={"Accept": "application/jupyterhub-pagination+json", "Host": "evil.example"})
    assert list(r.body["items"]) == ["/user/alice/"]  # sorted by routespec
    assert r.body["_pagination"]["total"] == 3 and r.body["_pagination"]["next"]["offset"] == 2
    assert "evil.example" not in str(r.body["items"])  # the hub target never comes from the Host header
    alice = await hub.new_token("alice")
    await expect(hub, "GET", "/proxy", 403, missing("proxy"), token=alice)
    await expect(hub, "POST", "/proxy", 403, missing("proxy"), token=alice)
    await expect(hub, "PATCH", "/proxy", 403, missing("proxy"), token=alice, json_body={})
    # POST re-syncs: a lost route comes back
    hub.app[keys.ROUTES].remove("/user/alice/nb/")
    assert "/user/alice/nb/" not in (await expect(hub, "GET", "/proxy", 200, token=admin)).body
    r = await expect(hub, "POST", "/proxy", 200, token=admin)
    assert r.text == ""
    assert (await expect(hub, "GET", "/proxy", 200, token=admin)).body["/user/alice/nb/"]["target"] == named.url
    await expect(hub, "PATCH", "/proxy", 400, "need JSON body", token=admin)
    await expect(hub, "PATCH", "/proxy", 400, "Request body must be JSON dict", token=admin, data="{x",
                 headers={"Content-Type": "application/json"})
    await expect(hub, "PATCH", "/proxy", 400, "Request body must be JSON dict", token=admin, json_body=[1])
    await expect(hub, "PATCH", "/proxy", 200, token=admin, json_body={"api_url": "http://127.0.0.1:1"})


async def test_proxy_without_route_table(start_hub):
    hub = await start_hub(base_url="/prefix/")
    admin = await hub.new_token("root", admin=True)
    r = await expect(hub, "GET", "/proxy", 200, token=admin)
    assert r.body == {"/prefix/": {"routespec": "/prefix/", "target": hub.url, "data": {"hub": True}}}
    await expect(hub, "POST", "/proxy", 200, token=admin)


async def test_user_models_show_pending_spawns(start_hub):
    hub = await start_hub(spawner_environment={"FAKE_SERVER_HANG": "1"}, spawner_http_timeout=30.0)
    admin = await hub.new_token("root", admin=True)
    alice = await hub.new_user("alice")
    await hub.new_user("bob")
    entry, _ = await hub.app[keys.SERVERS].start(alice, "")
    r = await expect(hub, "GET", "/users?include_stopped_servers", 200, token=admin)
    models = {u["name"]: u for u in r.body}
    assert models["alice"]["pending"] == "spawn" and models["alice"]["servers"][""]["pending"] == "spawn"
    assert models["bob"]["servers"] == {} and models["bob"]["pending"] is None
    r = await expect(hub, "GET", "/users/alice", 200, token=admin)
    assert r.body["pending"] == "spawn" and r.body["server"] is None


async def test_delete_user_stops_its_servers_first(nhub):
    hub = nhub
    admin = await hub.new_token("root", admin=True)
    server = await running(hub, "alice")
    named = await running(hub, "alice", "nb")
    scoped = await token_with(hub, "other", ["delete:users!user=bob"])
    await expect(hub, "DELETE", "/users/alice", 404, token=scoped)
    assert alive(server.state["spawner"]["pid"])
    await expect(hub, "DELETE", "/users/alice", 204, token=admin)
    assert await until_dead(server.state["spawner"]["pid"]) and await until_dead(named.state["spawner"]["pid"])
    assert "/user/alice/" not in (await expect(hub, "GET", "/proxy", 200, token=admin)).body


def imported(path: str) -> type:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("authenticator_class", ["dummy", "password", "shared-password"])
async def test_info_names_the_builtin_classes_where_they_live(start_hub, authenticator_class):
    """/hub/api/info reports importable class paths of the built-in spawner and authenticator."""
    extra = {"shared_password": "shared-secret-1"} if authenticator_class == "shared-password" else {}
    hub = await start_hub(authenticator_class=authenticator_class, spawner_class="simple", **extra)
    admin = await hub.new_token("root", admin=True)
    r = await expect(hub, "GET", "/info", 200, token=admin)
    assert imported(r.body["authenticator"]["class"]) is type(hub.app[keys.AUTHENTICATOR])
    assert r.body["spawner"]["class"] == "gateway.spawners.local.ProcessSpawner"
    assert imported(r.body["spawner"]["class"]).__name__ == "ProcessSpawner"
