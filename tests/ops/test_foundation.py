"""Foundation: start-up, config loading, the token CLI, identity, token expiry/revocation, store consistency."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import time

import aiohttp
import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.config import ConfigError, generate_config, load_settings
from gateway.routes import info
from gateway.store import Store
from tests.helpers.hub import start_hub_with
from tests.helpers.paths import ROOT

CONFIG = """
c = get_config()  # noqa
c.JupyterHub.api_tokens = {"carol-config-token-0001": "Carol"}
c.JupyterHub.services = [
    {"name": "svc-admin", "admin": True, "api_token": "svc-admin-token-0001"},
    {"name": "svc-plain", "api_token": "svc-plain-token-0001"},
]
c.Authenticator.admin_users = {"alice"}
c.JupyterHub.authenticator_class = "dummy"
"""


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


async def get_json(url: str, token: str | None = None) -> tuple[int, object]:
    headers = {"Authorization": f"token {token}"} if token else {}
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers=headers) as r:
            return r.status, await r.json(content_type=None)


async def test_first_start_on_defaults(tmp_path, gateway_process):
    proc = gateway_process("")
    proc.config_path.unlink()
    # no -f at all, as the README's first command runs it: every default
    proc.proc = subprocess.Popen([sys.executable, "-m", "gateway", f"--port={proc.port}"], cwd=tmp_path,
                                 env=proc.env(), stdout=open(proc.log_path, "ab"), stderr=subprocess.STDOUT)
    await proc.wait_ready()
    status, body = await get_json(proc.url + "/hub/api/")
    assert status == 200 and body == {"version": "6.1.1"}
    assert (tmp_path / "gateway.sqlite").exists()
    assert mode(tmp_path / "gateway.sqlite") == 0o600
    assert mode(tmp_path / "gateway_cookie_secret") == 0o600
    assert len(bytes.fromhex((tmp_path / "gateway_cookie_secret").read_text().strip())) == 32


async def test_config_file_users_services_and_tokens(gateway_process):
    proc = gateway_process(CONFIG)
    proc.start()
    await proc.wait_ready()
    api = proc.url + "/hub/api/user"
    status, body = await get_json(api, "carol-config-token-0001")
    assert status == 200
    assert body["kind"] == "user" and body["name"] == "carol"  # normalised to lower case
    assert body["token_id"].startswith("a") and body["session_id"] is None
    assert "read:users!user=carol" in body["scopes"]
    status, body = await get_json(api, "svc-admin-token-0001")
    assert status == 200 and body["kind"] == "service" and body["name"] == "svc-admin"
    assert body["admin"] is True and body["roles"] == ["admin"]
    assert "admin:users" in body["scopes"]
    status, body = await get_json(api, "svc-plain-token-0001")
    assert status == 200 and body == {
        "kind": "service", "name": "svc-plain", "admin": False, "token_id": body["token_id"],
        "session_id": None, "scopes": []}
    # the token CLI works while the gateway runs on the same database
    result = proc.run_cli("token", "alice", "-f", str(proc.config_path))
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert len(token) == 64 and int(token, 16) >= 0
    status, body = await get_json(api, token)
    assert status == 200 and body["name"] == "alice" and body["admin"] is True
    assert "admin" in body["roles"]
    assert "Warn" not in result.stdout


async def test_token_cli_errors(gateway_process):
    proc = gateway_process(CONFIG)
    result = proc.run_cli("token", "nosuchuser", "-f", str(proc.config_path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert "No such user: nosuchuser" in result.stderr
    result = proc.run_cli("token", "a", "b", "-f", str(proc.config_path))
    assert result.returncode == 1 and "Must specify exactly one username" in result.stderr
    result = proc.run_cli("token", "alice", "-f", str(proc.config_path), "--note", "ci", "--expires-in", "3600")
    assert result.returncode == 0 and len(result.stdout.strip()) == 64


def test_unknown_key_warns_and_wrong_type_exits_2(tmp_path):
    config = tmp_path / "jupyterhub_config.py"
    config.write_text("c = get_config()\nc.JupyterHub.port = 'eighty'\nc.Spawner.consecutive_failure_limit = 5\n"
                      "c.JupyterHub.allow_named_servers = 'yes please'\n")
    result = subprocess.run([sys.executable, "-m", "gateway", "-f", str(config)], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2
    assert "JupyterHub.port" in result.stderr and "expected an integer" in result.stderr
    assert "JupyterHub.allow_named_servers" in result.stderr
    assert "Spawner.consecutive_failure_limit" in result.stderr  # a key the local spawner cannot honour, by name
    assert not (tmp_path / "gateway.sqlite").exists()  # nothing started


def test_settings_warnings_and_aliases(tmp_path):
    config = tmp_path / "c.py"
    config.write_text("c = get_config()\nc.JupyterHub.spawner_class = 'simple'\n"
                      "c.JupyterHub.authenticator_class = 'dummy'\nc.LocalProcessSpawner.cmd = 'jupyterhub-singleuser'\n"
                      "c.ConfigurableHTTPProxy.api_url = 'http://x'\nc.Foo.bar = 1\n")
    warnings: list[str] = []
    settings = load_settings(str(config), warn=warnings.append)
    assert settings.spawner_class == "simple" and settings.authenticator_class == "dummy"
    assert settings.spawner_cmd == ("jupyterhub-singleuser",)
    assert any("Foo.bar" in w for w in warnings)
    assert any("ConfigurableHTTPProxy" in w for w in warnings)
    config.write_text("c = get_config()\nc.JupyterHub.spawner_class = 'nosuchpackage.NoSpawner'\n")
    with pytest.raises(ConfigError) as e:
        load_settings(str(config))
    assert "spawner_class" in str(e.value)


def test_generate_config_lists_every_key_and_loads(tmp_path):
    text = generate_config()
    for key in ("JupyterHub.bind_url", "JupyterHub.services", "Authenticator.allowed_users", "Spawner.cmd"):
        assert f"# c.{key} = " in text
    path = tmp_path / "generated.py"
    # uncommenting every line must give a loadable config equal to the defaults
    path.write_text("\n".join(line[2:] if line.startswith("# c.") else line for line in text.splitlines()))
    settings = load_settings(str(path))
    assert settings.bind_url == "http://127.0.0.1:8000"
    result = subprocess.run([sys.executable, "-m", "gateway", "--generate-config", "-o", str(tmp_path / "out.py")],
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0 and (tmp_path / "out.py").read_text() == text


async def test_whoami_and_error_shapes(hub):
    token = await hub.new_token("dora")
    r = await hub.api("GET", "/user", token=token)
    assert r.status == 200 and r.body["name"] == "dora"
    assert r.headers["X-JupyterHub-Version"] == "6.1.1"
    assert r.body["scopes"] == sorted(r.body["scopes"])
    r = await hub.api("GET", "/user", headers={"Authorization": f"Bearer {token}"})
    assert r.status == 200
    r = await hub.api("GET", "/user", headers={"Authorization": f"TOKEN {token}"})
    assert r.status == 200
    r = await hub.api("GET", "/user")
    assert (r.status, r.body) == (403, {"status": 403, "message": None})
    r = await hub.api("GET", f"/user?token={token}")  # never on the hub
    assert r.status == 403
    r = await hub.api("GET", "/info", token=token)
    assert r.status == 403
    assert r.body == {"status": 403, "message": "Action is not authorized with current scopes; requires any of [read:hub]"}
    r = await hub.api("GET", "/info", token="x" * 65)
    assert r.body == {"status": 403, "message": "Missing or invalid credentials."}
    r = await hub.api("GET", "/no/such/path")
    assert (r.status, r.body) == (404, {"status": 404, "message": None})
    assert r.headers["Content-Type"].startswith("application/json")
    r = await hub.api("DELETE", "/")
    assert r.status == 405 and r.body["status"] == 405
    r = await hub.api("GET", "")
    assert r.status == 200 and r.body == {"version": "6.1.1"}
    async with hub.session.get(hub.url + "/hub/health") as resp:
        assert resp.status == 200


async def test_unexpected_exception_is_json_500(make_settings, monkeypatch):
    async def boom(request):
        raise RuntimeError("secret detail")

    # GET /hub/api's handler fails: the API sub-app is frozen once mounted, so it is replaced before create_app
    monkeypatch.setattr(info, "root", boom)
    app = create_app(make_settings())
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{runner.addresses[0][1]}/hub/api") as r:
                assert r.status == 500
                assert await r.json() == {"status": 500, "message": "Internal Server Error"}
    finally:
        await runner.cleanup()


async def test_expired_and_revoked_tokens_refused_at_once(hub):
    admin = await hub.new_token("root", admin=True)
    assert (await hub.api("GET", "/info", token=admin)).status == 200  # now cached
    short = await hub.new_token("root", expires_at=time.time() + 4.0)  # room for the requests under load
    assert (await hub.api("GET", "/info", token=short)).status == 200
    token = await hub.store.find_token(admin)
    await hub.store.delete_token(token.id)
    r = await hub.api("GET", "/info", token=admin)
    assert r.body == {"status": 403, "message": "Missing or invalid credentials."}
    await asyncio.sleep(max(0.0, (await hub.store.find_token(short)).expires_at - time.time()) + 0.05)
    r = await hub.api("GET", "/info", token=short)
    assert r.body == {"status": 403, "message": "Missing or invalid credentials."}


async def test_demoting_owner_shrinks_token_at_once(hub):
    token = await hub.new_token("erin", admin=True)
    assert (await hub.api("GET", "/info", token=token)).status == 200
    erin = await hub.store.get_user("erin")
    await hub.store.update_user(erin.id, admin=False)
    assert (await hub.api("GET", "/info", token=token)).status == 403


async def test_tokens_stored_hashed(hub):
    token = await hub.new_token("frank")
    raw = open(hub.store.path, "rb").read() + (open(hub.store.path + "-wal", "rb").read()
                                               if os.path.exists(hub.store.path + "-wal") else b"")
    assert token.encode() not in raw
    assert token[:20].encode() not in raw


async def test_concurrent_writers_leave_consistent_store(make_settings, tmp_path):
    """In-process writers and separate processes (the token CLI) write at once; nothing is lost."""
    settings = make_settings()
    hub = await start_hub_with(settings)
    try:
        names = [f"user{i}" for i in range(40)]
        await asyncio.gather(*(hub.store.create_users([n]) for n in names),
                             *(hub.store.create_users([n]) for n in names))  # duplicates race too
        users = await hub.store.get_users(names)
        assert sorted(users) == sorted(names)
        config = tmp_path / "cfg.py"
        config.write_text(f"c = get_config()\nc.JupyterHub.db_url = {settings.db_url!r}\n"
                          f"c.JupyterHub.cookie_secret_file = {settings.cookie_secret_file!r}\n")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        procs = [await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "token", f"user{i}", "-f", str(config), env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE) for i in range(6)]
        in_process = asyncio.gather(*(hub.new_token(f"user{i}") for i in range(6, 30)))
        outputs = [await p.communicate() for p in procs]
        tokens = [out.decode().strip() for out, _ in outputs] + list(await in_process)
        assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
        assert len(set(tokens)) == 30
        for i, token in enumerate(tokens):
            r = await hub.api("GET", "/user", token=token)
            assert r.status == 200 and r.body["name"] == f"user{i}"
    finally:
        await hub.session.close()
        await hub.runner.cleanup()


async def test_write_cancelled_at_begin_leaves_store_writable(tmp_path):
    """A writer cancelled while its BEGIN is under way (a server start cancelled by a stop) must not
    leave the transaction open: the next write works."""
    store = await Store.open(str(tmp_path / "cancel.sqlite"))
    try:
        for _ in range(3):
            write = asyncio.ensure_future(store.create_user("cancelled"))
            await asyncio.sleep(0)  # the write now waits for its BEGIN
            write.cancel()
            with pytest.raises(asyncio.CancelledError):
                await write
        assert (await store.create_user("next")).name == "next"
        assert await store.get_user("cancelled") is None
    finally:
        await store.close()


async def test_old_database_upgrades(tmp_path, make_settings):
    path = str(tmp_path / "old.sqlite")
    store = await Store.open(path, migrate=False)
    assert await store.migrate(upto=1) == ["0001_core"]
    await store._write("INSERT INTO users (name, admin, created) VALUES ('olduser', 0, 0)")
    await store.close()
    # explicit: gateway upgrade-db backs up, then migrates
    config = tmp_path / "cfg.py"
    config.write_text(f"c = get_config()\nc.JupyterHub.db_url = 'sqlite:///{path}'\n")
    result = subprocess.run([sys.executable, "-m", "gateway", "upgrade-db", "-f", str(config)], capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Applied 0002_login_sessions_and_passwords" in result.stderr
    backups = [p for p in os.listdir(tmp_path) if p.startswith("old.sqlite.") and p.endswith(".bak")]
    assert len(backups) == 1 and mode(tmp_path / backups[0]) == 0o600
    # implicit: an older file upgrades itself at start
    path2 = str(tmp_path / "old2.sqlite")
    store = await Store.open(path2, migrate=False)
    await store.migrate(upto=1)
    await store._write("INSERT INTO users (name, admin, created) VALUES ('olduser', 0, 0)")
    await store.close()
    hub = await start_hub_with(make_settings(db_url=f"sqlite:///{path2}"))
    try:
        assert await hub.store.pending_migrations() == []
        assert (await hub.store.get_user("olduser")) is not None
        token = await hub.new_token("olduser")
        assert (await hub.api("GET", "/user", token=token)).body["name"] == "olduser"
    finally:
        await hub.session.close()
        await hub.runner.cleanup()


def test_insecure_cookie_secret_refused(tmp_path):
    secret = tmp_path / "gateway_cookie_secret"
    secret.write_text("00" * 32)
    os.chmod(secret, 0o644)
    result = subprocess.run([sys.executable, "-m", "gateway", "--port=0", "--JupyterHub.cookie_secret_file=" + str(secret)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode != 0
    assert "chmod 600" in result.stderr
