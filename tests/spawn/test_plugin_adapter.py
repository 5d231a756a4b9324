"""JupyterHub spawner plugins behind gateway's ServerManager, in-process hubs on loopback ports.

The plugin classes here are what an operator writes in jupyterhub_config.py: subclasses of
JupyterHub's Spawner / SimpleLocalProcessSpawner. Servers are real jupyterhub-singleuser processes
(or nothing at all, for plugins that fail on purpose).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
from jupyterhub.spawner import SimpleLocalProcessSpawner, Spawner

from tests.helpers.paths import BACKENDS
from tests.helpers.spawn import run_in_kernel

SINGLEUSER = str(Path(sys.executable).parent / "jupyterhub-singleuser")


class RefusingSpawner(Spawner):
    async def start(self):
        raise RuntimeError("the cluster refused the job: quota exceeded")

    async def poll(self):
        return 0

    async def stop(self, now=False):
        pass


class HangingSpawner(Spawner):
    stopped = 0

    async def start(self):
        await asyncio.Event().wait()  # never returns

    async def poll(self):
        return None if not HangingSpawner.stopped else 0

    async def stop(self, now=False):
        HangingSpawner.stopped += 1
        await asyncio.Event().wait()  # never returns either


class SingleUserSpawner(SimpleLocalProcessSpawner):
    """JupyterHub's own spawner class, as a plugin: the real jupyterhub-singleuser."""


class PortReportSpawner(SimpleLocalProcessSpawner):
    """Behaves like batchspawner: start() waits until the job reports its port to the hub."""

    report_file = ""

    async def start(self):
        _, port = await super().start()  # the 'job' runs; its port is not known to the hub yet
        Path(self.report_file).write_text(json.dumps({"token": self.api_token, "port": port}))
        self.port = 0
        while self.port == 0:  # bounded by start_timeout
            await asyncio.sleep(0.05)
        return "localhost", self.port  # a host name, not an address: the proxy resolves it

    async def progress(self):
        yield {"progress": 40, "message": "Waiting for the job to report its port"}


def plugin_settings(tmp_path: Path, cls: type, **config) -> dict:
    spawner_config = {"cmd": [SINGLEUSER], "args": ["--allow-root"], **config}
    homes = {"home_dir_template": str(tmp_path / "homes" / "{username}")}
    return dict(spawner_class="plugin", spawner_plugin=cls, spawner_start_timeout=60,
                plugin_config={"Spawner": spawner_config, "SimpleLocalProcessSpawner": homes})


async def wait_for(predicate, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def start_and_wait(hub, user: str, token: str) -> None:
    result = await hub.api("POST", f"/users/{user}/server", token=token)
    assert result.status in (201, 202), result.text

    async def ready() -> bool:
        model = (await hub.api("GET", f"/users/{user}/server", token=token)).body
        assert model["pending"] or model["ready"], model  # a failure ends the wait at once
        return model["ready"]

    await wait_for(ready, 120)


async def progress_events(hub, user: str, token: str) -> list[dict]:
    async with hub.session.get(f"{hub.api_url}/users/{user}/server/progress",
                               headers={"Authorization": f"token {token}"}) as r:
        assert r.status == 200, await r.text()
        text = await r.text()
    return [json.loads(line[len("data: "):]) for line in text.splitlines() if line.startswith("data: ")]


async def test_plugin_raising_in_start_reports_its_message(start_hub, tmp_path):
    hub = await start_hub(**plugin_settings(tmp_path, RefusingSpawner))
    token = await hub.new_token("ann")
    result = await hub.api("POST", "/users/ann/server", token=token)
    assert result.status == 500 and "the cluster refused the job: quota exceeded" in result.body["message"]
    events = await progress_events(hub, "ann", token)
    assert events[-1]["failed"] and "quota exceeded" in events[-1]["message"]
    model = (await hub.api("GET", "/users/ann/server", token=token)).body
    assert model["stopped"] and not model["pending"]


async def test_start_that_never_returns_is_bounded(start_hub, tmp_path):
    HangingSpawner.stopped = 0
    settings = plugin_settings(tmp_path, HangingSpawner, start_timeout=1)
    hub = await start_hub(**settings, plugin_stop_timeout=0.5)
    token = await hub.new_token("ben")
    result = await hub.api("POST", "/users/ben/server", token=token)
    assert result.status in (202, 500), result.text

    async def failed() -> bool:
        model = (await hub.api("GET", "/users/ben/server", token=token)).body
        return not model["pending"] and model["stopped"]

    await wait_for(failed, 30)
    events = await progress_events(hub, "ben", token)
    assert events[-1]["failed"] and "did not start within 1 seconds" in events[-1]["message"]
    assert HangingSpawner.stopped >= 1  # its stop() was called, and hung, and was given up on


async def test_stop_that_hangs_is_bounded(start_hub, tmp_path):
    class StartsThenHangsOnStop(SingleUserSpawner):
        async def stop(self, now=False):
            await super().stop(now=True)
            await asyncio.Event().wait()

    hub = await start_hub(**plugin_settings(tmp_path, StartsThenHangsOnStop), plugin_stop_timeout=1)
    token = await hub.new_token("cat")
    await start_and_wait(hub, "cat", token)
    result = await hub.api("DELETE", "/users/cat/server", token=token)
    assert result.status in (202, 204)

    async def stopped() -> bool:
        return (await hub.api("GET", "/users/cat/server", token=token)).body["stopped"]

    await wait_for(stopped, 30)


async def test_dead_server_noticed_by_poll_and_proxy_answers_not_running(start_hub, tmp_path):
    hub = await start_hub(**plugin_settings(tmp_path, SingleUserSpawner))
    token = await hub.new_token("dan")
    await start_and_wait(hub, "dan", token)
    assert await run_in_kernel(hub.url, "dan", token, "1+1") == "2"
    admin = await hub.new_token("root-admin", admin=True)
    state = (await hub.api("GET", "/users/dan/server", token=admin)).body["state"]
    os.kill(state["pid"], signal.SIGKILL)  # the job dies behind gateway's back
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{hub.url}/user/dan/api/status", headers={"Authorization": f"token {token}"},
                         allow_redirects=False) as r:
            assert r.status in (424, 502, 503), r.status

    async def stopped() -> bool:
        return (await hub.api("GET", "/users/dan/server", token=token)).body["stopped"]

    await wait_for(stopped, 30)
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{hub.url}/user/dan/api/status", headers={"Authorization": f"token {token}"},
                         allow_redirects=False) as r:
            assert r.status == 424, r.status
            assert "no longer running" in (await r.json())["message"]


async def test_port_report_only_with_the_servers_own_token(start_hub, tmp_path):
    PortReportSpawner.report_file = str(tmp_path / "report.json")
    hub = await start_hub(**plugin_settings(tmp_path, PortReportSpawner))
    token = await hub.new_token("eve")
    other = await hub.new_token("mallory")
    result = await hub.api("POST", "/users/eve/server", token=token)
    assert result.status == 202  # waits for the report
    report = Path(PortReportSpawner.report_file)

    async def reported() -> bool:
        return report.exists()

    stream = asyncio.create_task(progress_events(hub, "eve", token))  # read while the start is pending
    await wait_for(reported)
    data = json.loads(report.read_text())
    # the user's own (ordinary) token, another user's token, no token: all refused
    for bad in (token, other, None):
        result = await hub.api("POST", "/batchspawner", token=bad, json_body={"port": data["port"]})
        assert result.status == 403, (bad, result.text)
    # bad input from the server itself: 400, nothing set
    for body in ({"port": "8888"}, {"port": 0}, {"port": 70000}, {"job_id": "x"}, ["port"]):
        result = await hub.api("POST", "/batchspawner", token=data["token"], json_body=body)
        assert result.status == 400, (body, result.text)
    result = await hub.api("POST", "/batchspawner", token=data["token"], json_body={"port": data["port"]})
    assert result.status == 200 and result.body == {"message": "BatchSpawner data configured"}

    async def ready() -> bool:
        return (await hub.api("GET", "/users/eve/server", token=token)).body["ready"]

    await wait_for(ready)
    events = await asyncio.wait_for(stream, 30)
    assert {"progress": 40, "message": "Waiting for the job to report its port"} in events  # plugin's progress()
    assert events[-1]["ready"]
    # forwarded to the host name start() returned, with a kernel behind it
    assert await run_in_kernel(hub.url, "eve", token, "6*7") == "42"
    assert (await hub.api("DELETE", "/users/eve/server", token=token)).status in (202, 204)


FAKE_SERVER = str(BACKENDS / "fake_server.py")


async def test_proxy_presents_an_access_only_secret_never_the_servers_api_token(start_hub, tmp_path):
    """The fake server accepts JUPYTER_TOKEN (the route secret) and echoes what the proxy sent."""
    hub = await start_hub(**plugin_settings(tmp_path, SingleUserSpawner, cmd=[sys.executable, FAKE_SERVER], args=[]))
    token = await hub.new_token("fay")
    await start_and_wait(hub, "fay", token)
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{hub.url}/user/fay/echo", headers={"Authorization": f"token {token}"}) as r:
            assert r.status == 200, await r.text()
            sent = (await r.json())["headers"]
        async with s.get(f"{hub.url}/user/fay/api/env", headers={"Authorization": f"token {token}"}) as r:
            env = await r.json()
    presented = next(v for k, v in sent if k.lower() == "authorization").split(" ", 1)[1]
    assert presented != token
    # the secret the proxy presents: a hub token whose only right is access to this one server
    who = await hub.api("GET", "/user", token=presented)
    identify = {"read:users:name!user=fay", "read:users:groups!user=fay"}  # what every token of fay may read
    assert who.status == 200 and set(who.body["scopes"]) - identify == {"access:servers!server=fay/"}, who.body
    # it can neither report activity or a port, nor read tokens, nor stop the server
    assert (await hub.api("POST", "/users/fay/activity", token=presented, json_body={"servers": {}})).status == 403
    assert (await hub.api("POST", "/batchspawner", token=presented, json_body={"port": 1234})).status == 403
    assert (await hub.api("GET", "/users/fay/tokens", token=presented)).status in (403, 404)
    assert (await hub.api("DELETE", "/users/fay/server", token=presented)).status in (403, 404)
    assert env["JUPYTERHUB_API_TOKEN"] == "[redacted]" and env["JUPYTERHUB_USER"] == "fay"
