"""Benchmark of the REST API hot paths, beside a bare aiohttp handler measured in the same run.

    python bench/api_bench.py [--users 100,1000,10000] [--seconds 5] [--connections 8]

Measures requests/s of

- ``GET /hub/api/users`` unpaginated (JupyterHub's default: up to api_page_max_limit = 200 users)
  and paginated (``Accept: application/jupyterhub-pagination+json``, default limit 50), with an
  admin token, for each database size;
- ``GET /hub/api/user`` with a cached token;
- a bare aiohttp handler answering a small constant JSON body (the ceiling for one process).

The gateway runs as ``python -m gateway`` (a real process, sqlite file, default settings) pinned
to CPU 0 with taskset; the load generator runs on CPU 1: ``wrk`` when /usr/bin/wrk exists, else a
bounded aiohttp client with N concurrent connections. Not a test: figures depend on the machine.
For scale, JupyterHub 6.1.1 on the reference machine serves ``GET /hub/api/users`` at 76 req/s with
100 users and 46 req/s with 1,000.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
WRK = "/usr/bin/wrk"
TOKEN = "bench-admin-token-000000000001"
PAGINATED = {"Accept": "application/jupyterhub-pagination+json"}

BARE_APP = textwrap.dedent('''
    import json, sys
    from aiohttp import web
    BODY = json.dumps({"kind": "user", "name": "root", "admin": True, "groups": [], "token_id": "a1",
                       "session_id": None, "scopes": ["admin:users", "read:users"]}).encode()
    async def handler(request):
        return web.Response(body=BODY, content_type="application/json")
    app = web.Application()
    app.router.add_get("/bare", handler)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
''')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(cpu: int, argv: list[str]) -> list[str]:
    taskset = shutil.which("taskset")
    return [taskset, "-c", str(cpu), *argv] if taskset and (os.cpu_count() or 1) > 1 else argv


async def wait_ready(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as r:
                    if r.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise TimeoutError(url)


def start_gateway(workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    (workdir / "jupyterhub_config.py").write_text(
        f'c.JupyterHub.api_tokens = {{"{TOKEN}": "root"}}\nc.Authenticator.admin_users = {{"root"}}\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(pinned(0, [sys.executable, "-m", "gateway", "-f", "jupyterhub_config.py",
                                       f"--port={port}", "--ip=127.0.0.1", "--log-level=ERROR"]),
                            cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=open(workdir / "log", "wb"))
    return proc, f"http://127.0.0.1:{port}"


async def add_users(url: str, total: int) -> None:
    """Bring the user count up to ``total`` (root included) through the API, in batches."""
    headers = {"Authorization": f"token {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.get(url + "/hub/api/users?limit=1", headers=PAGINATED) as r:
            have = (await r.json())["_pagination"]["total"]
        names = [f"user{i:05d}" for i in range(have, total)]
        for i in range(0, len(names), 1000):
            async with session.post(url + "/hub/api/users", json={"usernames": names[i:i + 1000]}) as r:
                assert r.status == 201, await r.text()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, seconds: float, connections: int, headers: dict[str, str]) -> tuple[float, int]:
    argv = [WRK, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    out = subprocess.run(pinned(1, argv + [url]), capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{errors.group(1)} error responses from {url}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), int(re.search(r"(\d+) requests in", out).group(1))


async def python_load(url: str, seconds: float, connections: int, headers: dict[str, str]) -> tuple[float, int]:
    """A bounded aiohttp client: ``connections`` workers looping until the deadline."""
    done = 0
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        async def worker() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                async with session.get(url) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"{r.status} from {url}")
                done += 1
        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(connections)))
        return done / (time.monotonic() - started), done


@dataclass
class Figure:
    rate: float  # requests/s as measured (depends on what else the machine runs)
    cpu_ms: float  # server CPU time per request: steadier on a shared machine

    @property
    def capacity(self) -> float:
        """Requests/s one fully available core would serve at this CPU cost."""
        return 1000 / self.cpu_ms


def measure(pid: int, url: str, seconds: float, connections: int, headers: dict[str, str] | None = None) -> Figure:
    headers = dict(headers or {})
    if os.path.exists(WRK):
        wrk(url, 1, connections, headers)  # warm-up: caches, sqlite pages
        before = cpu_seconds(pid)
        rate, count = wrk(url, seconds, connections, headers)
    else:
        asyncio.run(python_load(url, 1, connections, headers))
        before = cpu_seconds(pid)
        rate, count = asyncio.run(python_load(url, seconds, connections, headers))
    return Figure(rate, (cpu_seconds(pid) - before) * 1000 / max(count, 1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", default="100,1000,10000", help="database sizes, comma separated")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    sizes = sorted(int(n) for n in args.users.split(","))
    tool = "wrk" if os.path.exists(WRK) else "python aiohttp client"
    print(f"load: {tool}, {args.connections} connections, {args.seconds:g}s per figure; "
          f"server on CPU 0, load on CPU 1 ({os.cpu_count()} CPUs)")
    auth = {"Authorization": f"token {TOKEN}"}
    results: dict[str, Figure] = {}
    bare_port = free_port()
    bare = subprocess.Popen(pinned(0, [sys.executable, "-c", BARE_APP, str(bare_port)]))
    try:
        asyncio.run(wait_ready(f"http://127.0.0.1:{bare_port}/bare"))
        results["bare aiohttp handler"] = measure(bare.pid, f"http://127.0.0.1:{bare_port}/bare", args.seconds,
                                                  args.connections)
    finally:
        bare.terminate()
        bare.wait()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_gateway(Path(tmp))
        try:
            asyncio.run(wait_ready(url + "/hub/health"))
            results["GET /hub/api/user (cached token)"] = measure(proc.pid, url + "/hub/api/user", args.seconds,
                                                                  args.connections, auth)
            for size in sizes:
                asyncio.run(add_users(url, size))
                results[f"GET /hub/api/users, {size} users, unpaginated (200)"] = measure(
                    proc.pid, url + "/hub/api/users", args.seconds, args.connections, auth)
                results[f"GET /hub/api/users, {size} users, paginated (50)"] = measure(
                    proc.pid, url + "/hub/api/users", args.seconds, args.connections, {**auth, **PAGINATED})
        finally:
            proc.terminate()
            proc.wait()
    bare = results["bare aiohttp handler"]
    print(f"{'':55s} {'req/s':>8s} {'of bare':>8s} {'CPU ms/req':>11s} {'req/s/core':>11s} {'of bare':>8s}")
    for name, f in results.items():
        print(f"{name:55s} {f.rate:8.0f} {f.rate / bare.rate:8.1%} {f.cpu_ms:11.3f} {f.capacity:11.0f}"
              f" {f.capacity / bare.capacity:8.1%}")
    print(json.dumps({k: {"rps": round(f.rate), "cpu_ms": round(f.cpu_ms, 3)} for k, f in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
