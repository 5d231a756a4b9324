"""An authenticator plugin's own pages (``get_handlers``), run unchanged: here the operator's header login
for a site whose SSO proxy (Shibboleth, Apache's mod_auth_*) sets the user's name in a request header,
written in the config as such classes are. Its handler replaces the hub's /login, as under JupyterHub,
and logs in through JupyterHub's ``login_user`` and ``get_next_url``, with the allow rules, admin_users
and the safe-redirect rule applied. Real gateway, real HTTP."""

from __future__ import annotations

import secrets

from jupyterhub.auth import Authenticator
from jupyterhub.handlers import BaseHandler, LogoutHandler
from jupyterhub.utils import url_path_join
from tornado import web as tornado_web

from tests.helpers.pages import Browser


class HeaderLoginHandler(BaseHandler):
    async def get(self):
        name = self.request.headers.get("X-Remote-User", "")
        if not name:
            raise tornado_web.HTTPError(401, "Sign in through the university's single sign-on first")
        user = await self.login_user({"name": name})
        if user is None:
            raise tornado_web.HTTPError(403, "%s may not use this hub", name)
        self.redirect(self.get_next_url(user))


class SsoLogoutHandler(LogoutHandler):
    """As oauthenticator's: a logout built on JupyterHub's, which gateway's own logout stands in for."""


class ShadowHomeHandler(BaseHandler):
    def get(self):
        self.write("the plugin's home")


class HeaderAuthenticator(Authenticator):
    def get_handlers(self, app):
        return [(r"/login", HeaderLoginHandler), (r"/logout", SsoLogoutHandler), (r"/home", ShadowHomeHandler)]

    async def authenticate(self, handler, data):
        return data["name"]  # the SSO proxy in front vouches for the header


async def whoami(browser: Browser):
    async with browser.session.get(browser.base + "/hub/api/user") as r:
        return (await r.json()) if r.status == 200 else None


async def test_a_plugin_login_page_replaces_the_form(page_hub, browsers):
    hub = await page_hub(authenticator_class="plugin", authenticator_plugin=HeaderAuthenticator, plugin_config={
        "Authenticator": {"allowed_users": {"alice"}, "admin_users": {"root"}}})
    alice = browsers(hub)
    status, _, headers = await alice.get("/hub/login?next=%2Fhub%2Ftoken", headers={"X-Remote-User": "alice"})
    assert status == 302 and headers["Location"] == "/hub/token"
    assert (await whoami(alice))["name"] == "alice"
    root = browsers(hub)
    assert (await root.get("/hub/login", headers={"X-Remote-User": "root"}))[0] == 302
    assert (await whoami(root))["admin"] is True  # admin_users through the plugin's own is_admin
    # an off-site next lands on the hub
    status, _, headers = await browsers(hub).get("/hub/login?next=https%3A%2F%2Fevil.example%2F",
                                                 headers={"X-Remote-User": "alice"})
    assert status == 302 and headers["Location"].startswith("/hub/"), headers["Location"]
    # no header: the plugin's own 401 and message; a name the rules refuse: 403, no session either way
    nobody = browsers(hub)
    status, text, _ = await nobody.get("/hub/login")
    assert status == 401 and "single sign-on" in text and await whoami(nobody) is None
    mallory = browsers(hub)
    status, text, _ = await mallory.get("/hub/login", headers={"X-Remote-User": "mallory"})
    assert status == 403 and await whoami(mallory) is None
    # gateway's own form is gone (as under JupyterHub, the plugin's handler has the path); GET only
    assert (await nobody.post("/hub/login", data={"username": "alice", "password": "x"}))[0] == 405
    assert (await nobody.send("HEAD", "/hub/login", headers={"X-Remote-User": "alice"}))[0] == 405
    assert await whoami(nobody) is None
    # a page gateway serves itself is not taken over, and logout is gateway's: the session ends
    status, text, _ = await alice.get("/hub/home")
    assert status == 200 and "the plugin's home" not in text
    assert (await alice.get("/hub/logout"))[0] == 302 and await whoami(alice) is None


class TmpLoginHandler(BaseHandler):
    async def get(self):
        user = await self.login_user({"name": "tmp-" + secrets.token_hex(4)})
        self.redirect(self.get_next_url(user))


class TmpAuthenticator(Authenticator):
    """As tmpauthenticator: a fresh temporary user per visit, at the plugin's own login_url."""

    login_service = "a temporary account"

    def login_url(self, base_url):
        return url_path_join(base_url, "tmplogin")

    def get_handlers(self, app):
        return [(r"/tmplogin", TmpLoginHandler)]

    async def authenticate(self, handler, data):
        return data["name"]


async def test_a_plugin_login_url_is_where_login_goes(page_hub, browsers):
    """The plugin's login_url, one of its own pages: the login page's button goes there, auto_login too."""
    hub = await page_hub(authenticator_class="plugin", authenticator_plugin=TmpAuthenticator,
                         plugin_config={"Authenticator": {"allow_all": True}})
    visitor = browsers(hub)
    status, text, _ = await visitor.get("/hub/login")
    assert status == 200 and 'href="/hub/tmplogin"' in text and "Sign in with a temporary account" in text
    status, _, headers = await visitor.get("/hub/tmplogin?next=%2Fhub%2Ftoken")
    assert status == 302 and headers["Location"] == "/hub/token"
    assert (await whoami(visitor))["name"].startswith("tmp-")
    auto = await page_hub(authenticator_class="plugin", authenticator_plugin=TmpAuthenticator,
                          plugin_config={"Authenticator": {"allow_all": True, "auto_login": True}})
    status, _, headers = await browsers(auto).get("/hub/login?next=%2Fhub%2Ftoken")
    assert status == 302 and headers["Location"] == "/hub/tmplogin?next=%2Fhub%2Ftoken"
