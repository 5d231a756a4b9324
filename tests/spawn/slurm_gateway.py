"""A gateway configured as an operator configures JupyterHub for batchspawner.SlurmSpawner, and helpers to
drive it: used by tests/spawn/test_slurm_spawner.py and bench/slurm_spawn.py.

Choices (the operator's, written in the config below):
- jobs run as root: ``exec_prefix = ""`` (batchspawner's default is ``sudo -E -u {username}``) and the server
  gets jupyter-server's ``--allow-root``. On this machine kind the Python that runs gateway and the job's
  jupyterhub-singleuser lives under /root (mode 0700), so a job running as the user could not execute it.
  The user is still a Unix account: SlurmSpawner looks it up with pwd.getpwnam (home, shell) and the job
  runs in that home;
- ``env_keep`` lists PATH (the job finds batchspawner-singleuser and jupyterhub-singleuser) and SLURM_CONF
  (the test cluster's config is not /etc/slurm/slurm.conf);
- the job's server listens on 127.0.0.1 (this machine is the only node; a real cluster keeps batchspawner's
  0.0.0.0), and the hub is reached at ``hub_connect_url``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.helpers.spawn import api

ADMIN = "ops"  # an admin without a Unix account: holds admin:server_state for the state checks


def slurm_config(*, user: str, hub_port: int, poll_interval: float = 1.0) -> str:
    return f"""\
c.JupyterHub.spawner_class = "batchspawner.SlurmSpawner"
c.JupyterHub.hub_connect_url = "http://127.0.0.1:{hub_port}"
c.JupyterHub.authenticator_class = "pam"
c.Authenticator.allowed_users = {{{user!r}}}
c.Authenticator.admin_users = {{{ADMIN!r}}}

c.SlurmSpawner.req_partition = "debug"
c.SlurmSpawner.exec_prefix = ""
c.Spawner.env_keep = ["PATH", "SLURM_CONF", "JUPYTERHUB_SINGLEUSER_APP"]
c.Spawner.args = ["--ServerApp.ip=127.0.0.1", "--allow-root"]
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 120
c.Spawner.poll_interval = {poll_interval}
"""


async def wait_ready(base: str, user: str, token: str, timeout: float = 240) -> dict:
    """Poll the server model until ready; returns it. Raises with the model on failure or after ``timeout``."""
    deadline = time.monotonic() + timeout
    model: Any = None
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            status, model = await api(s, base, "GET", f"/users/{user}/server", token)
            if status == 200 and model.get("ready"):
                return model
            if status == 404:  # not (or no longer) recorded: the start failed
                _, user_model = await api(s, base, "GET", f"/users/{user}", token)
                if not (user_model or {}).get("pending") and not (user_model or {}).get("servers"):
                    raise AssertionError(f"the server of {user} is gone while starting: {user_model}")
            await asyncio.sleep(0.05)
    raise AssertionError(f"the server of {user} was not ready after {timeout} s: {model}")


async def wait_stopped(base: str, user: str, token: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            status, model = await api(s, base, "GET", f"/users/{user}", token)
            if status == 200 and not model.get("servers") and not model.get("pending"):
                return
            await asyncio.sleep(0.1)
    raise AssertionError(f"the server of {user} did not stop within {timeout} s")


def job_logs(home: str) -> str:
    """The jobs' own output (batchspawner's --output in the user's home), for failure messages."""
    parts = []
    for path in sorted(Path(home).glob("jupyterhub_slurmspawner_*.log")):
        parts.append(f"--- {path.name} ---\n" + "\n".join(path.read_text(errors="replace").splitlines()[-40:]))
    return "\n".join(parts)

