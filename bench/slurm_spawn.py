"""How long a batchspawner.SlurmSpawner start through gateway takes, against a bare ``sbatch`` of the same job.

Starts a single-node Slurm cluster (tests/spawn/slurm_cluster.py), a throw-away Unix user and a gateway process
configured as in tests/spawn/slurm_gateway.py. For N rounds, alternating so machine noise falls on both:
  gateway: ``POST /hub/api/users/<user>/server`` to the server model saying ``ready`` (polled every 20 ms);
           the job is batchspawner's script: sbatch, srun, batchspawner-singleuser jupyterhub-singleuser;
  bare:    ``sbatch`` of a script with the same #SBATCH lines and the same command line and environment
           variables, its port report answered by a stub of ``POST /hub/api/batchspawner`` in this process;
           timed to the server answering HTTP at <prefix>api/status (a TCP connect every 10 ms, then a GET).
Also reported: the median time from DELETE to the job gone from squeue. Needs root (slurmd, useradd).

Usage: python bench/slurm_spawn.py [-n ROUNDS]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import pwd
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from bench.spawn_time import ready_by_hand  # noqa: E402
from tests.helpers.hub import GatewayProcess, free_port  # noqa: E402
from tests.helpers.spawn import api  # noqa: E402
from tests.spawn.slurm_cluster import SlurmCluster  # noqa: E402
from tests.spawn.slurm_gateway import slurm_config, wait_ready  # noqa: E402

BIN = Path(sys.executable).parent
JOB_NAME = "spawner-jupyterhub"


class PortReports:
    """A stand-in hub for the bare jobs: ``POST /hub/api/batchspawner`` records each job's port, and
    ``GET /hub/api`` answers the version check jupyterhub-singleuser makes before it listens."""

    def __init__(self):
        self.ports: asyncio.Queue[int] = asyncio.Queue()
        self.runner: web.AppRunner | None = None
        self.port = free_port()

    async def start(self) -> None:
        async def report(request: web.Request) -> web.Response:
            self.ports.put_nowait(int((await request.json())["port"]))
            return web.json_response({"message": "BatchSpawner data configured"})

        async def version(request: web.Request) -> web.Response:
            from jupyterhub import __version__

            return web.json_response({"version": __version__})

        app = web.Application()
        app.router.add_post("/hub/api/batchspawner", report)
        app.router.add_get("/hub/api", version)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def bare_script(user: str, home: str) -> str:
    # batchspawner's SlurmSpawner template, filled as for the gateway's jobs
    keep = ",".join(sorted(bare_env(user, home, 0)))
    return f"""#!/bin/bash
#SBATCH --output={home}/bare_slurm_%j.log
#SBATCH --job-name=bare-jupyter
#SBATCH --chdir={home}
#SBATCH --export={keep}
#SBATCH --get-user-env=L
#SBATCH --partition=debug

set -euo pipefail

trap 'echo SIGTERM received' TERM
srun batchspawner-singleuser jupyterhub-singleuser --ServerApp.ip=127.0.0.1 --allow-root
"""


def bare_env(user: str, home: str, reports_port: int) -> dict[str, str]:
    api_url = f"http://127.0.0.1:{reports_port}/hub/api"
    prefix = f"/user/{user}/"
    return {
        "PATH": os.environ["PATH"], "SLURM_CONF": os.environ["SLURM_CONF"], "HOME": home, "USER": user,
        "SHELL": "/bin/bash", "JUPYTERHUB_API_TOKEN": secrets.token_hex(32),
        "JUPYTERHUB_CLIENT_ID": f"jupyterhub-user-{user}", "JUPYTERHUB_API_URL": api_url,
        "JUPYTERHUB_ACTIVITY_URL": f"{api_url}/users/{user}/activity", "JUPYTERHUB_USER": user,
        "JUPYTERHUB_SERVER_NAME": "", "JUPYTERHUB_BASE_URL": "/", "JUPYTERHUB_SERVICE_PREFIX": prefix,
        "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:0{prefix}", "JUPYTERHUB_HOST": "",
        "JUPYTERHUB_OAUTH_CALLBACK_URL": f"{prefix}oauth_callback", "JUPYTERHUB_DEFAULT_URL": "/lab",
        "JUPYTERHUB_OAUTH_SCOPES": json.dumps([f"access:servers!server={user}/"]),
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES": json.dumps([f"access:servers!server={user}/"]),
    }


RUNNING_LINE = re.compile(r"^\[I (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) ServerApp\] Jupyter Server \S+ is running at")


def running_since(log: Path, limit: float = 30) -> float:
    """Wall-clock time at which the job's jupyter-server logged "is running at" (it listens by then)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if log.exists():
            for line in log.read_text(errors="replace").splitlines():
                match = RUNNING_LINE.match(line)
                if match:
                    return datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        time.sleep(0.05)
    raise TimeoutError(f"no 'is running at' line in {log}")


async def wait_no_jobs(cluster: SlurmCluster, limit: float = 60) -> float:
    t0 = time.perf_counter()
    while cluster.jobs():
        if time.perf_counter() - t0 > limit:
            raise TimeoutError(f"jobs still queued: {cluster.jobs()}")
        await asyncio.sleep(0.05)
    return time.perf_counter() - t0


async def gateway_round(gw: GatewayProcess, user: str, home: str, token: str,
                        cluster: SlurmCluster) -> tuple[float, float, float]:
    async with aiohttp.ClientSession() as s:
        t0 = time.perf_counter()
        status, body = await api(s, gw.url, "POST", f"/users/{user}/server", token)
        assert status in (201, 202), body
        await wait_ready(gw.url, user, token, timeout=180)
        spawn_s = time.perf_counter() - t0
        ready_at = time.time()
        [job] = cluster.jobs()
        notice_s = ready_at - running_since(Path(home) / f"jupyterhub_slurmspawner_{job['id']}.log")
        t0 = time.perf_counter()
        status, body = await api(s, gw.url, "DELETE", f"/users/{user}/server", token)
        assert status in (202, 204), body
        await wait_no_jobs(cluster)
        return spawn_s, time.perf_counter() - t0, notice_s


async def bare_round(user: str, home: str, reports: PortReports, cluster: SlurmCluster) -> tuple[float, float]:
    env = bare_env(user, home, reports.port)
    t0 = time.perf_counter()
    out = await asyncio.to_thread(subprocess.run, ["sbatch", "--parsable"], input=bare_script(user, home),
                                  env=env, cwd=home, capture_output=True, text=True, check=True, timeout=60)
    job_id = out.stdout.strip().split(";")[0]
    try:
        port = await asyncio.wait_for(reports.ports.get(), 180)
        await ready_by_hand(port, f"/user/{user}/api/status", limit=180)
        bare_s, answered_at = time.perf_counter() - t0, time.time()
        return bare_s, answered_at - running_since(Path(home) / f"bare_slurm_{job_id}.log")
    finally:
        cluster.client("scancel", job_id, check=False)
        await wait_no_jobs(cluster)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--rounds", type=int, default=5)
    args = parser.parse_args()
    cluster = SlurmCluster()
    cluster.start()
    user = "gwbench" + secrets.token_hex(3)
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", user], check=True)
    home = pwd.getpwnam(user).pw_dir
    os.environ["SLURM_CONF"] = str(cluster.conf_path)
    os.environ["PATH"] = os.pathsep.join([str(BIN), os.environ["PATH"]])  # the jobs' batchspawner-singleuser
    reports = PortReports()
    gw = None
    try:
        await reports.start()
        with tempfile.TemporaryDirectory() as workdir:
            port = free_port()
            gw = GatewayProcess(Path(workdir), slurm_config(user=user, hub_port=port, poll_interval=30), port)
            gw.start()  # its environment is this one: SLURM_CONF and PATH above
            await gw.wait_ready(60)
            token = gw.run_cli("token", user, *gw.config_file_args).stdout.strip().splitlines()[-1]
            await gateway_round(gw, user, home, token, cluster)  # warm-up: page cache, .pyc files
            await bare_round(user, home, reports, cluster)
            spawns, stops, bares, gw_notices, bare_notices = [], [], [], [], []
            for _ in range(args.rounds):
                spawn_s, stop_s, notice_s = await gateway_round(gw, user, home, token, cluster)
                spawns.append(spawn_s)
                stops.append(stop_s)
                gw_notices.append(notice_s)
                bare_s, notice_s = await bare_round(user, home, reports, cluster)
                bares.append(bare_s)
                bare_notices.append(notice_s)
            gw.stop()
    finally:
        if gw is not None:
            gw.stop()
        await reports.stop()
        cluster.stop()
        cluster.remove()
        subprocess.run(["userdel", "--remove", user], check=False, capture_output=True)
    sp, ba, st = statistics.median(spawns), statistics.median(bares), statistics.median(stops)
    gn, bn = statistics.median(gw_notices) * 1000, statistics.median(bare_notices) * 1000
    print(f"{'job':<24}{'rounds':>7}{'gateway s':>11}{'bare s':>9}{'ratio':>7}{'extra ms':>10}{'stop s':>8}"
          f"{'gw notice ms':>14}{'bare notice ms':>16}")
    print(f"{'SlurmSpawner (sbatch)':<24}{args.rounds:>7}{sp:>11.3f}{ba:>9.3f}{sp / ba:>7.2f}{(sp - ba) * 1000:>10.0f}"
          f"{st:>8.3f}{gn:>14.0f}{bn:>16.0f}")
    print(f"all gateway s: {' '.join(f'{x:.2f}' for x in spawns)}")
    print(f"all bare s:    {' '.join(f'{x:.2f}' for x in bares)}")
    print("medians. gateway: POST to ready; bare: sbatch of the same job to its server answering;")
    print("stop: DELETE to the job gone from squeue; notice: from the job's server logging 'is running at'")
    print("to gateway calling it ready (gw) or to the bare poll's first HTTP answer (bare)")


if __name__ == "__main__":
    asyncio.run(main())
