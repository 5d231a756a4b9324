"""Authenticators against a real store: JupyterHub 6's allow/block rules, the four implementations, PAM."""

from __future__ import annotations

import secrets
import subprocess

import pytest

from gateway import keys
from gateway.authenticators.builtin import make_authenticator, set_user_password
from gateway.config import ConfigError, load_settings
from gateway.vocab import passwords
from tests.helpers.pages import add_user

PASSWORD = "correct horse battery"


async def authenticator_for(start_hub, **settings):
    hub = await start_hub(**settings)
    return hub, make_authenticator(hub.settings, hub.store)


def test_password_hashes():
    encoded = passwords.hash_password("s3cret-pass")
    assert encoded.startswith("scrypt$15$8$1$") and "s3cret-pass" not in encoded
    assert passwords.verify_password("s3cret-pass", encoded)
    assert not passwords.verify_password("s3cret-pasS", encoded)
    assert not passwords.verify_password("s3cret-pass", None)
    assert not passwords.verify_password("s3cret-pass", "scrypt$broken")
    assert not passwords.verify_password("s3cret-pass", "md5$x$y$z$a$b")
    assert passwords.hash_password("s3cret-pass") != encoded  # salted
    assert passwords.password_problem("short") and passwords.password_problem("x" * 2000)
    assert passwords.password_problem("long enough") is None


async def test_password_authenticator(start_hub):
    hub, auth = await authenticator_for(start_hub)
    alice = await add_user(hub, "alice", PASSWORD)
    await hub.new_user("nopass")
    assert await auth.authenticate("alice", PASSWORD) == "alice"
    assert await auth.authenticate("ALICE", PASSWORD) == "alice"  # normalised
    assert await auth.authenticate("alice", "wrong") is None
    assert await auth.authenticate("nosuch", PASSWORD) is None
    assert await auth.authenticate("nopass", "") is None
    assert await auth.authenticate("a/b", PASSWORD) is None
    assert await auth.authenticate("x" * 300, PASSWORD) is None
    with pytest.raises(Exception):
        await set_user_password(hub.store, alice, "short")
    assert auth.manages_passwords and not auth.allow_all and auth.allow_existing_users


async def test_password_authenticator_block_and_allow(start_hub):
    hub, auth = await authenticator_for(start_hub, blocked_users=frozenset({"Mallory"}))
    await add_user(hub, "mallory", PASSWORD)
    assert await auth.authenticate("mallory", PASSWORD) is None
    hub2, auth2 = await authenticator_for(start_hub, allow_existing_users=False, allowed_users=frozenset({"bob"}))
    await add_user(hub2, "alice", PASSWORD)
    await add_user(hub2, "bob", PASSWORD)
    assert await auth2.authenticate("alice", PASSWORD) is None
    assert await auth2.authenticate("bob", PASSWORD) == "bob"


async def test_dummy_authenticator(start_hub):
    hub, auth = await authenticator_for(start_hub, authenticator_class="dummy")
    assert auth.allow_all
    assert await auth.authenticate("anyone", "") == "anyone"
    user = await auth.login("Newcomer", "x")
    assert user.name == "newcomer" and await hub.store.get_user("newcomer") is not None
    _, auth = await authenticator_for(start_hub, authenticator_class="dummy", allowed_users=frozenset({"ann"}))
    assert not auth.allow_all
    assert await auth.authenticate("ann", "x") == "ann" and await auth.authenticate("bob", "x") is None
    _, auth = await authenticator_for(start_hub, authenticator_class="dummy", dummy_password="let-me-in")
    assert await auth.authenticate("x", "let-me-in") == "x" and await auth.authenticate("x", "nope") is None


async def test_shared_password_authenticator(start_hub):
    settings = dict(authenticator_class="shared-password", shared_password="users-password",
                    admin_password="admins-password-that-is-long-enough", admin_users=frozenset({"boss"}),
                    allowed_users=frozenset({"ann"}))
    hub, auth = await authenticator_for(start_hub, **settings)
    assert await auth.authenticate("ann", "users-password") == "ann"
    assert await auth.authenticate("bob", "users-password") is None  # not allowed
    assert await auth.authenticate("boss", "users-password") is None  # admins must use the admin password
    assert await auth.authenticate("boss", "admins-password-that-is-long-enough") == "boss"
    assert await auth.authenticate("ann", "admins-password-that-is-long-enough") is None
    user = await auth.login("boss", "admins-password-that-is-long-enough")
    assert user.admin
    _, everyone = await authenticator_for(start_hub, authenticator_class="shared-password",
                                          shared_password="users-password", allow_all=True)
    assert await everyone.authenticate("zed", "users-password") == "zed"


async def test_allow_existing_users_semantics(start_hub):
    """JupyterHub 5+: allowed_users set → allow_existing_users defaults True; admins join a non-empty allowed set."""
    hub, auth = await authenticator_for(start_hub, authenticator_class="shared-password",
                                        shared_password="users-password", allowed_users=frozenset({"ann"}),
                                        admin_users=frozenset({"boss"}), admin_password="x" * 32)
    assert auth.allow_existing_users and not auth.allow_all
    await hub.new_user("old")
    assert await auth.is_allowed("old") and await auth.is_allowed("boss") and not await auth.is_allowed("new")
    hub, auth = await authenticator_for(start_hub, authenticator_class="shared-password",
                                        shared_password="users-password")  # same store: 'old' exists
    assert not auth.allow_existing_users and not await auth.is_allowed("old")  # no allow config: nobody


def test_shared_password_config():
    with pytest.raises(ConfigError) as e:
        load_settings(None, {"JupyterHub": {"authenticator_class": "shared-password"}})
    assert "user_password" in str(e.value.problems)
    settings = load_settings(None, {"JupyterHub": {"authenticator_class": "shared-password"},
                                    "SharedPasswordAuthenticator": {"user_password": "users-password"}})
    assert settings.shared_password == "users-password"


async def test_authenticator_is_in_the_app(page_hub):
    hub = await page_hub(authenticator_class="dummy")
    assert hub.app[keys.AUTHENTICATOR].kind == "dummy"


# ---------------------------------------------------------------- PAM with a real system account


async def test_pam_login(page_hub, browsers, system_account):
    name, password = system_account
    hub = await page_hub(authenticator_class="pam", allow_all=True)
    auth = hub.app[keys.AUTHENTICATOR]
    assert await auth.authenticate(name, password) == name
    assert await auth.authenticate(name, password + "x") is None
    browser = browsers(hub)
    status, _, _ = await browser.login(name, "wrong")
    assert status == 403
    status, _, headers = await browser.login(name, password)
    assert status == 302 and headers["Location"] == "/hub/spawn"
    assert (await browser.get("/hub/api/user"))[0] == 200
    hub2 = await page_hub(authenticator_class="pam")  # JupyterHub 5+: no allow config, nobody
    assert await hub2.app[keys.AUTHENTICATOR].authenticate(name, password) is None


@pytest.fixture
def unix_group(system_account):
    """A throw-away Unix group with the system account in it, deleted afterwards."""
    name, _ = system_account
    group = "gwgrp" + secrets.token_hex(3)
    subprocess.run(["groupadd", group], check=True)
    try:
        subprocess.run(["usermod", "-a", "-G", group, name], check=True)
        yield group
    finally:
        subprocess.run(["groupdel", group], check=False)


async def test_pam_allowed_and_admin_groups(page_hub, browsers, system_account, unix_group):
    """LocalAuthenticator.allowed_groups lets members in without allow_all; PAMAuthenticator.admin_groups makes
    them admins, and is authoritative: outside it, the admin flag goes at the next login."""
    name, password = system_account
    hub = await page_hub(authenticator_class="pam", pam_allowed_groups={unix_group}, pam_admin_groups={unix_group})
    member = browsers(hub)
    assert (await member.login(name, password))[0] == 302
    assert (await hub.store.get_user(name)).admin is True
    other_group = await page_hub(authenticator_class="pam", pam_allowed_groups={"gw-no-such-group"})
    assert (await browsers(other_group).login(name, password))[0] == 403
    demoted = await page_hub(authenticator_class="pam", allow_all=True, pam_admin_groups={"gw-no-such-group"},
                             db_url=hub.settings.db_url)
    assert (await browsers(demoted).login(name, password))[0] == 302
    assert (await demoted.store.get_user(name)).admin is False
