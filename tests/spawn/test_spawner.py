"""ProcessSpawner against real processes: tests/backends/fake_server.py and a real jupyter-server.

Every server is a real process on a real loopback port; nothing under test is mocked. The one
substitution is the port picker in the retry tests, to hand out a port another process holds.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import secrets
import signal
import socket
import stat
import sys
import tempfile
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from gateway.spawners import procs
from gateway.spawners.base import ServerSpec, SpawnerOptions, SpawnError
from gateway.spawners.local import ProcessSpawner, spawner_class_for
from tests.helpers.paths import FAKE_SERVER, ROOT

FAKE = FAKE_SERVER
JUPYTER_SERVER = Path(sys.executable).parent / "jupyter-server"
HUB_API = "http://127.0.0.1:1/hub/api"  # nothing listens there; the fake server never calls it


def dead(pid: int) -> bool:
    """Gone or a zombie (an orphan waits for init to reap it)."""
    stat_ = procs.read_stat(pid)
    return stat_ is None or stat_.exited


async def until_dead(pid: int, seconds: float = 10.0) -> bool:
    for _ in range(int(seconds / 0.02)):
        if dead(pid):
            return True
        await asyncio.sleep(0.02)
    return dead(pid)


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def make_spawner(tmp_path):
    """Build ProcessSpawners writing under tmp_path; whatever still runs is killed afterwards."""
    made: list[ProcessSpawner] = []

    def make(user: str = "alice", server_name: str = "", *, cmd: tuple[str, ...] = FAKE,
             environment: dict | None = None, token: str | None = None, state: dict | None = None,
             hub_api_url: str = HUB_API, base_url: str = "/", **options) -> ProcessSpawner:
        opts = SpawnerOptions(cmd=cmd, environment=environment or {}, data_dir=str(tmp_path / "data"), **options)
        spec = ServerSpec(user=user, server_name=server_name, api_token=token or secrets.token_hex(32),
                          hub_api_url=hub_api_url, base_url=base_url)
        spawner = ProcessSpawner(opts, spec, state)
        made.append(spawner)
        return spawner

    yield make
    for spawner in made:
        if spawner.pid:
            await spawner.stop(now=True)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"token {token}"}


async def get(http: aiohttp.ClientSession, url: str, token: str | None = None) -> tuple[int, dict]:
    async with http.get(url, headers=auth(token) if token else {}) as resp:
        return resp.status, await resp.json(content_type=None)


# ---- the fake server ---------------------------------------------------------------------------

async def test_fake_server_answers_only_with_its_secret(make_spawner, http):
    spawner = make_spawner()
    url = await spawner.start()
    assert url == f"http://127.0.0.1:{spawner.port}" and spawner.url == url
    status_url = f"{url}/user/alice/api/status"
    status, body = await get(http, status_url, spawner.spec.api_token)
    assert status == 200 and body["pid"] == spawner.pid
    assert (await get(http, status_url))[0] == 403
    assert (await get(http, status_url, secrets.token_hex(32)))[0] == 403
    assert await spawner.poll() is None


async def test_secret_only_in_environment(make_spawner):
    spawner = make_spawner()
    await spawner.start()
    token = spawner.spec.api_token.encode()
    assert token not in Path(f"/proc/{spawner.pid}/cmdline").read_bytes()
    environ = Path(f"/proc/{spawner.pid}/environ").read_bytes().split(b"\0")
    assert b"JUPYTER_TOKEN=" + token in environ and b"JUPYTERHUB_API_TOKEN=" + token in environ


async def test_log_file_is_private(make_spawner):
    spawner = make_spawner()
    await spawner.start()
    log = Path(spawner.log_path)
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700
    assert f"fake server {spawner.pid} listening" in log.read_text()


async def test_environment_of_the_server(make_spawner, http, monkeypatch):
    monkeypatch.setenv("KEPT_VAR", "kept")
    monkeypatch.setenv("DROPPED_VAR", "dropped")
    spawner = make_spawner("bob", "nb", env_keep=("PATH", "KEPT_VAR"),
                           environment={"FROM_CONFIG": "yes", "FROM_CALLABLE": lambda sp: f"for-{sp.user.name}"})
    url = await spawner.start()
    status, env = await get(http, f"{url}/user/bob/nb/api/env", spawner.spec.api_token)
    assert status == 200
    assert env["KEPT_VAR"] == "kept" and "DROPPED_VAR" not in env
    assert env["FROM_CONFIG"] == "yes" and env["FROM_CALLABLE"] == "for-bob"
    assert env["JUPYTERHUB_USER"] == "bob" and env["JUPYTERHUB_SERVER_NAME"] == "nb"
    assert env["JUPYTERHUB_SERVICE_PREFIX"] == "/user/bob/nb/"
    assert env["JUPYTERHUB_SERVICE_URL"] == f"{url}/user/bob/nb/"
    assert env["JUPYTERHUB_BASE_URL"] == "/"
    assert env["JUPYTERHUB_API_URL"] == HUB_API
    assert env["JUPYTERHUB_ACTIVITY_URL"] == f"{HUB_API}/users/bob/activity"
    assert env["JUPYTERHUB_CLIENT_ID"] == "jupyterhub-user-bob-nb"
    assert json.loads(env["JUPYTERHUB_OAUTH_ACCESS_SCOPES"]) == [
        "access:servers!server=bob/nb", "access:servers!user=bob"]
    for name in ("JUPYTER_TOKEN", "JUPYTERHUB_API_TOKEN"):
        assert env[name] == "[redacted]"  # present; the fake server hides values
    home = Path(spawner.options.data_dir) / "users" / "bob"
    assert env["HOME"] == str(home) and env["USER"] == "bob"
    status, info = await get(http, f"{url}/user/bob/nb/api/status", spawner.spec.api_token)
    assert info["cwd"] == str(home)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


async def test_odd_base_url_and_escaped_user_name(make_spawner, http):
    spawner = make_spawner("zoë", "nb", base_url="/a%40b/")
    prefix = "/a%40b/user/zo%C3%AB/nb/"
    assert spawner.spec.server_prefix == prefix
    url = await spawner.start()
    async with http.get(URL(f"{url}{prefix}api/env", encoded=True), headers=auth(spawner.spec.api_token)) as resp:
        assert resp.status == 200
        env = await resp.json()
    assert env["JUPYTERHUB_SERVICE_PREFIX"] == prefix and env["JUPYTERHUB_USER"] == "zoë"
    assert env["JUPYTERHUB_CLIENT_ID"] == "jupyterhub-user-zo%C3%AB-nb"
    assert Path(spawner.log_path).parent.name == "zo%C3%AB"


async def test_configuration_cannot_replace_the_secret(make_spawner, http):
    spawner = make_spawner(environment={"JUPYTER_TOKEN": "chosen-by-config"})
    url = await spawner.start()
    assert (await get(http, f"{url}/user/alice/api/status", spawner.spec.api_token))[0] == 200
    assert (await get(http, f"{url}/user/alice/api/status", "chosen-by-config"))[0] == 403


async def test_notebook_dir_template(make_spawner, http, tmp_path):
    spawner = make_spawner("carol", notebook_dir=str(tmp_path / "work" / "{username}"))
    url = await spawner.start()
    _, info = await get(http, f"{url}/user/carol/api/status", spawner.spec.api_token)
    assert info["cwd"] == str(tmp_path / "work" / "carol")


async def test_progress_events(make_spawner):
    spawner = make_spawner()
    start = asyncio.create_task(spawner.start())
    events = [event async for event in spawner.progress()]  # opened before start() has run at all
    await start
    assert events == [{"progress": 50, "message": "Spawning server..."}]
    assert [e async for e in spawner.progress()] == events  # after the start: the same events, at once


# ---- stopping ----------------------------------------------------------------------------------

async def test_stop_kills_the_process_group(make_spawner, http):
    spawner = make_spawner(environment={"FAKE_SERVER_CHILD": "1"})
    url = await spawner.start()
    _, info = await get(http, f"{url}/user/alice/api/status", spawner.spec.api_token)
    server_pid, child_pid = spawner.pid, info["child_pid"]
    assert child_pid and not dead(child_pid)
    await spawner.stop()
    assert dead(server_pid)
    assert await until_dead(child_pid)  # it ignored SIGINT and SIGTERM: killed as a remnant of the group
    assert spawner.get_state() == {} and spawner.pid == 0 and spawner.url == ""
    assert await spawner.poll() == 0


async def test_a_crash_takes_the_group_along(make_spawner, http):
    """When the server dies on its own, the first poll() that sees it kills the rest of its group."""
    spawner = make_spawner(environment={"FAKE_SERVER_CHILD": "1"})
    url = await spawner.start()
    _, info = await get(http, f"{url}/user/alice/api/status", spawner.spec.api_token)
    os.kill(spawner.pid, signal.SIGKILL)
    assert await asyncio.wait_for(spawner.wait_for_exit(), 10) == -signal.SIGKILL
    assert await until_dead(info["child_pid"])


async def test_stop_escalates_to_sigkill(make_spawner):
    spawner = make_spawner(environment={"FAKE_SERVER_IGNORE_SIGNALS": "1"}, interrupt_timeout=0.2, term_timeout=0.2)
    await spawner.start()
    pid = spawner.pid
    await spawner.stop()
    assert dead(pid) and spawner.exit_status == -signal.SIGKILL


async def test_stop_now_skips_sigint(make_spawner):
    spawner = make_spawner()
    await spawner.start()
    await spawner.stop(now=True)
    assert spawner.exit_status in (0, -signal.SIGTERM)  # aiohttp exits cleanly on SIGTERM


async def test_poll_sees_a_crash_and_wait_for_exit_returns(make_spawner):
    spawner = make_spawner()
    await spawner.start()
    watcher = asyncio.create_task(spawner.wait_for_exit())
    await asyncio.sleep(0)
    os.kill(spawner.pid, signal.SIGKILL)
    assert await asyncio.wait_for(watcher, 10) == -signal.SIGKILL
    assert await spawner.poll() == -signal.SIGKILL
    await spawner.stop()
    assert spawner.get_state() == {}


# ---- failed starts -----------------------------------------------------------------------------

async def test_early_exit_is_a_spawn_error_with_the_output(make_spawner):
    spawner = make_spawner(environment={"FAKE_SERVER_FAIL": "1"})
    with pytest.raises(SpawnError) as failure:
        await spawner.start()
    assert "exited with status 3" in failure.value.message
    assert "failing at start as asked" in failure.value.message
    assert spawner.get_state() == {}


async def test_missing_command(make_spawner, tmp_path):
    spawner = make_spawner(cmd=(str(tmp_path / "no-such-server"),))
    with pytest.raises(SpawnError) as failure:
        await spawner.start()
    assert "no-such-server" in failure.value.message


async def test_start_timeout(make_spawner, tmp_path):
    pidfile = tmp_path / "pid"
    # never listens; extra arguments (our flags) land in $1... and are ignored
    spawner = make_spawner(cmd=("sh", "-c", f'echo $$ > "{pidfile}"; exec sleep 60', "sh"), start_timeout=2)
    with pytest.raises(SpawnError) as failure:
        await spawner.start()
    assert "Spawner.start_timeout" in failure.value.message
    assert await until_dead(int(pidfile.read_text()))
    assert spawner.get_state() == {}


async def test_http_timeout_when_listening_but_silent(make_spawner, tmp_path):
    pidfile = tmp_path / "pid"
    # long enough for the fake server to start (and write its pid) on a loaded machine
    spawner = make_spawner(environment={"FAKE_SERVER_HANG": "1", "FAKE_SERVER_PIDFILE": str(pidfile)},
                           http_timeout=6)
    with pytest.raises(SpawnError) as failure:
        await spawner.start()
    assert "Spawner.http_timeout" in failure.value.message
    assert await until_dead(int(pidfile.read_text()))
    assert spawner.get_state() == {}


async def pid_written(pidfile, limit: float = 5.0) -> None:
    """Waits (bounded) until the process started by the spawner has written its pid."""
    for _ in range(int(limit / 0.01)):
        if pidfile.exists() and pidfile.read_text().strip():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no pid written to {pidfile} within {limit} s")


async def test_cancelled_start_leaves_no_process(make_spawner, tmp_path):
    pidfile = tmp_path / "pid"
    spawner = make_spawner(cmd=("sh", "-c", f'echo $$ > "{pidfile}"; exec sleep 60', "sh"))
    start = asyncio.create_task(spawner.start())
    await pid_written(pidfile)
    start.cancel()
    with pytest.raises(asyncio.CancelledError):
        await start
    assert await until_dead(int(pidfile.read_text()))
    assert spawner.get_state() == {}


async def test_stop_during_start(make_spawner, tmp_path):
    pidfile = tmp_path / "pid"
    spawner = make_spawner(cmd=("sh", "-c", f'echo $$ > "{pidfile}"; exec sleep 60', "sh"))
    start = asyncio.create_task(spawner.start())
    await pid_written(pidfile)
    await spawner.stop()
    with pytest.raises(SpawnError, match="stopped while it was starting"):
        await start
    assert await until_dead(int(pidfile.read_text()))
    assert spawner.get_state() == {}  # and this test process, whose group is not the server's, lives on


# ---- ports -------------------------------------------------------------------------------------

@pytest.fixture
def first_port(monkeypatch):
    """Make the next start try `port` first, as if another process bound it after our pick."""
    def use(port: int) -> None:
        real = procs.reserve_port
        ports = iter([port])
        monkeypatch.setattr(procs, "reserve_port", lambda: next(ports, None) or real())
    return use


async def test_retry_when_the_port_was_taken_by_a_silent_listener(make_spawner, http, first_port, caplog):
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        first_port(squatter.getsockname()[1])
        spawner = make_spawner()
        url = await spawner.start()
        assert spawner.port != squatter.getsockname()[1]
    assert "retrying" in caplog.text
    assert (await get(http, f"{url}/user/alice/api/status", spawner.spec.api_token))[0] == 200


async def test_retry_when_the_port_was_taken_by_another_web_server(make_spawner, http, first_port, aiohttp_server,
                                                                    caplog):
    other = web.Application()
    async def someone_else(request: web.Request) -> web.Response:
        return web.json_response({"i am": "someone else"})

    other.router.add_get("/{tail:.*}", someone_else)
    squatter = await aiohttp_server(other, host="127.0.0.1")
    first_port(squatter.port)
    spawner = make_spawner()
    url = await spawner.start()
    assert spawner.port != squatter.port
    status, body = await get(http, f"{url}/user/alice/api/status", spawner.spec.api_token)
    assert status == 200 and body["pid"] == spawner.pid
    assert "retrying" in caplog.text


async def test_listener_ownership(make_spawner):
    spawner = make_spawner()
    await spawner.start()
    assert procs.listener_in_session(spawner.port, spawner.pid) is True
    with socket.create_server(("127.0.0.1", 0)) as ours:
        assert procs.listener_in_session(ours.getsockname()[1], spawner.pid) is False
        assert procs.listener_in_session(ours.getsockname()[1], os.getsid(0)) is True
    assert procs.listener_in_session(procs.reserve_port(), spawner.pid) is False


def test_listener_lookup_by_sock_diag_and_by_proc_agree():
    with socket.create_server(("127.0.0.1", 0)) as held:
        port, inode = held.getsockname()[1], os.fstat(held.fileno()).st_ino
        assert procs._listener_inodes_netlink(port) == {inode}
        assert procs._listener_inodes_proc(port) == {inode}


async def test_concurrent_starts(make_spawner, http):
    spawners = [make_spawner(f"user{i}") for i in range(10)]
    urls = await asyncio.gather(*(s.start() for s in spawners))
    assert len(set(urls)) == 10
    for i, (spawner, url) in enumerate(zip(spawners, urls)):
        assert (await get(http, f"{url}/user/user{i}/api/status", spawner.spec.api_token))[0] == 200
        stranger = spawners[(i + 1) % 10].spec.api_token
        assert (await get(http, f"{url}/user/user{i}/api/status", stranger))[0] == 403
    await asyncio.gather(*(s.stop() for s in spawners))
    assert all(s.get_state() == {} for s in spawners)


# ---- state -------------------------------------------------------------------------------------

async def test_state_round_trip_in_the_same_process(make_spawner):
    first = make_spawner()
    await first.start()
    state = json.loads(json.dumps(first.get_state()))
    assert set(state) >= {"pid", "pgid", "port", "url", "start_time"}
    second = make_spawner(state=state, token=first.spec.api_token)
    assert await second.poll() is None and second.url == first.url and second.pid == first.pid
    pid = first.pid
    await second.stop()
    assert dead(pid) and await first.poll() is not None


RESTARTED_GATEWAY = """
import asyncio, json, os, sys
from gateway.spawners.base import ServerSpec, SpawnerOptions
from gateway.spawners.local import ProcessSpawner
from tests.helpers.paths import FAKE_SERVER, ROOT

async def main():
    options = SpawnerOptions(cmd=tuple(json.loads(sys.argv[1])), data_dir=sys.argv[2])
    spec = ServerSpec(user="dave", api_token=os.environ["TEST_SECRET"], hub_api_url="http://127.0.0.1:1/hub/api")
    spawner = ProcessSpawner(options, spec)
    await spawner.start()
    print(json.dumps(spawner.get_state()))

asyncio.run(main())
"""


async def test_state_adopted_after_a_gateway_restart(make_spawner, http, tmp_path):
    """Another process (the 'old gateway') starts the server and exits; we adopt it from its state."""
    token = secrets.token_hex(32)
    env = {**os.environ, "TEST_SECRET": token, "PYTHONPATH": str(ROOT)}
    old_gateway = await asyncio.create_subprocess_exec(
        sys.executable, "-c", RESTARTED_GATEWAY, json.dumps(FAKE), str(tmp_path / "data"),
        env=env, stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(old_gateway.communicate(), 60)
    assert old_gateway.returncode == 0
    state = json.loads(out)
    stat_ = procs.read_stat(state["pid"])
    assert stat_ is not None and stat_.ppid != os.getpid()  # not our child: /proc is all we have

    adopted = make_spawner("dave", token=token, state=state)
    assert await adopted.poll() is None
    assert (await get(http, f"{adopted.url}/user/dave/api/status", token))[0] == 200
    await adopted.stop()
    assert dead(state["pid"]) and await adopted.poll() == 0 and adopted.get_state() == {}


async def test_recycled_pid_is_not_our_server(make_spawner):
    running = make_spawner()
    await running.start()
    wrong_start = {**running.get_state(), "start_time": running.get_state()["start_time"] + 1}
    impostor = make_spawner(state=wrong_start)
    assert await impostor.poll() == 0
    await impostor.stop()  # must not signal the process now holding that pid
    assert await running.poll() is None

    gone = make_spawner(state={**running.get_state(), "pid": 2**22 + 7, "pgid": 2**22 + 7})
    assert await gone.poll() == 0


# ---- real jupyter-server -----------------------------------------------------------------------

async def test_real_jupyter_server(make_spawner, http):
    spawner = make_spawner(cmd=(str(JUPYTER_SERVER),))
    url = await spawner.start()
    status_url = f"{url}/user/alice/api/status"
    status, body = await get(http, status_url, spawner.spec.api_token)
    assert status == 200 and "started" in body
    assert (await get(http, status_url))[0] == 403
    assert (await get(http, status_url, secrets.token_hex(32)))[0] == 403
    token = spawner.spec.api_token.encode()
    assert token not in Path(f"/proc/{spawner.pid}/cmdline").read_bytes()
    assert token not in Path(spawner.log_path).read_bytes()
    # JupyterLab's page (what browsers get) must not carry the secret in its page config
    async with http.get(f"{url}/user/alice/lab", headers={"Authorization": f"token {spawner.spec.api_token}"}) as r:
        page = await r.text()
        assert r.status == 200 and '"hubPrefix": "/hub/"' in page and '"hubUser": "alice"' in page
        assert spawner.spec.api_token not in page and '"token": ""' in page
    pid = spawner.pid
    await spawner.stop()
    assert dead(pid)


async def test_default_command_is_jupyter_server_next_to_python(make_spawner, http):
    spawner = make_spawner(cmd=())
    url = await spawner.start()
    assert (await get(http, f"{url}/user/alice/api/status", spawner.spec.api_token))[0] == 200
    assert Path(f"/proc/{spawner.pid}/cmdline").read_bytes().split(b"\0")[1] == bytes(JUPYTER_SERVER)


async def test_unchanged_jupyterhub_singleuser(make_spawner, http, aiohttp_server):
    """jupyterhub-singleuser asks the hub API who a token belongs to; a stub hub answers here."""
    token = secrets.token_hex(32)
    asked: list[tuple[str, str, str | None]] = []

    async def hub_api(request: web.Request) -> web.Response:
        presented = request.headers.get("Authorization")
        asked.append((request.method, request.path, presented))
        if request.path == "/hub/api/user":
            if presented != f"token {token}":
                return web.json_response({"status": 403, "message": "Forbidden"}, status=403)
            return web.json_response({"kind": "user", "name": "alice", "admin": False, "groups": [],
                                      "scopes": ["access:servers!server=alice/", "users:activity!user=alice"]})
        return web.json_response({})

    hub = web.Application()
    hub.router.add_route("*", "/{tail:.*}", hub_api)
    stub = await aiohttp_server(hub, host="127.0.0.1")
    spawner = make_spawner(cmd=(str(Path(sys.executable).parent / "jupyterhub-singleuser"),), token=token,
                           hub_api_url=f"http://127.0.0.1:{stub.port}/hub/api")
    url = await spawner.start()
    status_url = f"{url}/user/alice/api/status"
    assert (await get(http, status_url, token))[0] == 200
    assert (await get(http, status_url))[0] == 403
    assert (await get(http, status_url, secrets.token_hex(32)))[0] == 403
    assert ("GET", "/hub/api/user", f"token {token}") in asked


# ---- running as the user's system account ------------------------------------------------------

def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError("no Uid line")


needs_root_and_nobody = pytest.mark.skipif(
    os.geteuid() != 0 or not any(p.pw_name == "nobody" for p in pwd.getpwall()),
    reason="needs root and a 'nobody' account")


# the venv's Python may sit in a folder other accounts cannot enter: the system Python serves here
SYSTEM_HTTP_SERVER = ("sh", "-c", 'p=${JUPYTERHUB_SERVICE_URL##*:}; exec /usr/bin/python3 -m http.server '
                      '--bind 127.0.0.1 "${p%%/*}"', "sh")


@needs_root_and_nobody
@pytest.mark.skipif(not os.access("/usr/bin/python3", os.X_OK), reason="needs /usr/bin/python3")
async def test_runs_as_the_users_account(make_spawner):
    nobody = pwd.getpwnam("nobody")
    with tempfile.TemporaryDirectory() as workdir:
        os.chmod(workdir, 0o755)
        spawner = make_spawner("nobody", cmd=SYSTEM_HTTP_SERVER, notebook_dir=workdir)
        await spawner.start()
        assert _uid_of(spawner.pid) == nobody.pw_uid
        environ = dict(line.split(b"=", 1) for line in
                       Path(f"/proc/{spawner.pid}/environ").read_bytes().split(b"\0") if b"=" in line)
        assert environ[b"HOME"] == nobody.pw_dir.encode() and environ[b"USER"] == b"nobody"
        assert b"--allow-root" not in Path(f"/proc/{spawner.pid}/cmdline").read_bytes()
        await spawner.stop()


@needs_root_and_nobody
async def test_missing_folder_of_the_users_account(make_spawner, tmp_path):
    spawner = make_spawner("nobody", notebook_dir=str(tmp_path / "absent"))
    with pytest.raises(SpawnError, match="does not exist"):
        await spawner.start()


@needs_root_and_nobody
async def test_simple_spawner_does_not_switch_user(make_spawner, http):
    spawner = make_spawner("nobody", switch_user=False)
    await spawner.start()
    assert _uid_of(spawner.pid) == 0
    assert b"--allow-root" in Path(f"/proc/{spawner.pid}/cmdline").read_bytes()


def test_spawner_class_for():
    for name in ("localprocess", "default", "simple"):
        assert spawner_class_for(name) is ProcessSpawner
    with pytest.raises(ValueError):
        spawner_class_for("kubernetes")
