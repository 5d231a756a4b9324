"""Servers through the REST API: real processes (the fake server, and jupyter-server), real HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import aiohttp
import pytest

from gateway import keys
from gateway.spawners import procs
from tests.helpers.paths import FAKE_SERVER

FAKE = FAKE_SERVER


@pytest.fixture
async def shub(start_hub):
    """A gateway whose servers are the fast fake server, named servers on (limit 3)."""
    return await start_hub(spawner_cmd=FAKE, allow_named_servers=True, named_server_limit_per_user=3,
                           spawner_start_timeout=20.0, spawner_poll_interval=1.0)


async def events_of(hub, path: str, token: str) -> list[dict]:
    """Read a progress stream to its end; return the events (keepalives dropped)."""
    events = []
    async with hub.session.get(hub.api_url + path, headers={"Authorization": f"token {token}"}) as r:
        assert r.status == 200, await r.text()
        assert r.headers["Content-Type"] == "text/event-stream"
        async for line in r.content:
            line = line.decode().strip()
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    return events


async def wait_status(hub, path: str, token: str, *, ready: bool, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = await hub.api("GET", path, token=token)
        if r.status == 200 and r.body["ready"] == ready and r.body["pending"] is None:
            return r.body
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path} never became ready={ready}: {r.status} {r.body}")


async def test_default_server_start_stop(shub):
    token = await shub.new_token("alice")
    r = await shub.api("POST", "/users/alice/server", token=token)
    assert r.status == 201, r.text
    assert r.headers["Content-Type"].startswith("text/plain") and r.text == ""
    r = await shub.api("GET", "/users/alice/server", token=token)
    assert r.status == 200
    model = r.body
    assert model["ready"] is True and model["pending"] is None and model["stopped"] is False
    assert model["url"] == "/user/alice/" and model["name"] == "" and model["full_name"] == "alice/"
    assert model["progress_url"] == "/hub/api/users/alice/server/progress"
    assert "state" not in model  # only with admin:server_state
    r = await shub.api("POST", "/users/alice/server", token=token)
    assert r.status == 400 and r.body["message"] == "alice is already running"
    user = await shub.api("GET", "/users/alice", token=token)
    assert user.status == 200 and user.body["server"] == "/user/alice/"
    r = await shub.api("DELETE", "/users/alice/server", token=token)
    assert r.status == 204
    r = await shub.api("GET", "/users/alice/server", token=token)
    assert r.body["ready"] is False and r.body["stopped"] is True and r.body["started"] is None
    r = await shub.api("DELETE", "/users/alice/server", token=token)
    assert r.status == 204  # already stopped


async def test_server_secret_is_scoped_and_deleted_at_stop(shub):
    token = await shub.new_token("alice")
    assert (await shub.api("POST", "/users/alice/server", token=token)).status == 201
    server = await shub.store.get_server((await shub.store.get_user("alice")).id, "")
    tokens = [t for t in await shub.store.list_tokens("user", server.user_id) if t.server_id == server.id]
    assert len(tokens) == 1 and tokens[0].note == "Server at /user/alice/"
    assert sorted(tokens[0].scopes) == ["access:servers!server=alice/", "users:activity!user=alice"]
    assert "secret" in server.state and len(server.state["secret"]) > 64  # encrypted, not the token
    # a user's own hub token sent straight to the backend is refused: only the per-server secret works
    async with aiohttp.ClientSession() as s:
        async with s.get(server.url + "/user/alice/api/status", headers={"Authorization": f"token {token}"}) as r:
            assert r.status == 403
    assert (await shub.api("DELETE", "/users/alice/server", token=token)).status == 204
    tokens = [t for t in await shub.store.list_tokens("user", server.user_id) if t.server_id == server.id]
    assert tokens == []


async def test_named_servers_lifecycle(shub):
    token = await shub.new_token("bob")
    r = await shub.api("PUT", "/users/bob/servers/nb1", token=token, json_body={"display_name": "My NB"})
    assert r.status == 201 and r.body["display_name"] == "My NB" and r.body["stopped"] is True
    r = await shub.api("PUT", "/users/bob/servers/nb1", token=token)
    assert r.status == 409 and r.body["message"] == "User bob already has server nb1"
    r = await shub.api("PUT", "/users/bob/server", token=token)
    assert r.status == 409 and r.body["message"] == "User bob already has a default server"
    for bad in ("Bad_Name", "1abc", "a--b", "x" * 31, "a-"):
        r = await shub.api("POST", f"/users/bob/servers/{bad}", token=token)
        assert r.status == 400 and r.body["message"] == f"Invalid server_name: {bad!r}", bad
    r = await shub.api("POST", "/users/bob/servers/nb1", token=token, json_body={"user_options": {"x": 1}})
    assert r.status == 201
    r = await shub.api("GET", "/users/bob/servers/nb1", token=token)
    assert r.body["url"] == "/user/bob/nb1/" and r.body["user_options"] == {"x": 1} and r.body["ready"]
    r = await shub.api("PATCH", "/users/bob/servers/nb1", token=token, json_body={"name": "nb9"})
    assert r.status == 400 and r.body["message"] == "bob:nb1 is active. Please stop it before modifying it."
    assert (await shub.api("DELETE", "/users/bob/servers/nb1", token=token)).status == 204
    r = await shub.api("PATCH", "/users/bob/servers/nb1", token=token, json_body={"name": "nb9", "display_name": "Nine"})
    assert r.status == 200 and r.body["name"] == "nb9" and r.body["display_name"] == "Nine"
    r = await shub.api("PATCH", "/users/bob/servers/nb9", token=token, json_body={})
    assert r.status == 400 and r.body["message"] == "Must specify at least one field to modify."
    for name in ("nb2", "nb3"):
        assert (await shub.api("PUT", f"/users/bob/servers/{name}", token=token)).status == 201
    r = await shub.api("PUT", "/users/bob/servers/nb4", token=token)  # stopped servers count toward the limit
    assert r.status == 400 and "already has the maximum of 3 named servers" in r.body["message"]
    r = await shub.api("DELETE", "/users/bob/servers/nb9", token=token, json_body={"remove": True})
    assert r.status == 204
    assert (await shub.api("GET", "/users/bob/servers/nb9", token=token)).status == 404
    r = await shub.api("DELETE", "/users/bob/servers/nosuch", token=token)
    assert r.status == 404 and r.body["message"] == "bob has no server named 'nosuch'"
    r = await shub.api("DELETE", "/users/bob/server", token=token, json_body={"remove": True})
    assert r.status == 400 and r.body["message"] == "Cannot delete the default server"


async def test_named_servers_off(start_hub):
    hub = await start_hub(spawner_cmd=FAKE)
    token = await hub.new_token("carl")
    for method in ("POST", "PUT", "DELETE"):
        r = await hub.api(method, "/users/carl/servers/nb", token=token)
        assert r.status == 400 and r.body["message"] == "Named servers are not enabled.", method


async def test_scopes_on_server_endpoints(shub):
    alice = await shub.new_token("alice")
    bob = await shub.new_token("bob")
    reader = await shub.new_token("alice", scopes=["read:servers!user=alice"])
    r = await shub.api("POST", "/users/alice/server", token=bob)
    assert r.status == 404 and r.body["message"] == "No access to resources or resources not found"
    r = await shub.api("POST", "/users/alice/server", token=reader)
    assert r.status == 403 and "requires any of [start:servers]" in r.body["message"]
    r = await shub.api("POST", "/users/alice/server")
    assert r.status == 403 and r.body["message"] == "Missing or invalid credentials."
    r = await shub.api("POST", "/users/alice/server", token=alice, data="{not json",
                       headers={"Content-Type": "application/json"})
    assert r.status == 400 and r.body["message"] == "Invalid JSON in body of request"
    r = await shub.api("POST", "/users/alice/server", token=alice, json_body={"user_options": [1]})
    assert r.status == 400
    admin = await shub.new_token("root", admin=True)
    r = await shub.api("POST", "/users/nosuch/server", token=admin)
    assert r.status == 404
    assert (await shub.api("POST", "/users/alice/server", token=admin)).status == 201
    r = await shub.api("GET", "/users/alice/server", token=admin)
    assert r.body["state"]["pid"] > 0 and "secret" not in r.body["state"]  # admin:server_state
    assert (await shub.api("DELETE", "/users/alice/server", token=admin)).status == 204


async def test_progress_stream_events_in_order(shub):
    token = await shub.new_token("dave")
    for path in ("/users/dave/server/progress", "/users/dave/servers/nb/progress"):  # never started: 404
        r = await shub.api("GET", path, token=token)
        assert r.status == 404 and r.body == {"status": 404, "message": None}, (path, r.status, r.text)
    start = asyncio.create_task(shub.api("POST", "/users/dave/server", token=token))
    for _ in range(3000):  # bounded: 30 s
        if shub.app[keys.SERVERS].entry("dave", "") is not None:
            break
        await asyncio.sleep(0.01)
    assert shub.app[keys.SERVERS].entry("dave", "") is not None
    events = await events_of(shub, "/users/dave/server/progress", token)
    assert (await start).status in (201, 202)
    assert events[0] == {"progress": 0, "message": "Server requested"}
    assert events[-1]["ready"] is True and events[-1]["progress"] == 100
    assert events[-1]["url"] == "/user/dave/" and events[-1]["message"] == "Server ready at /user/dave/"
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress)
    # once ready: the ready event alone, not the history (JupyterHub 6.1.1)
    again = await events_of(shub, "/users/dave/server/progress", token)
    assert again == [events[-1]]
    assert (await shub.api("DELETE", "/users/dave/server", token=token)).status == 204
    r = await shub.api("GET", "/users/dave/server/progress", token=token)  # stopped: no spawner, 404
    assert r.status == 404, r.text


async def test_failed_start_reported_by_api_and_progress(start_hub):
    hub = await start_hub(spawner_cmd=FAKE, spawner_environment={"FAKE_SERVER_FAIL": "1"})
    token = await hub.new_token("erin")
    r = await hub.api("POST", "/users/erin/server", token=token)
    assert r.status == 500
    assert r.body["message"].startswith("Spawn failed:")
    events = await events_of(hub, "/users/erin/server/progress", token)
    assert events[-1]["failed"] is True and events[-1]["message"].startswith("Spawn failed:")
    r = await hub.api("GET", "/users/erin/server", token=token)
    assert r.body["ready"] is False and r.body["pending"] is None


async def test_server_killed_from_outside_is_noticed(shub):
    token = await shub.new_token("fred")
    assert (await shub.api("POST", "/users/fred/server", token=token)).status == 201
    user = await shub.store.get_user("fred")
    server = await shub.store.get_server(user.id, "")
    pid = server.state["spawner"]["pid"]
    os.killpg(pid, signal.SIGKILL)
    body = await wait_status(shub, "/users/fred/server", token, ready=False)
    assert body["stopped"] is True
    assert (await shub.store.get_server(user.id, "")).url == ""
    assert (await shub.api("POST", "/users/fred/server", token=token)).status == 201  # restart works
    assert (await shub.api("DELETE", "/users/fred/server", token=token)).status == 204


async def test_ten_concurrent_starts(shub):
    tokens = {f"u{i}": await shub.new_token(f"u{i}") for i in range(10)}
    results = await asyncio.gather(*(shub.api("POST", f"/users/{u}/server", token=t) for u, t in tokens.items()))
    assert all(r.status in (201, 202) for r in results), [r.text for r in results]
    for u, t in tokens.items():
        await wait_status(shub, f"/users/{u}/server", t, ready=True)
    await asyncio.gather(*(shub.api("DELETE", f"/users/{u}/server", token=t) for u, t in tokens.items()))


async def test_limits_answer_429(start_hub):
    hub = await start_hub(spawner_cmd=FAKE, active_server_limit=1)
    a, b = await hub.new_token("ann"), await hub.new_token("ben")
    assert (await hub.api("POST", "/users/ann/server", token=a)).status == 201
    r = await hub.api("POST", "/users/ben/server", token=b)
    assert r.status == 429 and r.body["message"] == "Active user limit exceeded. Try again in a few minutes."
    assert 30 <= int(r.headers["Retry-After"]) <= 60
    assert (await hub.api("DELETE", "/users/ann/server", token=a)).status == 204
    assert (await hub.api("POST", "/users/ben/server", token=b)).status == 201
    await hub.api("DELETE", "/users/ben/server", token=b)


async def test_stop_cancels_a_pending_spawn(start_hub):
    hub = await start_hub(spawner_cmd=FAKE, spawner_environment={"FAKE_SERVER_HANG": "1"},
                          spawner_http_timeout=30.0, spawner_start_timeout=30.0)
    token = await hub.new_token("gus")
    start = asyncio.create_task(hub.api("POST", "/users/gus/server", token=token))
    for _ in range(1500):  # bounded: 30 s
        entry = hub.app[keys.SERVERS].entry("gus", "")
        if entry is not None and entry.spawner is not None and entry.spawner.pid:
            break
        await asyncio.sleep(0.02)
    assert entry is not None and entry.spawner is not None and entry.spawner.pid
    pid = entry.spawner.pid
    r = await hub.api("DELETE", "/users/gus/server", token=token)
    assert r.status == 204
    started = await start
    # the start answers once its task ended: cancelled by the stop, as the failure says
    assert (started.status, started.body) == (500, {"status": 500, "message": "Spawn cancelled"}), started.text
    for _ in range(100):
        stat = procs.read_stat(pid)
        if stat is None or stat.exited:  # gone, or a zombie waiting to be reaped
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the cancelled server's process is still alive")
    r = await hub.api("GET", "/users/gus/server", token=token)
    assert r.body["pending"] is None and r.body["ready"] is False


async def test_gateway_sigkill_and_restart_finds_running_servers(gateway_process, tmp_path):
    config = (f"c = get_config()\nc.Spawner.cmd = {list(FAKE)!r}\nc.JupyterHub.allow_named_servers = True\n"
              "c.JupyterHub.api_tokens = {'restart-test-token-1': 'hana'}\n")
    proc = gateway_process(config)
    proc.start()
    await proc.wait_ready()
    headers = {"Authorization": "token restart-test-token-1"}
    api = proc.url + "/hub/api"
    async with aiohttp.ClientSession(headers=headers) as s:
        for path in ("/users/hana/server", "/users/hana/servers/nb"):
            async with s.post(api + path) as r:
                assert r.status == 201, await r.text()
        proc.signal(signal.SIGKILL)
        proc.proc.wait()
        proc.start()
        await proc.wait_ready()
        for path in ("/users/hana/server", "/users/hana/servers/nb"):
            async with s.get(api + path) as r:
                model = await r.json()
                assert model["ready"] is True and model["pending"] is None, model
        async with s.delete(api + "/users/hana/servers/nb") as r:
            assert r.status == 204
        async with s.get(api + "/users/hana/servers/nb") as r:
            assert (await r.json())["stopped"] is True
    # a graceful stop leaves servers running too (cleanup_servers defaults to False)
    proc.stop()
    proc.start()
    await proc.wait_ready()
    async with aiohttp.ClientSession(headers=headers) as s:
        async with s.get(api + "/users/hana/server") as r:
            assert (await r.json())["ready"] is True
        async with s.delete(api + "/users/hana/server") as r:
            assert r.status == 204


async def test_real_jupyter_server_through_the_api(start_hub):
    hub = await start_hub(spawner_cmd=(), spawner_start_timeout=60.0)  # the default command: jupyter-server
    token = await hub.new_token("ida")
    r = await hub.api("POST", "/users/ida/server", token=token)
    assert r.status in (201, 202), r.text
    await wait_status(hub, "/users/ida/server", token, ready=True, timeout=60)
    user = await hub.store.get_user("ida")
    server = await hub.store.get_server(user.id, "")
    secret = hub.app[keys.COOKIE_CIPHER].decrypt(server.state["secret"])
    async with aiohttp.ClientSession() as s:
        async with s.get(server.url + "/user/ida/api/status", headers={"Authorization": f"token {secret}"}) as resp:
            assert resp.status == 200
        # a user's hub token sent straight to the server's port is refused; through the gateway it works
        async with s.get(server.url + "/user/ida/api/status", headers={"Authorization": f"token {token}"}) as resp:
            assert resp.status == 403
        async with s.get(hub.url + "/user/ida/api/status", headers={"Authorization": f"token {token}"}) as resp:
            assert resp.status == 200
    assert (await hub.api("DELETE", "/users/ida/server", token=token)).status in (202, 204)


async def test_progress_streams_end_cleanly_when_the_gateway_stops(make_settings, tmp_path):
    """A progress stream of a start that is still pending ends (with the stream's proper end) as
    soon as the gateway begins stopping, instead of holding the shutdown for its whole timeout
    (here 120 s, longer than the bounded read below)."""
    from tests.helpers.hub import start_hub_with
    from tests.helpers.pages import gated_environment

    hub = await start_hub_with(make_settings(spawner_cmd=FAKE, spawner_start_timeout=100.0, spawner_http_timeout=100.0,
                                             spawner_environment=gated_environment(tmp_path, "gus")),
                               shutdown_timeout=120)
    try:
        token = await hub.new_token("gus")
        r = await hub.api("POST", "/users/gus/server", token=token)  # 202 after the slow-spawn wait
        assert r.status == 202, r.text
        async with hub.session.get(hub.api_url + "/users/gus/server/progress",
                                   headers={"Authorization": f"token {token}"}) as response:
            assert response.status == 200
            first = await asyncio.wait_for(response.content.readline(), 10)  # the stream is open
            assert first is not None
            stopping = asyncio.ensure_future(hub.runner.cleanup())
            # the whole rest of the body arrives and ends properly (a cut connection would raise)
            rest = await asyncio.wait_for(response.content.read(), 30)
            assert b"Server ready" not in rest and b"failed" not in rest
        await asyncio.wait_for(stopping, 60)
    finally:
        await hub.session.close()
