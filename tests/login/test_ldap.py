"""ldapauthenticator.LDAPAuthenticator, unchanged, against a real slapd, behind a real gateway process.

Every test configures the gateway as an operator would (a jupyterhub_config.py) and logs in through
the real login form (GET for the XSRF token, POST), as a browser does.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import textwrap

import aiohttp
import pytest

from gateway.auth import SESSION_COOKIE
from tests.login.ldaptools import AUDITOR_TOKEN, CRYPT_KEY, READER_TOKEN, SERVICES, api, ldap_config, started, whoami
from tests.helpers.services import eventually
from tests.login.slapd import PEOPLE, ROOT_DN, group_dn, password_of

async def test_ldap_form_login(slapd, gateway_process, browsers):
    proc = await started(gateway_process, ldap_config(slapd, 'c.Authenticator.admin_users = {"carol"}\n'))
    # the right password logs in, with a session cookie
    alice = browsers(proc)
    status, _, headers = await alice.login("alice", password_of("alice"))
    assert status == 302, proc.log()[-2000:]
    assert alice.cookie(SESSION_COOKIE) and await whoami(alice) == "alice"
    # a wrong password does not
    wrong = browsers(proc)
    status, text, headers = await wrong.login("alice", "not-her-password")
    assert status == 403 and "Invalid username or password" in text
    assert wrong.cookie(SESSION_COOKIE) is None and await whoami(wrong) is None
    # a right password of a user outside allowed_groups is refused
    bob = browsers(proc)
    status, _, _ = await bob.login("bob", password_of("bob"))
    assert status == 403 and await whoami(bob) is None
    # an admin named in admin_users (and in an allowed group) becomes an admin
    carol = browsers(proc)
    assert (await carol.login("carol", password_of("carol")))[0] == 302
    async with carol.session.get(proc.url + "/hub/api/user") as r:
        assert (await r.json())["admin"] is True
    # a name typed in another case is normalised (lower case), as JupyterHub does
    upper = browsers(proc)
    assert (await upper.login("  ALICE", password_of("alice")))[0] == 403  # the plugin's regex refuses capitals
    # JupyterHub's token request with credentials in the body goes through the plugin too
    status, body = await api(proc, "/users/alice/tokens", "", method="POST",
                             body={"auth": {"username": "alice", "password": password_of("alice")}})
    assert status == 201 and body["user"] == "alice" and body["token"], proc.log()[-3000:]
    status, _ = await api(proc, "/users/alice/tokens", "", method="POST",
                          body={"auth": {"username": "alice", "password": "wrong"}})
    assert status == 403
    # tornado's rule: control characters become spaces, and the user name is stripped
    nul = browsers(proc)
    assert (await nul.login("alice\x00", password_of("alice")))[0] == 302 and await whoami(nul) == "alice"
    assert "Traceback" not in proc.log()


# lookup_dn: the plugin searches for the typed name (a search filter, not only a DN) as the directory's admin
LOOKUP_DN = textwrap.dedent(f"""\
    c.LDAPAuthenticator.bind_dn_template = []
    c.LDAPAuthenticator.lookup_dn = True
    c.LDAPAuthenticator.user_search_base = "{PEOPLE}"
    c.LDAPAuthenticator.user_attribute = "uid"
    c.LDAPAuthenticator.lookup_dn_user_dn_attribute = "uid"
    c.LDAPAuthenticator.lookup_dn_search_user = "{ROOT_DN}"
    c.LDAPAuthenticator.lookup_dn_search_password = "root-secret"
    """)


@pytest.mark.parametrize("relaxed", [False, True], ids=["default-regex", "any-name"])
async def test_ldap_injection_shaped_names_are_refused(slapd, gateway_process, browsers, relaxed):
    """With the plugin's name regex, and without it (then only its escaping stands between the name and
    the directory): no login, no server error, and the throttle counts the attempts."""
    body = 'c.LDAPAuthenticator.valid_username_regex = r"^.*$"\n' if relaxed else ""
    if relaxed:  # lookup_dn: the typed name goes into a search filter, not only into a DN
        body += LOOKUP_DN
    proc = await started(gateway_process, ldap_config(slapd, body))
    for name in ("*", "alice)(uid=*", "*)(|(uid=*", "alice*", "uid=alice,ou=people", "alice\\2a"):
        browser = browsers(proc)
        status, text, _ = await browser.login(name, password_of("alice"))
        assert status in (403, 429), (name, status, text[:300])
        assert await whoami(browser) is None
    check = browsers(proc)
    status, _, _ = await check.login("alice", password_of("alice"))
    assert status in (302, 429)  # the address may be throttled by now; never a server error
    log = proc.log()
    assert "Traceback" not in log and " 500 " not in log


async def test_ldap_lookup_dn_and_posix_group(slapd, gateway_process, browsers):
    body = LOOKUP_DN
    proc = await started(gateway_process, ldap_config(slapd, body, allowed_groups=("posix-users",)))
    dave = browsers(proc)
    assert (await dave.login("dave", password_of("dave")))[0] == 302, proc.log()[-2000:]
    assert await whoami(dave) == "dave"
    alice = browsers(proc)  # right password, but not in the posixGroup
    assert (await alice.login("alice", password_of("alice")))[0] == 403
    nobody = browsers(proc)  # no such entry: the lookup finds nothing
    assert (await nobody.login("zed", "zed-secret"))[0] == 403


async def test_ldap_login_is_throttled(slapd, gateway_process, browsers):
    proc = await started(gateway_process, ldap_config(slapd))
    browser = browsers(proc)
    statuses = [(await browser.login("carol", f"wrong-{i}"))[0] for i in range(5)]
    assert statuses == [403] * 5
    status, text, headers = await browser.login("carol", password_of("carol"))
    assert status == 429 and int(headers["Retry-After"]) > 0 and "Too many failed login attempts" in text
    assert await whoami(browser) is None


async def test_ldap_auth_state_encrypted_and_scoped(slapd, gateway_process, browsers, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", CRYPT_KEY)
    body = SERVICES + textwrap.dedent("""\
        c.Authenticator.enable_auth_state = True
        c.LDAPAuthenticator.auth_state_attributes = ["mail", "departmentNumber"]
        """)
    proc = await started(gateway_process, ldap_config(slapd, body))
    alice = browsers(proc)
    assert (await alice.login("alice", password_of("alice")))[0] == 302, proc.log()[-2000:]
    # visible to a holder of admin:auth_state
    status, model = await api(proc, "/users/alice", AUDITOR_TOKEN)
    assert status == 200
    state = model["auth_state"]
    assert state["user_attributes"]["mail"] == ["alice@example.org"]
    assert state["user_attributes"]["departmentNumber"] == ["physics"]
    assert state["ldap_groups"] == [group_dn("jupyter")]
    # hidden from read:users alone, and from the user herself (cookie)
    status, model = await api(proc, "/users/alice", READER_TOKEN)
    assert status == 200 and "auth_state" not in model
    async with alice.session.get(proc.url + "/hub/api/user") as r:
        assert "auth_state" not in await r.json()
    # the listing shows it only with the scope, too
    status, listing = await api(proc, "/users", AUDITOR_TOKEN)
    assert status == 200
    assert [u["auth_state"]["user_attributes"]["mail"] for u in listing if u["name"] == "alice"] == \
        [["alice@example.org"]]
    # stored encrypted: neither the mail nor the department is in the database (or its WAL) in clear
    raw = b"".join(p.read_bytes() for p in proc.workdir.glob("gateway.sqlite*"))
    assert b"alice@example.org" not in raw and b"physics" not in raw
    with sqlite3.connect(proc.workdir / "gateway.sqlite") as db:
        (blob,) = db.execute("SELECT encrypted_auth_state FROM users WHERE name = 'alice'").fetchone()
    assert blob and bytes(blob).startswith(b"gAAAAA")  # a Fernet token
    # and never logged
    assert "alice@example.org" not in proc.log()


async def test_ldap_auth_state_needs_a_key(slapd, gateway_process, monkeypatch, tmp_path):
    body = "c.Authenticator.enable_auth_state = True\n"
    monkeypatch.delenv("JUPYTERHUB_CRYPT_KEY", raising=False)
    proc = gateway_process(ldap_config(slapd, body))
    result = proc.run_cli("-f", str(proc.config_path), f"--port={proc.port}", "--ip=127.0.0.1")
    assert result.returncode == 2 and "JUPYTERHUB_CRYPT_KEY is not set" in result.stderr, result.stderr
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", "not-a-key")
    result = proc.run_cli("-f", str(proc.config_path), f"--port={proc.port}", "--ip=127.0.0.1")
    assert result.returncode == 2 and "key 1 of JUPYTERHUB_CRYPT_KEY" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


async def test_keys_gateway_cannot_honour_stop_the_start(slapd, gateway_process):
    proc = gateway_process(ldap_config(slapd, "c.Authenticator.manage_roles = True\n"))
    result = proc.run_cli("-f", str(proc.config_path), f"--port={proc.port}", "--ip=127.0.0.1")
    assert result.returncode == 2 and "LDAPAuthenticator.manage_roles" in result.stderr, result.stderr
    proc.config_path.write_text(ldap_config(slapd).replace("ldapauthenticator.LDAPAuthenticator", "no-such-auth"))
    result = proc.run_cli("-f", str(proc.config_path), f"--port={proc.port}", "--ip=127.0.0.1")
    assert result.returncode == 2 and "no authenticator named 'no-such-auth'" in result.stderr, result.stderr


GROUPS_CLASS = '''
from ldapauthenticator import LDAPAuthenticator

class GroupsLDAP(LDAPAuthenticator):
    """The operator's subclass, written in the config file: LDAP groups become hub groups."""

    async def authenticate(self, handler, data):
        model = await super().authenticate(handler, data)
        if model:
            model["groups"] = [dn.split(",")[0].split("=", 1)[1] for dn in model["auth_state"]["ldap_groups"]]
        return model

def staff_are_admins(authenticator, handler, model):
    model["admin"] = "staff" in model["groups"] or None
    model["user_info"] = {"seen_from": handler.request.remote_ip}
    return model

c.JupyterHub.authenticator_class = GroupsLDAP
c.Authenticator.manage_groups = True
c.Authenticator.post_auth_hook = staff_are_admins
c.JupyterHub.load_groups = {"old-team": {"users": ["carol"]}}
'''


async def test_config_file_class_manages_groups(slapd, gateway_process, browsers):
    config = ldap_config(slapd, GROUPS_CLASS + SERVICES, allowed_groups=("jupyter", "staff"))
    proc = await started(gateway_process, config)
    carol = browsers(proc)
    assert (await carol.login("carol", password_of("carol")))[0] == 302, proc.log()[-2000:]
    status, model = await api(proc, "/users/carol", AUDITOR_TOKEN)
    assert status == 200
    assert sorted(model["groups"]) == ["jupyter", "staff"]  # old-team left: membership follows the login
    assert model["admin"] is True  # post_auth_hook
    alice = browsers(proc)
    assert (await alice.login("alice", password_of("alice")))[0] == 302
    status, model = await api(proc, "/users/alice", AUDITOR_TOKEN)
    assert model["groups"] == ["jupyter"] and model["admin"] is False
    with sqlite3.connect(proc.workdir / "gateway.sqlite") as db:
        (info,) = db.execute("SELECT user_info FROM users WHERE name = 'alice'").fetchone()
    assert json.loads(info) == {"seen_from": "127.0.0.1"}


def slow_directory(entered, release) -> str:
    """An LDAPAuthenticator whose directory is slow: authenticate() blocks (as ldap3's synchronous calls
    do) until the test lets it go, at most 20 s."""
    return textwrap.dedent(f'''
        import os, time
        from ldapauthenticator import LDAPAuthenticator

        class SlowLDAP(LDAPAuthenticator):
            async def authenticate(self, handler, data):
                open({str(entered)!r}, "w").close()
                for _ in range(200):
                    if os.path.exists({str(release)!r}):
                        return await super().authenticate(handler, data)
                    time.sleep(0.1)
                return None

        c.JupyterHub.authenticator_class = SlowLDAP
        ''')


async def test_a_slow_directory_does_not_hold_up_the_gateway(slapd, gateway_process, browsers, tmp_path):
    """ldapauthenticator's authenticate runs in a worker thread: while one login waits on the directory,
    the gateway still answers. Were it on the event loop, /hub/health would wait for the login, which
    waits for the release that the test gives only after /hub/health answered: the login would time out."""
    entered, release = tmp_path / "entered", tmp_path / "release"
    proc = await started(gateway_process, ldap_config(slapd, slow_directory(entered, release)))
    login = asyncio.create_task(browsers(proc).login("alice", password_of("alice")))
    await eventually(entered.exists, timeout=15)
    async with aiohttp.ClientSession() as session:
        async with session.get(proc.url + "/hub/health") as r:
            assert r.status == 200
    release.touch()
    status, _, _ = await asyncio.wait_for(login, 60)
    assert status == 302, proc.log()[-2000:]
