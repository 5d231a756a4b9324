"""Built-in idle culling against real (fake) server processes, with short timeouts."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

from gateway import keys
from gateway.vocab.serialize import user_url
from tests.helpers.paths import FAKE_SERVER

FAKE = FAKE_SERVER


async def culling_hub(start_hub, **overrides):
    values = dict(spawner_cmd=FAKE, allow_named_servers=True, spawner_start_timeout=20.0,
                  cull_idle_timeout=2, cull_interval=1)
    values.update(overrides)
    return await start_hub(**values)


def note_activity(hub, user: str, server: str = "") -> None:
    """What the proxy does for every request it forwards to a server."""
    hub.app[keys.SERVERS].note_activity(user_url(hub.settings.base_url, user, server))


async def wait_for(predicate, *, keep_alive=(), timeout: float = 30) -> None:
    """Poll ``predicate`` (sync or async; bounded), noting activity for ``keep_alive`` servers meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for hub, user, server in keep_alive:
            note_activity(hub, user, server)
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("condition not reached")


async def test_idle_server_culled_active_spared(start_hub):
    hub = await culling_hub(start_hub)
    idle, busy = await hub.new_token("idle"), await hub.new_token("busy")
    assert (await hub.api("POST", "/users/idle/server", token=idle)).status == 201
    assert (await hub.api("POST", "/users/busy/servers/nb", token=busy)).status == 201
    servers, culler = hub.app[keys.SERVERS], hub.app[keys.CULLER]
    started = time.monotonic()

    await wait_for(lambda: servers.status("idle", "") is None, keep_alive=[(hub, "busy", "nb")])
    # keep going until the busy server has been up longer than the timeout for two more passes
    passes = culler.passes
    await wait_for(lambda: culler.passes >= passes + 2 and time.monotonic() - started > 3,
                   keep_alive=[(hub, "busy", "nb")])
    assert servers.status("busy", "nb") == "ready"
    r = await hub.api("GET", "/users/idle/server", token=idle)
    assert r.status == 200 and r.body["ready"] is False and r.body["stopped"] is True
    r = await hub.api("GET", "/users/busy/servers/nb", token=busy)
    assert r.body["ready"] is True
    # once the busy one goes quiet it is culled too; users are kept (cull_users is off)
    await wait_for(lambda: servers.status("busy", "nb") is None)
    assert await hub.store.get_user("idle") is not None and await hub.store.get_user("busy") is not None


async def test_activity_api_and_recorder_count_as_activity(start_hub):
    """Activity noted through ActivityRecorder (what the activity API and the token checks feed) spares a server."""
    hub = await culling_hub(start_hub)
    token = await hub.new_token("carol")
    assert (await hub.api("POST", "/users/carol/server", token=token)).status == 201
    user = await hub.store.get_user("carol")
    server = await hub.store.get_server(user.id, "")
    recorder, servers, culler = hub.app[keys.ACTIVITY], hub.app[keys.SERVERS], hub.app[keys.CULLER]
    passes, started = culler.passes, time.monotonic()
    deadline = time.monotonic() + 30
    while not (culler.passes >= passes + 3 and time.monotonic() - started > 4) and time.monotonic() < deadline:
        recorder.note_server(server.id, user.id)
        r = await hub.api("POST", "/users/carol/activity", token=token,
                          json_body={"servers": {"": {"last_activity": _now_iso()}}})
        assert r.status == 200, r.text
        await asyncio.sleep(0.2)
    assert servers.status("carol", "") == "ready"


def _now_iso() -> str:
    from gateway.vocab.serialize import iso

    return iso(time.time())


async def test_max_age_culls_active_servers(start_hub):
    hub = await culling_hub(start_hub, cull_idle_timeout=600, cull_max_age=2)
    token = await hub.new_token("dora")
    assert (await hub.api("POST", "/users/dora/server", token=token)).status == 201
    servers = hub.app[keys.SERVERS]
    await wait_for(lambda: servers.status("dora", "") is None, keep_alive=[(hub, "dora", "")])


async def test_cull_users_deletes_idle_users_but_never_admins(start_hub):
    hub = await culling_hub(start_hub, cull_users=True)
    await hub.new_user("ghost")
    await hub.new_user("boss", admin=True)
    token = await hub.new_token("runner")
    assert (await hub.api("POST", "/users/runner/server", token=token)).status == 201
    recorder = hub.app[keys.ACTIVITY]
    # made after the start (which may take longer than the idle timeout) and active at once
    active = await hub.new_user("lively")
    recorder.note_user(active.id)

    async def ghost_gone() -> bool:
        recorder.note_user(active.id)
        return await hub.store.get_user("ghost") is None

    await wait_for(ghost_gone, keep_alive=[(hub, "runner", "")])
    assert await hub.store.get_user("boss") is not None  # admins are never culled
    assert await hub.store.get_user("lively") is not None
    assert await hub.store.get_user("runner") is not None  # its server is active
    # when runner's server goes idle: server stopped first, then the user (no server left) deleted
    await wait_for(lambda: _user_gone(hub, "runner"))
    assert hub.app[keys.SERVERS].status("runner", "") is None


async def _user_gone(hub, name: str) -> bool:
    return await hub.store.get_user(name) is None


async def test_culling_off_by_default(start_hub):
    hub = await start_hub(spawner_cmd=FAKE, cull_interval=1)
    token = await hub.new_token("erin")
    assert (await hub.api("POST", "/users/erin/server", token=token)).status == 201
    culler = hub.app[keys.CULLER]
    report = await culler.cull_once(now=time.time() + 10 * 86400)
    assert report.stopped == [] and hub.app[keys.SERVERS].status("erin", "") == "ready"


async def test_one_pass_semantics(start_hub):
    """cull_once with a chosen clock: pending servers are never culled; stopped named servers are kept."""
    hub = await culling_hub(start_hub, cull_interval=3600)
    token = await hub.new_token("fay")
    assert (await hub.api("POST", "/users/fay/servers/a", token=token)).status == 201
    assert (await hub.api("PUT", "/users/fay/servers/b", token=token)).status == 201  # recorded, never started
    culler = hub.app[keys.CULLER]
    assert (await culler.cull_once()).stopped == []  # just started: not idle
    report = await culler.cull_once(now=time.time() + 5)
    assert report.stopped == ["fay/a"]
    user = await hub.store.get_user("fay")
    assert {s.name for s in (await hub.store.servers_of_users([user.id]))[user.id]} == {"a", "b"}


async def test_external_jupyterhub_idle_culler_still_works(start_hub):
    """jupyterhub-idle-culler, run as JupyterHub runs it (a process talking to the REST API), stops an idle
    server and spares an active one. Needs the users API (GET /users?state=ready)."""
    hub = await start_hub(spawner_cmd=FAKE, allow_named_servers=True, spawner_start_timeout=20.0)
    admin = await hub.new_token("root", admin=True)
    assert (await hub.api("GET", "/users?state=ready", token=admin)).status == 200
    idle, busy = await hub.new_token("idle"), await hub.new_token("busy")
    assert (await hub.api("POST", "/users/idle/server", token=idle)).status == 201
    assert (await hub.api("POST", "/users/busy/server", token=busy)).status == 201
    env = dict(os.environ, JUPYTERHUB_API_TOKEN=admin)
    culler = subprocess.Popen([sys.executable, "-m", "jupyterhub_idle_culler", f"--url={hub.api_url}",
                               # 6 s: the activity it reads is flushed every second, under load later still
                               "--timeout=6", "--cull-every=1"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        servers = hub.app[keys.SERVERS]
        await wait_for(lambda: servers.status("idle", "") is None, keep_alive=[(hub, "busy", "")], timeout=60)
        assert servers.status("busy", "") == "ready"
    finally:
        culler.send_signal(signal.SIGTERM)
        try:
            culler.wait(10)
        except subprocess.TimeoutExpired:
            culler.kill()
            culler.wait()
