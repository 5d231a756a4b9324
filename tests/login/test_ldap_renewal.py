"""Renewing logins with a real LDAP plugin: refresh_user before a spawn and by age, logout hooks, auth_state
written through the API, and crypt-key rotation. The plugin is an operator's subclass of LDAPAuthenticator
written in the config file (a common way to add refresh_user)."""

from __future__ import annotations

import asyncio
import sqlite3
import textwrap
from pathlib import Path

import aiohttp

from tests.helpers.paths import FAKE_SERVER
from tests.helpers.spawn import wait_server
from tests.login.ldaptools import AUDITOR_TOKEN, CRYPT_KEY, SERVICES, api, ldap_config, started, whoami
from tests.login.slapd import password_of

ADMIN_TOKEN = "admin-service-token-0123456789"


def renewing_config(slapd, stale_dir: Path, body: str = "") -> str:
    """LDAP login; refresh_user says "log in again" for users with a file in ``stale_dir``, else adds to
    auth_state how many times it refreshed them."""
    plugin = textwrap.dedent(f'''
        import os
        from ldapauthenticator import LDAPAuthenticator

        class RenewingLDAP(LDAPAuthenticator):
            async def refresh_user(self, user, handler=None):
                if os.path.exists(os.path.join({str(stale_dir)!r}, user.name)):
                    return False
                state = await user.get_auth_state() or {{}}
                return {{"auth_state": {{**state, "refreshes": state.get("refreshes", 0) + 1}}}}

        c.JupyterHub.authenticator_class = RenewingLDAP
        c.Authenticator.enable_auth_state = True
        c.Spawner.cmd = {list(FAKE_SERVER)!r}
        c.JupyterHub.services.append({{"name": "root", "api_token": "{ADMIN_TOKEN}", "admin": True}})
        ''')
    return ldap_config(slapd, SERVICES + plugin + textwrap.dedent(body))


async def test_refresh_pre_spawn(slapd, gateway_process, browsers, monkeypatch, tmp_path):
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", CRYPT_KEY)
    stale = tmp_path / "stale"
    stale.mkdir()
    config = renewing_config(slapd, stale, "c.Authenticator.refresh_pre_spawn = True\n"
                                           "c.Authenticator.auth_refresh_age = 0\n")
    proc = await started(gateway_process, config)
    alice = browsers(proc)
    assert (await alice.login("alice", password_of("alice")))[0] == 302, proc.log()[-2000:]
    # a stale login: the API start (cookie, the user's own) is refused, the page sends her to log in again
    (stale / "alice").touch()
    xsrf = {"X-XSRFToken": alice.cookie("_xsrf") or ""}
    status, text, _ = await alice.post("/hub/api/users/alice/server", headers=xsrf)
    assert status == 403 and "auth has expired for alice, login again" in text
    status, _, headers = await alice.get("/hub/spawn")
    assert status == 302 and headers["Location"].startswith("/hub/login?next=")
    assert await whoami(alice) is None  # the session ended
    # a fresh login, and a refresh that succeeds: the spawn goes ahead with the refreshed auth_state
    (stale / "alice").unlink()
    assert (await alice.login("alice", password_of("alice")))[0] == 302
    status, _, headers = await alice.get("/hub/spawn")
    assert status == 302 and not headers["Location"].startswith("/hub/login"), headers["Location"]
    status, model = await api(proc, "/users/alice", AUDITOR_TOKEN)
    assert model["auth_state"]["refreshes"] == 1 and model["auth_state"]["ldap_groups"]
    # a token request (not her browser) starts on stale auth, as JupyterHub 6.1 does by default
    (stale / "carol").touch()
    carol = browsers(proc)
    assert (await carol.login("carol", password_of("carol")))[0] == 302
    status, _ = await api(proc, "/users/carol/server", ADMIN_TOKEN, method="POST")
    assert status in (201, 202)
    assert "Traceback" not in proc.log()


async def test_refresh_pre_stop(slapd, gateway_process, browsers, monkeypatch, tmp_path):
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", CRYPT_KEY)
    stale = tmp_path / "stale"
    stale.mkdir()
    proc = await started(gateway_process, renewing_config(slapd, stale, "c.Authenticator.refresh_pre_stop = True\n"))
    alice = browsers(proc)
    assert (await alice.login("alice", password_of("alice")))[0] == 302, proc.log()[-2000:]
    xsrf = {"X-XSRFToken": alice.cookie("_xsrf") or ""}
    async with aiohttp.ClientSession() as session:
        async def server(ready: bool) -> None:  # the start or stop may have answered 202: wait for it
            await wait_server(session, proc.url, ADMIN_TOKEN, "alice", ready=ready)

        assert (await alice.post("/hub/api/users/alice/server", headers=xsrf))[0] in (201, 202)
        await server(ready=True)
        # a fresh login: her own stop refreshes first (the stop sees the new auth_state)
        refreshes = (await api(proc, "/users/alice", ADMIN_TOKEN))[1]["auth_state"].get("refreshes", 0)
        assert (await alice.delete("/hub/api/users/alice/server", headers=xsrf))[0] in (202, 204)
        await server(ready=False)
        assert (await api(proc, "/users/alice", ADMIN_TOKEN))[1]["auth_state"]["refreshes"] == refreshes + 1
        # a stale login: her own stop (her browser) waits for a new login; the server keeps running
        assert (await alice.post("/hub/api/users/alice/server", headers=xsrf))[0] in (201, 202)
        await server(ready=True)
        (stale / "alice").touch()
        status, text, _ = await alice.delete("/hub/api/users/alice/server", headers=xsrf)
        assert status == 403 and "auth has expired for alice, login again" in text
        assert (await api(proc, "/users/alice", ADMIN_TOKEN))[1]["servers"][""]["ready"]
        # an admin stops it anyway, with a warning in the log
        status, _ = await api(proc, "/users/alice/server", ADMIN_TOKEN, method="DELETE")
        assert status in (202, 204)
        await server(ready=False)
        # deleting a user with a running server refreshes before that stop too (no request asked for it)
        carol = browsers(proc)
        assert (await carol.login("carol", password_of("carol")))[0] == 302
        assert (await api(proc, "/users/carol/server", ADMIN_TOKEN, method="POST"))[0] in (201, 202)
        await wait_server(session, proc.url, ADMIN_TOKEN, "carol", ready=True)
        (stale / "carol").touch()
        assert (await api(proc, "/users/carol", ADMIN_TOKEN, method="DELETE"))[0] == 204
    log = proc.log()
    assert "User alice has stale auth info; stopping the server anyway (asked by root)" in log
    assert "User carol has stale auth info; stopping the server anyway\n" in log
    assert "Traceback" not in log


async def test_refresh_by_age_on_pages(slapd, gateway_process, browsers, monkeypatch, tmp_path):
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", CRYPT_KEY)
    stale = tmp_path / "stale"
    stale.mkdir()
    proc = await started(gateway_process, renewing_config(slapd, stale, "c.Authenticator.auth_refresh_age = 1\n"))
    alice = browsers(proc)
    assert (await alice.login("alice", password_of("alice")))[0] == 302
    (stale / "alice").touch()
    await asyncio.sleep(1.2)  # past auth_refresh_age: the next page request asks refresh_user
    status, _, headers = await alice.get("/hub/home")
    assert status == 302 and headers["Location"].startswith("/hub/login?next=")
    assert await whoami(alice) is None


async def test_logout_redirect_url(slapd, gateway_process, browsers):
    body = textwrap.dedent("""
        from ldapauthenticator import LDAPAuthenticator
        from traitlets import Unicode

        class LDAPWithSingleLogout(LDAPAuthenticator):
            logout_redirect_url = Unicode("http://127.0.0.1:9/idp/logout", config=True)

        c.JupyterHub.authenticator_class = LDAPWithSingleLogout
        """)
    proc = await started(gateway_process, ldap_config(slapd, body))
    alice = browsers(proc)
    assert (await alice.login("alice", password_of("alice")))[0] == 302
    status, _, headers = await alice.get("/hub/logout")
    assert status == 302 and headers["Location"] == "http://127.0.0.1:9/idp/logout"
    assert await whoami(alice) is None


async def test_auth_state_through_the_api_and_key_rotation(slapd, gateway_process, browsers, monkeypatch,
                                                           tmp_path):
    old_key, new_key = CRYPT_KEY, "b" * 64
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", old_key)
    stale = tmp_path / "stale"
    stale.mkdir()
    config = renewing_config(slapd, stale)
    proc = await started(gateway_process, config)
    alice = browsers(proc)
    assert (await alice.login("alice", password_of("alice")))[0] == 302
    status, model = await api(proc, "/users/alice", ADMIN_TOKEN, method="PATCH",
                              body={"auth_state": {"note": "set by an admin"}})
    assert status == 200 and model["auth_state"] == {"note": "set by an admin"}
    status, model = await api(proc, "/users/alice", AUDITOR_TOKEN)
    assert model["auth_state"] == {"note": "set by an admin"}
    status, body = await api(proc, "/users/alice", AUDITOR_TOKEN, method="PATCH", body={"auth_state": {}})
    assert status == 403  # admin:auth_state alone cannot write users
    assert proc.stop() == 0
    # a new key alone cannot read what the old one wrote: the start stops with a clear message
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", new_key)
    result = proc.run_cli("-f", str(proc.config_path), f"--port={proc.port}", "--ip=127.0.0.1")
    assert result.returncode == 2 and "does not decrypt the stored auth_state" in result.stderr, result.stderr
    # rotation: the new key first, the old one after it
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", f"{new_key};{old_key}")
    proc.start()
    await proc.wait_ready()
    status, model = await api(proc, "/users/alice", AUDITOR_TOKEN)
    assert model["auth_state"] == {"note": "set by an admin"}
    with sqlite3.connect(proc.workdir / "gateway.sqlite") as db:
        (blob,) = db.execute("SELECT encrypted_auth_state FROM users WHERE name = 'alice'").fetchone()
    assert b"set by an admin" not in bytes(blob)
