"""/hub/api/shutdown and /hub/api/proxy, and the hooks the API calls on the server manager and route table.

The server manager and the route table belong to other modules; here they are small recording
stand-ins with the same methods, so that these tests pin what the REST API asks of them.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

from gateway import keys
from gateway.app import create_app
from gateway.serialize import server_model
from tests.api_helpers import expect, snapshot, token_with
from tests.conftest import Hub


def missing(*scopes: str) -> str:
    return f"Action is not authorized with current scopes; requires any of [{', '.join(scopes)}]"


@dataclass(frozen=True)
class Route:
    prefix: str
    target: str
    kind: str
    user: str | None = None
    server_name: str | None = None
    service: str | None = None


class RoutesForTest:
    def __init__(self, routes):
        self.routes = list(routes)

    def all(self):
        return list(self.routes)


class ManagerForTest:
    """Records calls; reports every server record of a user as pending 'spawn'."""

    def __init__(self, app: web.Application):
        self.app = app
        self.calls: list[tuple] = []

    async def user_model_servers(self, user, identity, include_stopped=False):
        self.calls.append(("user_model_servers", user.name, include_stopped))
        base_url = self.app[keys.SETTINGS].base_url
        records = (await self.app[keys.STORE].servers_of_users([user.id]))[user.id]
        servers = {s.name: server_model(s, base_url=base_url, pending="spawn", ready=False) for s in records}
        return {"servers": servers, "default_ready": False, "default_pending": "spawn" if "" in servers else None}

    async def stop_all(self, user):
        self.calls.append(("stop_all", user.name))

    async def stop_all_servers(self):
        self.calls.append(("stop_all_servers",))

    async def check_routes(self):
        self.calls.append(("check_routes",))


@pytest.fixture
async def hooked_hub(make_settings):
    app = create_app(make_settings())
    stopped = asyncio.Event()
    app[keys.SHUTDOWN] = stopped.set
    app[keys.SERVERS] = manager = ManagerForTest(app)
    app[keys.ROUTES] = RoutesForTest([
        Route("/user/alice/", "http://127.0.0.1:40001", "user", "alice", ""),
        Route("/user/alice/nb/", "http://127.0.0.1:40002", "user", "alice", "nb"),
        Route("/services/ext/", "http://127.0.0.1:40003", "service", service="ext"),
    ])
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    session = aiohttp.ClientSession()
    hub = Hub(app, runner, f"http://127.0.0.1:{runner.addresses[0][1]}", session)
    hub.stopped, hub.manager = stopped, manager
    yield hub
    await session.close()
    await runner.cleanup()


async def test_shutdown_refusals_change_nothing(hooked_hub):
    hub = hooked_hub
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
    assert not hub.stopped.is_set() and hub.manager.calls == []
    assert snapshot(hub) == before


@pytest.mark.parametrize("servers", [False, True])
async def test_shutdown_answers_then_stops(hooked_hub, servers):
    hub = hooked_hub
    admin = await hub.new_token("root", admin=True)
    r = await expect(hub, "POST", "/shutdown", 202, token=admin, json_body={"servers": servers, "proxy": False})
    assert r.body == {"message": "Shutting down Hub"}
    assert r.headers["X-JupyterHub-Version"] == "6.1.1"
    await asyncio.wait_for(hub.stopped.wait(), 10)
    assert hub.manager.calls == ([("stop_all_servers",)] if servers else [])


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


async def test_proxy_routing_table(hooked_hub):
    hub = hooked_hub
    admin = await hub.new_token("root", admin=True)
    r = await expect(hub, "GET", "/proxy", 200, token=admin)
    assert r.body == {
        "/": {"routespec": "/", "target": hub.url, "data": {"hub": True}},
        "/user/alice/": {"routespec": "/user/alice/", "target": "http://127.0.0.1:40001",
                         "data": {"user": "alice", "server_name": ""}},
        "/user/alice/nb/": {"routespec": "/user/alice/nb/", "target": "http://127.0.0.1:40002",
                            "data": {"user": "alice", "server_name": "nb"}},
        "/services/ext/": {"routespec": "/services/ext/", "target": "http://127.0.0.1:40003",
                           "data": {"service": "ext"}},
    }
    r = await expect(hub, "GET", "/proxy?offset=1&limit=2", 200, token=admin,
                     headers={"Accept": "application/jupyterhub-pagination+json", "Host": "evil.example"})
    assert list(r.body["items"]) == ["/services/ext/", "/user/alice/"]  # sorted by routespec
    assert r.body["_pagination"]["total"] == 4 and r.body["_pagination"]["next"]["offset"] == 3
    assert "evil.example" not in str(r.body["items"])  # the hub target never comes from the Host header
    alice = await hub.new_token("alice")
    await expect(hub, "GET", "/proxy", 403, missing("proxy"), token=alice)
    await expect(hub, "POST", "/proxy", 403, missing("proxy"), token=alice)
    await expect(hub, "PATCH", "/proxy", 403, missing("proxy"), token=alice, json_body={})
    assert hub.manager.calls == []
    r = await expect(hub, "POST", "/proxy", 200, token=admin)
    assert r.text == "" and hub.manager.calls == [("check_routes",)]
    await expect(hub, "PATCH", "/proxy", 400, "need JSON body", token=admin)
    await expect(hub, "PATCH", "/proxy", 400, "Request body must be JSON dict", token=admin, data="{x",
                 headers={"Content-Type": "application/json"})
    await expect(hub, "PATCH", "/proxy", 400, "Request body must be JSON dict", token=admin, json_body=[1])
    assert hub.manager.calls == [("check_routes",)]
    await expect(hub, "PATCH", "/proxy", 200, token=admin, json_body={"api_url": "http://127.0.0.1:1"})
    assert hub.manager.calls == [("check_routes",)] * 2


async def test_proxy_without_route_table(start_hub):
    hub = await start_hub(base_url="/prefix/")
    admin = await hub.new_token("root", admin=True)
    r = await expect(hub, "GET", "/proxy", 200, token=admin)
    assert r.body == {"/prefix/": {"routespec": "/prefix/", "target": hub.url, "data": {"hub": True}}}
    await expect(hub, "POST", "/proxy", 200, token=admin)


async def test_user_models_from_the_manager(hooked_hub):
    hub = hooked_hub
    admin = await hub.new_token("root", admin=True)
    alice = await hub.new_user("alice")
    await hub.new_user("bob")
    await hub.store.create_server(alice.id, "")
    r = await expect(hub, "GET", "/users?include_stopped_servers", 200, token=admin)
    models = {u["name"]: u for u in r.body}
    assert models["alice"]["pending"] == "spawn" and models["alice"]["servers"][""]["pending"] == "spawn"
    assert models["bob"]["servers"] == {} and models["bob"]["pending"] is None
    # asked only about users that have server records, once each
    assert hub.manager.calls == [("user_model_servers", "alice", True)]
    r = await expect(hub, "GET", "/users/alice", 200, token=admin)
    assert r.body["pending"] == "spawn"
    assert hub.manager.calls[-1] == ("user_model_servers", "alice", False)


async def test_delete_user_stops_its_servers_first(hooked_hub):
    hub = hooked_hub
    admin = await hub.new_token("root", admin=True)
    await hub.new_user("alice")
    scoped = await token_with(hub, "other", ["delete:users!user=bob"])
    await expect(hub, "DELETE", "/users/alice", 404, token=scoped)
    assert hub.manager.calls == []
    await expect(hub, "DELETE", "/users/alice", 204, token=admin)
    assert hub.manager.calls == [("stop_all", "alice")]
