"""The gateway as a real process: one per database, graceful SIGTERM, SIGHUP reload, SIGKILL under write load."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import time

import aiohttp

from tests.helpers.paths import FAKE_SERVER

FAKE = FAKE_SERVER
# A server that takes a moment to start, so a start request is still in flight when SIGTERM comes.
SLOW_FAKE = ("/bin/sh", "-c", 'sleep 1.5; exec "$@"', "sh", *FAKE)


async def wait_until(predicate, timeout: float = 30, interval: float = 0.05):
    """Poll a sync or async predicate until it returns something truthy (bounded); return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        await asyncio.sleep(interval)
    raise AssertionError("condition not reached in time")


def cli_token(gw, user: str) -> str:
    result = gw.run_cli("token", user, "-f", str(gw.config_path))
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def db_rows(gw, sql: str, params=()) -> list[tuple]:
    """Read the gateway's sqlite file directly (WAL lets a reader in while the gateway writes)."""
    with sqlite3.connect(f"file:{gw.workdir / 'gateway.sqlite'}?mode=ro", uri=True) as db:
        return db.execute(sql, params).fetchall()


async def refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return True
    writer.close()
    return False


async def test_second_gateway_on_same_database_refuses(gateway_process):
    gw = gateway_process("c.Authenticator.admin_users = {'alice'}\n")
    gw.start()
    await gw.wait_ready()
    second = gw.run_cli("-f", str(gw.config_path), "--port=1", "--ip=127.0.0.1", timeout=60)
    assert second.returncode == 1
    assert "Another gateway" in second.stderr and "already running on the database" in second.stderr
    assert str(gw.proc.pid) in second.stderr
    # the token and upgrade-db commands still work while the gateway runs
    token = cli_token(gw, "alice")
    async with aiohttp.ClientSession() as s:
        async with s.get(gw.url + "/hub/api/user", headers={"Authorization": f"token {token}"}) as r:
            assert r.status == 200 and (await r.json())["name"] == "alice"
    upgrade = gw.run_cli("upgrade-db", "-f", str(gw.config_path))
    assert upgrade.returncode == 0 and "up to date" in upgrade.stderr
    # once it has stopped, the lock is free again
    assert gw.stop() == 0
    gw.start()
    await gw.wait_ready()


async def test_sigterm_finishes_in_flight_requests_and_keeps_servers(gateway_process):
    config = (f"c.Authenticator.admin_users = {{'alice'}}\nc.Spawner.cmd = {list(SLOW_FAKE)!r}\n"
              "c.Spawner.start_timeout = 30\nc.Gateway.shutdown_timeout = 60\n")  # generous for loaded CI machines
    gw = gateway_process(config)
    gw.start()
    await gw.wait_ready()
    token = cli_token(gw, "alice")
    headers = {"Authorization": f"token {token}"}
    api = gw.url + "/hub/api/users/alice/server"
    async with aiohttp.ClientSession(headers=headers) as s, aiohttp.ClientSession(headers=headers) as poll:
        async def start_server() -> int:
            async with s.post(api) as r:
                return r.status

        async def spawning() -> bool:
            async with poll.get(api) as r:  # 404 until the start has recorded the server
                return r.status == 200 and (await r.json())["pending"] == "spawn"

        start = asyncio.create_task(start_server())
        await wait_until(spawning)
        gw.signal(signal.SIGTERM)
        await wait_until(lambda: refused(gw.port))  # stops accepting at once ...
        assert await start == 201  # ... while the request in flight gets its answer
    assert gw.proc.wait(30) == 0
    assert "Stopping gateway" in gw.log()
    # the server kept running (cleanup_servers is False) and is found again after a restart
    [(state,)] = db_rows(gw, "SELECT state FROM servers WHERE name = ''")
    pid = __import__("json").loads(state)["spawner"]["pid"]
    os.kill(pid, 0)
    gw.start()
    await gw.wait_ready()
    async with aiohttp.ClientSession(headers=headers) as s:
        async with s.get(api) as r:
            model = await r.json()
            assert model["ready"] is True, model
        async with s.delete(api) as r:
            assert r.status in (202, 204)


async def test_sigterm_cuts_requests_longer_than_shutdown_timeout(gateway_process):
    very_slow = ("/bin/sh", "-c", 'sleep 30; exec "$@"', "sh", *FAKE)
    config = (f"c.Authenticator.admin_users = {{'alice'}}\nc.Spawner.cmd = {list(very_slow)!r}\n"
              "c.Spawner.start_timeout = 60\nc.Gateway.shutdown_timeout = 0.5\n")
    gw = gateway_process(config)
    gw.start()
    await gw.wait_ready()
    headers = {"Authorization": f"token {cli_token(gw, 'alice')}"}
    api = gw.url + "/hub/api/users/alice/server"
    async with aiohttp.ClientSession(headers=headers) as s, aiohttp.ClientSession(headers=headers) as poll:
        async def start_server() -> int | str:
            try:
                async with s.post(api) as r:
                    return r.status
            except aiohttp.ClientError as e:
                return type(e).__name__

        async def spawning() -> bool:
            async with poll.get(api) as r:
                return r.status == 200 and (await r.json())["pending"] == "spawn"

        start = asyncio.create_task(start_server())
        await wait_until(spawning)
        gw.signal(signal.SIGTERM)
        assert gw.proc.wait(30) == 0, gw.log()[-4000:]  # well before the 30 s start would have finished
        assert await start == "ServerDisconnectedError"
    # the start it cut short was abandoned: nothing recorded as running
    assert db_rows(gw, "SELECT url, started FROM servers WHERE name = ''") == [("", None)]


async def test_sighup_reloads_config(gateway_process):
    gw = gateway_process("c.Authenticator.admin_users = {'alice'}\n")
    gw.start()
    await gw.wait_ready()
    gw.config_path.write_text(
        "c.Authenticator.admin_users = {'alice', 'bob'}\n"
        "c.JupyterHub.log_level = 'DEBUG'\n"
        "c.JupyterHub.cull_idle_timeout = 3600\n"
        "c.JupyterHub.base_url = '/elsewhere/'\n")
    gw.signal(signal.SIGHUP)
    # the last line the reload writes, so every line before it is in the file
    await wait_until(lambda: "Config key base_url changed but needs a restart" in gw.log())
    log = gw.log()
    assert "changed: admin_users, cull_idle_timeout, log_level" in log
    assert "Config key base_url changed but needs a restart" in log
    assert db_rows(gw, "SELECT admin FROM users WHERE name = 'bob'") == [(1,)]
    async with aiohttp.ClientSession() as s:
        async with s.get(gw.url + "/hub/health") as r:  # still on the old base_url
            assert r.status == 200
    await wait_until(lambda: "200 GET /hub/health" in gw.log())  # a DEBUG line: the new level applies
    # a broken config is reported and changes nothing
    gw.config_path.write_text("c.JupyterHub.cull_interval = 'often'\n")
    gw.signal(signal.SIGHUP)
    await wait_until(lambda: "Reload failed, configuration unchanged" in gw.log())
    async with aiohttp.ClientSession() as s:
        async with s.get(gw.url + "/hub/health") as r:
            assert r.status == 200
    assert gw.stop() == 0


async def test_sigkill_under_write_load_loses_nothing_acknowledged(gateway_process):
    """20 concurrent writers (14 API clients creating server records, 6 running `gateway token`);
    SIGKILL the gateway mid-stream; every acknowledged record survives and the file is intact."""
    users = [f"u{i}" for i in range(14)]
    config = (f"c.Authenticator.admin_users = {{'admin'}}\nc.Authenticator.allowed_users = {set(users)!r}\n"
              "c.JupyterHub.allow_named_servers = True\n")
    gw = gateway_process(config)
    gw.start()
    await gw.wait_ready()
    admin = cli_token(gw, "admin")
    acked_servers: list[tuple[str, str]] = []
    acked_tokens: list[tuple[str, str]] = []
    killed = asyncio.Event()

    def maybe_kill() -> None:
        # after two waves of token commands, so API and CLI writers have overlapped for a while
        if not killed.is_set() and len(acked_servers) >= 300 and len(acked_tokens) >= 12:
            gw.signal(signal.SIGKILL)
            killed.set()

    async def api_client(user: str) -> None:
        async with aiohttp.ClientSession(headers={"Authorization": f"token {admin}"}) as s:
            for n in range(10_000):  # bounded; ends at the kill
                name = f"s{n}"
                try:
                    async with s.put(f"{gw.url}/hub/api/users/{user}/servers/{name}") as r:
                        if r.status != 201:
                            raise AssertionError(f"{r.status} {await r.text()}")
                except aiohttp.ClientError:
                    assert killed.is_set(), "request failed before the kill"
                    return
                acked_servers.append((user, name))
                maybe_kill()

    async def token_client(user: str) -> None:
        for _ in range(200):  # bounded; stops launching after the kill
            if killed.is_set():
                return
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway", "token", user, "-f", str(gw.config_path), cwd=gw.workdir,
                env=gw.env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), 120)
            assert proc.returncode == 0, err.decode()
            acked_tokens.append((user, out.decode().strip()))
            maybe_kill()

    await asyncio.wait_for(asyncio.gather(*(api_client(u) for u in users),
                                          *(token_client(u) for u in users[:6])), 300)
    assert killed.is_set()
    gw.proc.wait(30)
    assert gw.proc.returncode == -signal.SIGKILL
    assert db_rows(gw, "PRAGMA integrity_check") == [("ok",)]
    gw.start()
    await gw.wait_ready()
    assert db_rows(gw, "PRAGMA integrity_check") == [("ok",)]
    stored = set(db_rows(gw, "SELECT users.name, servers.name FROM servers JOIN users ON users.id = servers.user_id"))
    assert set(acked_servers) <= stored, "acknowledged server records lost"
    async with aiohttp.ClientSession() as s:
        for user, name in acked_servers[:: max(1, len(acked_servers) // 40)]:  # a sample through the API too
            async with s.get(f"{gw.url}/hub/api/users/{user}/servers/{name}",
                             headers={"Authorization": f"token {admin}"}) as r:
                assert r.status == 200
        for user, token in acked_tokens:
            async with s.get(gw.url + "/hub/api/user", headers={"Authorization": f"token {token}"}) as r:
                assert r.status == 200 and (await r.json())["name"] == user
    print(f"acknowledged before the kill: {len(acked_servers)} server records, {len(acked_tokens)} tokens")
