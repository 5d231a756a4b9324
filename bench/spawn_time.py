"""How long a start takes to see a server ready, against starting it by hand.

Two measurements (``--mode``):
- ``api`` (default): a real gateway process (bench/gatewayrun.py) and the REST call a client makes:
  from ``POST /hub/api/users/{name}/server`` to the server being ready (the POST answers 201 once
  it is; a 202 would be followed by polling the server model every 10 ms), against the same
  jupyter-server started by hand (below). Each round then stops the server through the API.
- ``spawner``: ProcessSpawner.start() called in this process, without HTTP or the store.

For each server kind, N rounds; each round times
  spawner: ProcessSpawner.start() from call to return (launch, port polling, the first HTTP answer);
  direct:  subprocess.Popen of the very same command line, environment and folder, then polling the
           port the same way (a TCP connect every 10 ms, then one GET of <prefix>api/status).
The two alternate within the run, so machine noise falls on both. The ratio of the medians is the
spawner's overhead; 1.00 means none. Also reported: the median time of a graceful stop(), and for
the fake server how long after it started listening start() returned ("notice": the fake server
prints its CLOCK_MONOTONIC time right after binding; that clock is shared by all processes).

Usage: python bench/spawn_time.py [-n ROUNDS] [--only fake|jupyter-server] [--mode api|spawner]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.spawners import procs  # noqa: E402
from gateway.spawners.base import ServerSpec, SpawnerOptions  # noqa: E402
from gateway.spawners.local import ProcessSpawner  # noqa: E402

KINDS = {
    "fake": (sys.executable, str(ROOT / "tests" / "backends" / "fake_server.py")),
    "jupyter-server": (str(Path(sys.executable).parent / "jupyter-server"),),
}


async def ready_by_hand(port: int, path: str, popen: subprocess.Popen | None = None, limit: float = 120.0) -> None:
    """Poll like the spawner does, but written independently: connect every 10 ms, then one GET.
    ``popen``: the server's process, when it is a child of this one (a batch job is not)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while loop.time() < deadline:
        if popen is not None and popen.poll() is not None:
            raise RuntimeError(f"server exited with {popen.returncode}")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.01)
            continue
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
            line = await asyncio.wait_for(reader.readline(), deadline - loop.time())
        finally:
            writer.close()
        if line.startswith(b"HTTP/"):
            return
    raise TimeoutError("server never answered")


def listening_at(log_path: str) -> float | None:
    match = re.search(r"listening on \S+ at monotonic ([0-9.]+)", Path(log_path).read_text())
    return float(match.group(1)) if match else None


async def one_round(kind: str, data_dir: str) -> tuple[float, float, float, float | None]:
    options = SpawnerOptions(cmd=KINDS[kind], data_dir=data_dir, start_timeout=120, http_timeout=120)
    spec = ServerSpec(user="bench", api_token=secrets.token_hex(32), hub_api_url="http://127.0.0.1:1/hub/api")

    spawner = ProcessSpawner(options, spec)
    t0 = time.perf_counter()
    await spawner.start()
    spawner_s = time.perf_counter() - t0
    listened = listening_at(spawner.log_path)
    notice_s = time.monotonic() - listened if listened is not None else None
    t0 = time.perf_counter()
    await spawner.stop()
    stop_s = time.perf_counter() - t0

    # by hand: the same argv, environment and folder the spawner would use
    port = procs.reserve_port()
    procs.release_port(port)
    twin = ProcessSpawner(options, spec)
    home = twin.home_dir()
    argv, env = twin.get_cmd(port, as_root=os.geteuid() == 0), twin.get_env(port, None, home)
    t0 = time.perf_counter()
    popen = subprocess.Popen(argv, env=env, cwd=home, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        await ready_by_hand(port, f"{spec.server_prefix}api/status", popen)
        direct_s = time.perf_counter() - t0
    finally:
        os.killpg(popen.pid, signal.SIGKILL)
        popen.wait()
    return spawner_s, direct_s, stop_s, notice_s


async def by_hand(kind: str, data_dir: str) -> float:
    """The same command line, environment and folder the gateway's spawner uses, started by hand."""
    options = SpawnerOptions(cmd=KINDS[kind], data_dir=data_dir, start_timeout=120, http_timeout=120)
    spec = ServerSpec(user="bench", api_token=secrets.token_hex(32), hub_api_url="http://127.0.0.1:1/hub/api")
    port = procs.reserve_port()
    procs.release_port(port)
    twin = ProcessSpawner(options, spec)
    home = twin.home_dir()
    procs.make_private_dir(home)
    argv, env = twin.get_cmd(port, as_root=os.geteuid() == 0), twin.get_env(port, None, home)
    t0 = time.perf_counter()
    popen = subprocess.Popen(argv, env=env, cwd=home, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        await ready_by_hand(port, f"{spec.server_prefix}api/status", popen)
        return time.perf_counter() - t0
    finally:
        os.killpg(popen.pid, signal.SIGKILL)
        popen.wait()


async def api_round(gateway, kind: str, data_dir: str) -> tuple[float, float, float, None]:
    """POST .../server to ready through a real gateway, then the same server by hand."""
    import aiohttp

    headers = {"Authorization": f"token {gateway.admin_token}"}
    api = gateway.url + "/hub/api/users/bench/server"
    async with aiohttp.ClientSession(headers=headers) as s:
        t0 = time.perf_counter()
        async with s.post(api) as r:
            status = r.status
        while status == 202:  # not ready within the POST: poll the model (bounded by start_timeout)
            async with s.get(api) as r:
                if (await r.json()).get("ready"):
                    break
            if time.perf_counter() - t0 > 150:
                raise TimeoutError("server never became ready")
            await asyncio.sleep(0.01)
        else:
            if status != 201:
                raise RuntimeError(f"POST answered {status}")
        api_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        async with s.delete(api) as r:
            status = r.status
        while status == 202:
            async with s.get(api) as r:
                if (await r.json()).get("stopped"):
                    break
            await asyncio.sleep(0.01)
        stop_s = time.perf_counter() - t0
    return api_s, await by_hand(kind, data_dir), stop_s, None


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--rounds", type=int, default=10)
    parser.add_argument("--only", choices=sorted(KINDS))
    parser.add_argument("--mode", choices=("api", "spawner"), default="api")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as data_dir:
        for kind in [args.only] if args.only else list(KINDS):
            if args.mode == "api":
                sys.path.insert(0, str(ROOT / "bench"))
                from gatewayrun import RunningGateway

                gateway = RunningGateway(Path(data_dir) / f"gw-{kind}", [], spawner_cmd=list(KINDS[kind]),
                                         extra_config="c.Authenticator.allowed_users = {'bench'}").start()
                try:
                    one = lambda: api_round(gateway, kind, data_dir)  # noqa: E731
                    await one()  # warm-up: page cache, .pyc files
                    results = [await one() for _ in range(args.rounds)]
                finally:
                    gateway.stop()
            else:
                await one_round(kind, data_dir)  # warm-up: page cache, .pyc files
                results = [await one_round(kind, data_dir) for _ in range(args.rounds)]
            spawner_s, direct_s, stop_s = (statistics.median(col) for col in list(zip(*results))[:3])
            notices = [r[3] for r in results if r[3] is not None]
            notice = f"{statistics.median(notices) * 1000:.1f}" if notices else "-"
            rows.append((kind, args.rounds, spawner_s, direct_s, spawner_s / direct_s,
                         spawner_s - direct_s, stop_s, notice))
    first = "POST→ready s" if args.mode == "api" else "spawner s"
    print(f"{'server':<16}{'rounds':>7}{first:>11}{'direct s':>10}{'ratio':>7}{'extra ms':>10}"
          f"{'stop s':>8}{'notice ms':>11}")
    for kind, n, sp, di, ratio, extra, stop, notice in rows:
        print(f"{kind:<16}{n:>7}{sp:>11.3f}{di:>10.3f}{ratio:>7.2f}{extra * 1000:>10.1f}{stop:>8.3f}{notice:>11}")
    print("medians. " + ("POST /hub/api/users/bench/server to ready through a gateway process"
                         if args.mode == "api" else "spawner: start() to ready")
          + "; direct: Popen + polling by hand; stop: graceful stop;")
    print("notice: from the server binding its port to start() returning (fake server only)")


if __name__ == "__main__":
    asyncio.run(main())
