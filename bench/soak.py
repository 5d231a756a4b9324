"""Soak: steady load through the real gateway for a long time, its memory sampled every minute.

Run by hand (not in CI)::

    python bench/soak.py --minutes 60 --csv /tmp/soak.csv

It starts ``python -m gateway`` with ``--users`` users, each running the fake single-user server
(tests/fake_server.py), and keeps, for ``--minutes``:

* ``--rate`` small proxied requests per second in total (GET api/status, POST echo with a
  small body), round-robin over the users, each carrying the user's token;
* one websocket per user echoing a message every second, and one websocket opened and
  closed per user every 10 seconds;
* one 4 MiB download (``source``) and one 4 MiB upload (``sink``) per user every 30 seconds.

Every ``--sample`` seconds (default 60) it appends ``minute,rss_mib,requests,errors,ws_round_trips``
to the CSV (RSS of the gateway process from /proc), and prints the whole curve at the end.
Every loop is bounded by the duration; the gateway and its servers are stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gatewayrun import ROOT, RunningGateway, rss_mib  # noqa: E402

STREAM_BYTES = 4 * 1024 * 1024


class Counts:
    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.ws_round_trips = 0
        self.last_error = ""

    def fail(self, what: str) -> None:
        self.errors += 1
        self.last_error = what


async def small_requests(gw: RunningGateway, session: aiohttp.ClientSession, rate: float, until: float,
                         counts: Counts) -> None:
    users = gw.users
    interval = 1.0 / rate
    next_at = time.monotonic()
    i = 0
    pending: set[asyncio.Task] = set()

    async def one(user: str, post: bool) -> None:
        headers = {"Authorization": f"token {gw.tokens[user]}"}
        try:
            if post:
                async with session.post(gw.user_url(user) + "echo", data=b"x" * 512, headers=headers) as r:
                    await r.read()
            else:
                async with session.get(gw.user_url(user) + "api/status", headers=headers) as r:
                    await r.read()
            counts.requests += 1
            if r.status != 200:
                counts.fail(f"{r.status} from {user}")
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            counts.fail(repr(e))

    while time.monotonic() < until:
        user = users[i % len(users)]
        if len(pending) < 200:  # bounded concurrency even if the gateway slows down
            task = asyncio.create_task(one(user, i % 4 == 0))
            pending.add(task)
            task.add_done_callback(pending.discard)
        i += 1
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    if pending:
        await asyncio.wait(pending, timeout=30)


async def websocket_user(gw: RunningGateway, session: aiohttp.ClientSession, user: str, until: float,
                         counts: Counts) -> None:
    url = gw.user_url(user) + "ws"
    headers = {"Authorization": f"token {gw.tokens[user]}"}
    tick = 0
    while time.monotonic() < until:
        try:
            async with session.ws_connect(url, headers=headers, heartbeat=None) as ws:
                while time.monotonic() < until:
                    await ws.send_str(f"ping {tick}")
                    msg = await asyncio.wait_for(ws.receive(), 30)
                    if msg.type != aiohttp.WSMsgType.TEXT or msg.data != f"ping {tick}":
                        counts.fail(f"websocket echo: {msg.type}")
                        break
                    counts.ws_round_trips += 1
                    tick += 1
                    if tick % 10 == 0:  # a short-lived websocket too
                        async with session.ws_connect(url, headers=headers) as other:
                            await other.send_str("hi")
                            await asyncio.wait_for(other.receive(), 30)
                    await asyncio.sleep(1)
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            counts.fail(f"websocket: {e!r}")
            await asyncio.sleep(1)


async def streams_user(gw: RunningGateway, session: aiohttp.ClientSession, user: str, until: float,
                       counts: Counts) -> None:
    headers = {"Authorization": f"token {gw.tokens[user]}"}
    while time.monotonic() < until:
        try:
            got = 0
            async with session.get(gw.user_url(user) + f"source?bytes={STREAM_BYTES}", headers=headers) as r:
                async for chunk in r.content.iter_chunked(256 * 1024):
                    got += len(chunk)
            if got != STREAM_BYTES:
                counts.fail(f"download got {got}")

            async def body():
                block = b"u" * (256 * 1024)
                for _ in range(STREAM_BYTES // len(block)):
                    yield block

            async with session.put(gw.user_url(user) + "sink", data=body(),
                                   headers={**headers, "Content-Length": str(STREAM_BYTES)}) as r:
                seen = await r.json()
            if seen.get("bytes") != STREAM_BYTES:
                counts.fail(f"upload: {seen}")
            counts.requests += 2
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as e:
            counts.fail(f"stream: {e!r}")
        await asyncio.sleep(min(30, max(0.0, until - time.monotonic())))


async def sampler(gw: RunningGateway, csv: Path, every: float, until: float, counts: Counts) -> list[str]:
    lines = []
    start = time.monotonic()
    with open(csv, "w") as f:
        f.write("minute,rss_mib,requests,errors,ws_round_trips\n")
        while True:
            minute = (time.monotonic() - start) / 60
            line = f"{minute:.1f},{rss_mib(gw.pid):.1f},{counts.requests},{counts.errors},{counts.ws_round_trips}"
            f.write(line + "\n")
            f.flush()
            lines.append(line)
            if time.monotonic() >= until:
                return lines
            await asyncio.sleep(min(every, max(0.0, until - time.monotonic())))


async def soak(args: argparse.Namespace) -> int:
    users = [f"soak{i}" for i in range(args.users)]
    workdir = Path(tempfile.mkdtemp(prefix="gateway-soak-"))
    gw = RunningGateway(workdir, users, spawner_cmd=[sys.executable, str(ROOT / "tests" / "fake_server.py")])
    try:
        gw.start()
        print(f"gateway pid {gw.pid} at {gw.url}, {len(users)} users; folder {workdir}", flush=True)
        until = time.monotonic() + args.minutes * 60
        counts = Counts()
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
            tasks = [asyncio.create_task(small_requests(gw, session, args.rate, until, counts))]
            tasks += [asyncio.create_task(websocket_user(gw, session, u, until, counts)) for u in users]
            tasks += [asyncio.create_task(streams_user(gw, session, u, until, counts)) for u in users]
            lines = await sampler(gw, Path(args.csv), args.sample, until, counts)
            await asyncio.wait(tasks, timeout=60)
            for task in tasks:
                task.cancel()
    finally:
        gw.stop()
    print("minute,rss_mib,requests,errors,ws_round_trips")
    print("\n".join(lines))
    if counts.errors:
        print(f"{counts.errors} errors; last: {counts.last_error}")
    return 1 if counts.errors else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--users", type=int, default=5)
    ap.add_argument("--rate", type=float, default=100, help="small requests per second, all users together")
    ap.add_argument("--sample", type=float, default=60, help="seconds between RSS samples")
    ap.add_argument("--csv", default=str(Path(tempfile.gettempdir()) / "soak.csv"))
    return asyncio.run(soak(ap.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
