"""The adapter that runs JupyterHub Authenticator plugins: loading, config, the handler shim, JupyterHub's
allow/block/normalise/admin steps, refusals with the plugin's own status, and the built-ins left alone.

The plugins here are small subclasses of jupyterhub.auth.Authenticator (as operators write in their
config files), run in a real gateway on a real port and logged in to through the real form.
"""

from __future__ import annotations

import sys
import textwrap

import pytest
from jupyterhub.auth import Authenticator
from tornado import web as tornado_web

from gateway.authenticators.plugin import build_plugin
from gateway.config import ConfigError, load_settings
from tests.helpers.pages import Browser, form_xsrf
from tests.helpers.paths import ROOT

SEEN: list[dict] = []


class FormAuthenticator(Authenticator):
    """Passwords: 'right' logs in; 'suspended' is refused with the plugin's own 403; 'down' raises."""

    async def authenticate(self, handler, data):
        SEEN.append({
            "data": dict(data),
            "remote_ip": handler.request.remote_ip,
            "agent": handler.request.headers.get("User-Agent"),
            "next": handler.get_argument("next", None),
            "username_arg": handler.get_argument("username"),
            "login_url": handler.settings["login_url"],
        })
        if data["password"] == "suspended":
            raise tornado_web.HTTPError(403, "Your account %s is suspended", data["username"])
        if data["password"] == "down":
            raise RuntimeError("the directory is down")
        if data["password"] != "right":
            return None
        return {"name": data["username"], "auth_state": {"secret": "s3"}}


def plugin_settings(**traits):
    return {"authenticator_class": "plugin", "authenticator_plugin": FormAuthenticator,
            "plugin_config": {"Authenticator": {"allow_all": True, **traits}}}


async def whoami(browser: Browser):
    async with browser.session.get(browser.base + "/hub/api/user") as r:
        return (await r.json()) if r.status == 200 else None


async def test_form_login_through_a_plugin(page_hub, browsers):
    SEEN.clear()
    hub = await page_hub(**plugin_settings(admin_users={"root"}, blocked_users={"mallory"},
                                           username_map={"al": "alice"}))
    browser = browsers(hub)
    status, _, headers = await browser.login("ALICE", "right", next_url="/hub/token")
    assert status == 302 and headers["Location"] == "/hub/token"
    assert (await whoami(browser))["name"] == "alice"  # normalize_username: lower case
    seen = SEEN[-1]
    assert seen["data"] == {"username": "ALICE", "password": "right"}  # the form, without _xsrf
    assert seen["remote_ip"] == "127.0.0.1" and seen["agent"].startswith("Python")
    assert seen["next"] == "/hub/token" and seen["username_arg"] == "ALICE" and seen["login_url"] == "/hub/login"
    mapped = browsers(hub)
    assert (await mapped.login("al", "right"))[0] == 302 and (await whoami(mapped))["name"] == "alice"
    root = browsers(hub)
    assert (await root.login("root", "right"))[0] == 302 and (await whoami(root))["admin"] is True
    blocked = browsers(hub)
    assert (await blocked.login("mallory", "right"))[0] == 403 and await whoami(blocked) is None
    # auth_state is not kept unless enable_auth_state
    assert await hub.store.get_encrypted_auth_state("alice") is None


async def test_plugin_refusals_are_clear(page_hub, browsers):
    hub = await page_hub(**plugin_settings())
    browser = browsers(hub)
    status, text, _ = await browser.login("bob", "suspended")
    assert status == 403 and "Your account bob is suspended" in text
    status, text, _ = await browser.login("bob", "down")
    assert status == 503 and "not available" in text and "Traceback" not in text and "directory" not in text
    assert await whoami(browser) is None


class OtpAuthenticator(Authenticator):
    """A second factor: the password 'right' and the current code from the user's app (here, fixed)."""

    async def authenticate(self, handler, data):
        if data["password"] == "right" and data.get("otp") == "424242":
            return data["username"]
        return None


async def test_request_otp_asks_for_the_code_and_passes_it(page_hub, browsers):
    hub = await page_hub(authenticator_class="plugin", authenticator_plugin=OtpAuthenticator, plugin_config={
        "Authenticator": {"allow_all": True, "request_otp": True, "otp_prompt": "Code from your app:"}})
    browser = browsers(hub)
    status, page_text, _ = await browser.get("/hub/login")
    assert status == 200 and '<label for="otp">Code from your app:</label>' in page_text
    assert 'name="otp" type="password" autocomplete="one-time-code"' in page_text
    for otp, expected in (("000000", 403), ("424242", 302)):
        status, page_text, _ = await browser.get("/hub/login")
        status, _, _ = await browser.post("/hub/login", data={
            "username": "alice", "password": "right", "otp": otp, "_xsrf": form_xsrf(page_text)})
        assert status == expected, otp
    assert (await whoami(browser))["name"] == "alice"
    # without request_otp the form has no such field
    plain = await page_hub(**plugin_settings())
    assert 'name="otp"' not in (await browsers(plain).get("/hub/login"))[1]


async def test_allowed_users_without_allow_all(page_hub, browsers):
    hub = await page_hub(authenticator_class="plugin", authenticator_plugin=FormAuthenticator,
                         plugin_config={"Authenticator": {"allowed_users": {"alice"}}})
    assert (await browsers(hub).login("alice", "right"))[0] == 302
    assert (await browsers(hub).login("bob", "right"))[0] == 403


class DirectoryAuthenticator(Authenticator):
    """Lets in the users the hub has (allow_existing_users); names starting 'gone' are not in the directory."""

    async def authenticate(self, handler, data):
        return data["username"] if data["password"] == "right" else None

    def add_user(self, user):
        if user.name.startswith("gone"):
            raise ValueError(f"{user.name} is not in the directory")
        super().add_user(user)


async def test_users_created_and_deleted_by_admins_reach_the_plugin(page_hub, browsers):
    """JupyterHub calls add_user when an admin creates a user and delete_user when one is deleted; with
    allow_existing_users that is what lets the user in, and what keeps them out once deleted."""
    hub = await page_hub(authenticator_class="plugin", authenticator_plugin=DirectoryAuthenticator, plugin_config={
        "Authenticator": {"allowed_users": {"alice"}, "allow_existing_users": True}})
    root = await hub.new_token("root", admin=True)
    assert (await browsers(hub).login("bob", "right"))[0] == 403  # not a user of this hub yet
    assert (await hub.api("POST", "/users/bob", token=root)).status == 201
    bob = browsers(hub)
    assert (await bob.login("bob", "right"))[0] == 302 and (await whoami(bob))["name"] == "bob"
    assert (await hub.api("DELETE", "/users/bob", token=root)).status == 204
    assert (await browsers(hub).login("bob", "right"))[0] == 403  # delete_user dropped him from allowed_users
    assert await hub.store.get_user("bob") is None
    # the plugin refuses one of two: neither is created, and the answer says why
    refused = await hub.api("POST", "/users", token=root, json_body={"usernames": ["carol", "gone-dan"]})
    assert refused.status == 400 and refused.body["message"] == \
        "Failed to create user gone-dan: gone-dan is not in the directory", refused.body
    assert await hub.store.get_user("carol") is None and await hub.store.get_user("gone-dan") is None
    assert (await browsers(hub).login("carol", "right"))[0] == 403  # withdrawn from the plugin too
    assert (await hub.api("POST", "/users", token=root, json_body={"usernames": ["carol"]})).status == 201
    assert (await browsers(hub).login("carol", "right"))[0] == 302


def test_config_file_names_a_plugin(tmp_path):
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(textwrap.dedent("""\
        c = get_config()  # noqa
        c.JupyterHub.authenticator_class = "ldapauthenticator"
        c.LDAPAuthenticator.server_address = "ldap.example.org"
        c.LDAPAuthenticator.bind_dn_template = ["uid={username},ou=people,dc=example,dc=org"]
        c.Authenticator.enable_auth_state = False
        c.Authenticator.admin_users = {"carol"}
        """))
    warnings: list[str] = []
    settings = load_settings(str(config), warn=warnings.append)
    assert settings.authenticator_class == "plugin" and settings.authenticator_plugin == "ldapauthenticator"
    assert warnings == []  # the plugin's sections and Authenticator keys are the plugin's, not "ignored"
    plugin = build_plugin(settings)
    assert type(plugin).__name__ == "LDAPAuthenticator" and plugin.server_address == "ldap.example.org"
    assert plugin.admin_users == {"carol"} and settings.admin_users == {"carol"}
    # a built-in authenticator still names keys it ignores
    config.write_text('c.JupyterHub.authenticator_class = "dummy"\nc.LDAPAuthenticator.server_address = "x"\n')
    warnings.clear()
    settings = load_settings(str(config), warn=warnings.append)
    assert settings.authenticator_class == "dummy"
    assert warnings == ["Unsupported config key LDAPAuthenticator.server_address is ignored"]


def test_builtin_classes_stay_builtin(tmp_path):
    config = tmp_path / "jupyterhub_config.py"
    config.write_text("from jupyterhub.auth import DummyAuthenticator\n"
                      "c.JupyterHub.authenticator_class = DummyAuthenticator\n")
    assert load_settings(str(config)).authenticator_class == "dummy"
    config.write_text('c.JupyterHub.authenticator_class = "shared-password"\n'
                      'c.SharedPasswordAuthenticator.user_password = "long enough"\n')
    assert load_settings(str(config)).authenticator_class == "shared-password"


@pytest.mark.parametrize("spec, message", [
    ("nosuchmodule.Auth", "cannot load 'nosuchmodule.Auth': ModuleNotFoundError"),
    ("nothing-by-that-name", "no authenticator named 'nothing-by-that-name'"),
    ("collections.OrderedDict", "is not a jupyterhub Authenticator class"),
])
def test_unloadable_classes_stop_the_start(make_settings, spec, message):
    with pytest.raises(ConfigError) as raised:
        build_plugin(make_settings(authenticator_class="plugin", authenticator_plugin=spec))
    assert message in str(raised.value)


def test_plugin_own_validation_and_unhonoured_keys(make_settings):
    ldap = "ldapauthenticator.LDAPAuthenticator"
    with pytest.raises(ConfigError) as raised:  # the plugin's own check: allowed_groups needs a filter
        build_plugin(make_settings(authenticator_class="plugin", authenticator_plugin=ldap, plugin_config={
            "LDAPAuthenticator": {"bind_dn_template": ["uid={username}"], "group_search_filter": "",
                                  "allowed_groups": ["cn=x"]}}))
    assert "LDAPAuthenticator: ValueError" in str(raised.value)
    with pytest.raises(ConfigError) as raised:
        build_plugin(make_settings(authenticator_class="plugin", authenticator_plugin=ldap, plugin_config={
            "LDAPAuthenticator": {"bind_dn_template": ["uid={username}"]},
            "Authenticator": {"manage_roles": True, "auth_refresh_strict": True}}))
    assert "LDAPAuthenticator.manage_roles = True: gateway cannot honour it" in str(raised.value)
    assert "LDAPAuthenticator.auth_refresh_strict = True" in str(raised.value)


async def test_info_names_the_plugin(page_hub):
    hub = await page_hub(**plugin_settings())
    token = await hub.new_token("root", admin=True)
    result = await hub.api("GET", "/info", token=token)
    assert result.body["authenticator"]["class"] == f"{__name__}.FormAuthenticator"


def test_builtins_do_not_import_jupyterhub():
    import subprocess

    code = ("import sys, gateway.app, gateway.cli; "
            "print(sorted(m for m in ('jupyterhub', 'tornado') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr
