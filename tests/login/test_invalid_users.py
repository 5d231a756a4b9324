"""JupyterHub's ``init_users`` with a plugin: at each start ``add_user`` sees every stored user; one it
refuses (an account gone from the operator's directory) is kept with a warning, or with
``delete_invalid_users`` removed, servers first. Real gateway processes, restarted on one database."""

from __future__ import annotations

import json
import sqlite3
import textwrap

from gateway.spawners import procs
from tests.helpers.processes import new_tokens, start_servers, users_config
from tests.login.ldaptools import api

ADMIN_TOKEN = "admin-service-token-0123456789"


def directory_config(directory, tokens: dict[str, str], *, delete_invalid: bool) -> str:
    """An operator's own Authenticator, written in the config file: accounts live in a JSON list."""
    return users_config(tokens, textwrap.dedent(f"""\
        import json
        from jupyterhub.auth import Authenticator

        class DirectoryAuthenticator(Authenticator):
            def add_user(self, user):
                with open({str(directory)!r}) as f:
                    if user.name not in json.load(f):
                        raise KeyError(f"{{user.name}} has no account in the directory")
                return super().add_user(user)

            async def authenticate(self, handler, data):
                return None

        c.JupyterHub.authenticator_class = DirectoryAuthenticator
        c.Authenticator.allow_all = True
        c.Authenticator.delete_invalid_users = {delete_invalid!r}
        c.JupyterHub.cleanup_servers = False
        c.JupyterHub.services = [{{"name": "admin", "api_token": {ADMIN_TOKEN!r}}}]
        c.JupyterHub.load_roles = [{{"name": "admin", "services": ["admin"]}}]
        """))


def server_pid(workdir, user: str) -> int:
    with sqlite3.connect(workdir / "gateway.sqlite") as db:
        [state] = db.execute("SELECT s.state FROM servers s JOIN users u ON u.id = s.user_id WHERE u.name = ?",
                             (user,)).fetchone()
    return json.loads(state)["spawner"]["pid"]


def alive(pid: int) -> bool:
    """Running, not a zombie (the first gateway, its parent, has exited; nobody may have reaped it yet)."""
    stat = procs.read_stat(pid)
    return stat is not None and not stat.exited


async def test_invalid_users_are_kept_with_a_warning_or_deleted(gateway_process, tmp_path):
    directory = tmp_path / "directory.json"
    directory.write_text(json.dumps(["alice", "bob"]))
    tokens = new_tokens(["alice", "bob"])
    first = gateway_process(directory_config(directory, tokens, delete_invalid=False))
    first.start()
    await first.wait_ready()
    await start_servers(first, tokens)
    bob_pid = server_pid(tmp_path, "bob")
    assert first.stop() == 0 and alive(bob_pid)  # cleanup_servers = False: servers outlive the gateway

    # bob's account is gone from the directory: kept, with a warning that names the way out
    directory.write_text(json.dumps(["alice"]))
    alice_only = {"alice": tokens["alice"]}
    kept = gateway_process(directory_config(directory, alice_only, delete_invalid=False), port=first.port)
    kept.start()
    await kept.wait_ready()
    status, model = await api(kept, "/users/bob", ADMIN_TOKEN)
    assert status == 200 and model["servers"][""]["ready"], model
    log = kept.log()
    assert "User bob is kept although DirectoryAuthenticator no longer accepts them" in log, log[-2000:]
    assert "delete_invalid_users" in log and "Traceback" not in log
    assert kept.stop() == 0

    # with delete_invalid_users: bob's server is stopped, then bob is deleted; alice is untouched
    deleting = gateway_process(directory_config(directory, alice_only, delete_invalid=True), port=first.port)
    deleting.start()
    await deleting.wait_ready()
    assert (await api(deleting, "/users/bob", ADMIN_TOKEN))[0] == 404
    assert not alive(bob_pid)
    status, model = await api(deleting, "/users/alice", ADMIN_TOKEN)
    assert status == 200 and model["servers"][""]["ready"], model
    log = deleting.log()
    assert "Deleting user bob, whom DirectoryAuthenticator no longer accepts" in log, log[-2000:]
    assert "Traceback" not in log
