"""batchspawner.SlurmSpawner, unchanged, through a real gateway process on a real single-node Slurm cluster.

The gateway runs ``python -m gateway -f jupyterhub_config.py`` with the operator's config from
tests/spawn/slurm_gateway.py. Each start is a real ``sbatch`` of batchspawner's job script; inside the job
``batchspawner-singleuser jupyterhub-singleuser`` reports its port to ``POST /hub/api/batchspawner`` and serves
JupyterLab, which the tests reach only through the gateway's proxy. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.helpers.hub import free_port
from tests.helpers.spawn import api, chromium_page, run_in_kernel
from tests.spawn.slurm_gateway import ADMIN, job_logs, slurm_config, wait_ready, wait_stopped

JOB_NAME = "spawner-jupyterhub"  # batchspawner's --job-name
LAB_TIMEOUT_MS = 180_000


class SlurmHub:
    """A gateway process with the Slurm config, the Unix user it serves and tokens for that user and the admin."""

    def __init__(self, gw, cluster, user: str, password: str):
        self.gw, self.cluster, self.user, self.password = gw, cluster, user, password
        self.home = pwd.getpwnam(user).pw_dir
        self.token = ""
        self.admin_token = ""

    @property
    def url(self) -> str:
        return self.gw.url

    @property
    def server_url(self) -> str:
        return f"{self.gw.url}/user/{self.user}/"

    async def start(self) -> None:
        self.gw.start()
        await self.gw.wait_ready(timeout=60)
        if not self.token:
            self.token = self._cli_token(self.user)
            self.admin_token = self._cli_token(ADMIN)

    def _cli_token(self, name: str) -> str:
        result = self.gw.run_cli("token", name, "-f", str(self.gw.config_path))
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def jobs(self) -> list[dict[str, str]]:
        return [job for job in self.cluster.jobs() if job["name"] == JOB_NAME]

    def diagnostics(self) -> str:
        return f"gateway log:\n{self.gw.log()[-4000:]}\njob logs:\n{job_logs(self.home)}\n{self.cluster.logs(20)}"

    async def start_server(self) -> dict:
        async with aiohttp.ClientSession() as s:
            status, body = await api(s, self.url, "POST", f"/users/{self.user}/server", self.token)
        assert status in (201, 202), (status, body, self.diagnostics())
        try:
            return await wait_ready(self.url, self.user, self.token)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.diagnostics()}") from None

    async def state(self) -> dict:
        """The server's spawner state as an admin (admin:server_state) sees it in the user model."""
        async with aiohttp.ClientSession() as s:
            status, model = await api(s, self.url, "GET", f"/users/{self.user}", self.admin_token)
        assert status == 200, model
        return model["servers"][""]["state"]

    async def wait_job_gone(self, job_id: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while any(job["id"] == job_id for job in self.cluster.jobs()):
            assert time.monotonic() < deadline, f"job {job_id} still queued: {self.cluster.jobs()}"
            await asyncio.sleep(0.3)


@pytest.fixture
async def slurm_hub(slurm_cluster, slurm_user, gateway_process, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf_path))  # the gateway's sbatch/squeue/scancel
    # the job finds batchspawner-singleuser and jupyterhub-singleuser on the PATH it keeps (env_keep)
    monkeypatch.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    user, password = slurm_user
    port = free_port()
    gw = gateway_process(slurm_config(user=user, hub_port=port), port=port)
    hub = SlurmHub(gw, slurm_cluster, user, password)
    await hub.start()
    try:
        yield hub
    finally:
        if gw.proc is not None and gw.proc.poll() is None:
            async with aiohttp.ClientSession() as s:
                await api(s, hub.url, "DELETE", f"/users/{user}/server", hub.token)
        slurm_cluster.cancel_all_jobs()  # whatever a failed test left running


def the_job(hub: SlurmHub) -> dict[str, str]:
    jobs = hub.jobs()
    assert len(jobs) == 1, (jobs, hub.diagnostics())
    return jobs[0]


async def test_rest_start_runs_a_slurm_job_reached_through_the_proxy_and_stop_cancels_it(slurm_hub):
    hub = slurm_hub
    model = await hub.start_server()
    assert model["url"] == f"/user/{hub.user}/"
    job = the_job(hub)
    assert job["state"] == "RUNNING" and job["node"] == hub.cluster.node
    # the plugin's state (its job id) is stored and shown to holders of admin:server_state
    state = await hub.state()
    assert state["job_id"] == job["id"]
    async with aiohttp.ClientSession(headers={"Authorization": f"token {hub.token}"}) as s:
        async with s.get(hub.server_url + "api/status") as r:
            assert r.status == 200, await r.text()
        async with s.get(hub.server_url + "lab/api/settings/") as r:  # JupyterLab's own API
            assert r.status == 200, await r.text()
            assert any(entry["id"].startswith("@jupyterlab/") for entry in (await r.json())["settings"])
    # the port report belongs to the job: the user's own token (not the server's) may not move it
    async with aiohttp.ClientSession() as s:
        status, body = await api(s, hub.url, "POST", "/batchspawner", hub.token, {"port": 1})
    assert status == 403, body
    # a kernel over the proxied websocket, running inside the Slurm job
    assert await run_in_kernel(hub.url, hub.user, hub.token, "1+1") == "2"
    assert await run_in_kernel(hub.url, hub.user, hub.token, "__import__('os').environ['SLURM_JOB_ID']") \
        == repr(job["id"])
    # stop: the job is cancelled
    async with aiohttp.ClientSession() as s:
        status, body = await api(s, hub.url, "DELETE", f"/users/{hub.user}/server", hub.token)
    assert status in (202, 204), body
    await wait_stopped(hub.url, hub.user, hub.token)
    await hub.wait_job_gone(job["id"])
    assert hub.jobs() == []


async def test_a_job_cancelled_behind_the_gateways_back_is_noticed_and_answered_not_running(slurm_hub):
    hub = slurm_hub
    await hub.start_server()
    job = the_job(hub)
    hub.cluster.client("scancel", job["id"])
    await hub.wait_job_gone(job["id"])
    # the poll (Spawner.poll_interval = 1) notices, without any request to the server
    await wait_stopped(hub.url, hub.user, hub.token)
    async with aiohttp.ClientSession(headers={"Authorization": f"token {hub.token}"}) as s:
        async with s.get(hub.server_url + "api/status") as r:
            assert r.status == 424, await r.text()
            assert "no longer running" in (await r.json())["message"]


async def test_a_gateway_restart_finds_the_running_job_again_and_proxies_to_it(slurm_hub):
    hub = slurm_hub
    await hub.start_server()
    job = the_job(hub)
    assert hub.gw.stop() == 0  # SIGTERM; servers are left running (cleanup_servers is off by default)
    assert the_job(hub)["id"] == job["id"]
    await hub.start()
    model = await wait_ready(hub.url, hub.user, hub.token, timeout=60)
    assert model["url"] == f"/user/{hub.user}/"
    assert (await hub.state())["job_id"] == job["id"]
    async with aiohttp.ClientSession(headers={"Authorization": f"token {hub.token}"}) as s:
        async with s.get(hub.server_url + "api/status") as r:
            assert r.status == 200, await r.text()
    assert await run_in_kernel(hub.url, hub.user, hub.token, "1+1") == "2"
    assert the_job(hub)["id"] == job["id"]  # the same job all along, never resubmitted
    async with aiohttp.ClientSession() as s:
        status, body = await api(s, hub.url, "DELETE", f"/users/{hub.user}/server", hub.token)
    assert status in (202, 204), body
    await hub.wait_job_gone(job["id"])


async def test_spawn_page_in_chromium_starts_a_slurm_job_and_opens_jupyterlab(slurm_hub):
    hub = slurm_hub
    async with chromium_page() as page:
        await page.goto(hub.url + "/hub/login?next=%2Fhub%2Fspawn")
        await page.get_by_label("Username").fill(hub.user)
        await page.get_by_label("Password").fill(hub.password)  # PAM: the Unix account's password
        await page.get_by_role("button", name="Log in").click()
        await page.wait_for_url(f"{hub.url}/user/{hub.user}/lab**", timeout=LAB_TIMEOUT_MS)
        await page.locator(".jp-LauncherCard").first.wait_for(timeout=LAB_TIMEOUT_MS)
        job = the_job(hub)
        assert job["state"] == "RUNNING"
        assert (await hub.state())["job_id"] == job["id"]
    async with aiohttp.ClientSession() as s:
        status, body = await api(s, hub.url, "DELETE", f"/users/{hub.user}/server", hub.token)
    assert status in (202, 204), body
    await hub.wait_job_gone(job["id"])
