"""JupyterHub Authenticator plugins (ldapauthenticator, oauthenticator, a class in the config), run unchanged.

The only module that imports ``jupyterhub``, and only when ``authenticator_class`` names a plugin.

- *Loading*: an entry-point name (group ``jupyterhub.authenticators``), a dotted import path, or a class
  object; built with ``config=`` the whole traitlets config, so ``c.LDAPAuthenticator.*``,
  ``c.Authenticator.*`` ... reach it as under JupyterHub. A class that is not an Authenticator, or a key
  gateway cannot honour (``UNHONOURED``), stops the start (ConfigError: exit 2).
- *Form login* (``PluginAuthenticator.login``): the whole form (with ``otp`` when the plugin sets
  ``request_otp``: the login page then asks for it with ``otp_prompt``); gateway's throttle, then the plugin's own
  ``get_authenticated_user(handler, data)`` (authenticate, normalize_username, check_blocked_users,
  check_allowed, is_admin, post_auth_hook), then ``apply_auth_model``: the user record (created at first
  login, ``add_user`` called), its admin flag when the plugin says True or False, its groups when
  ``manage_groups`` (hub groups created, membership made exactly the returned list), its auth_state
  (encrypted; cleared when auth state is disabled).
- *Refresh*: ``refresh(user, handler, force)`` calls ``refresh_user`` at most every ``auth_refresh_age``
  seconds per user (forced before a spawn with ``refresh_pre_spawn``, before a stop with
  ``refresh_pre_stop``); False means: log in again.
- *Start*: admin_users and allowed_users of the plugin exist as users; ``add_user`` is called for every
  stored user (JupyterHub's ``init_users``: ``allow_existing_users`` works through it). A user whose
  ``add_user`` raises (say, an account gone from the directory) is kept with a warning, or with
  ``delete_invalid_users`` removed: its servers stopped, then the user deleted.
- *Admins' changes* (``gateway.ops.accounts``): ``user_added`` calls the plugin's ``add_user`` for users an
  admin creates, ``user_deleted`` its ``delete_user`` before one is deleted.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from importlib import import_module
from importlib.metadata import entry_points
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

from aiohttp import web

from gateway.authenticators.auth_state import AuthStateCrypt, load_auth_state, save_auth_state
from gateway.authenticators.builtin import MAX_LOGIN_NAME, loggable
from gateway.authenticators.handler_shim import PluginHandler, form_data
from gateway.authenticators.throttle import LoginThrottle
from gateway.config import ConfigError, Settings
from gateway.errors import ApiError
from gateway.store import Conflict, Store
from gateway.vocab.models import Identity, User
from gateway.vocab.names import valid_group_name, validate_username

log = logging.getLogger("gateway.auth")
plugin_log = logging.getLogger("gateway.authenticator")

ENTRY_POINT_GROUP = "jupyterhub.authenticators"
REFRESH_BEFORE_STOP_TIMEOUT = 10.0  # seconds a refresh_pre_stop refresh may hold up a stop nobody waits on
# Authenticator traits gateway cannot honour yet: (trait, value that is fine, why)
UNHONOURED = (
    ("manage_roles", False, "authenticator-managed roles are not supported"),
    ("reset_managed_roles_on_startup", False, "authenticator-managed roles are not supported"),
    ("auth_refresh_strict", False, "strict refresh on API requests is not supported"),
)


# ---------------------------------------------------------------- loading


@functools.cache  # read by the route setups and at start: the entry points are scanned once
def load_plugin_class(spec: Any) -> type:
    """The Authenticator class ``spec`` names (class, entry-point name, dotted path); ConfigError if none."""
    from jupyterhub.auth import Authenticator as HubAuthenticator

    cls = spec
    if isinstance(spec, str):
        found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == spec]
        try:
            if found:
                cls = found[0].load()
            elif "." in spec:
                module, _, name = spec.rpartition(".")
                cls = getattr(import_module(module), name)
            else:
                known = ", ".join(sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}))
                raise ConfigError([f"JupyterHub.authenticator_class: no authenticator named {spec!r} "
                                   f"(installed entry points: {known or 'none'})"])
        except ConfigError:
            raise
        except Exception as e:  # ImportError, AttributeError, an error inside the plugin's module
            raise ConfigError([f"JupyterHub.authenticator_class: cannot load {spec!r}: {type(e).__name__}: {e}"]) \
                from None
    if not (isinstance(cls, type) and issubclass(cls, HubAuthenticator)):
        raise ConfigError([f"JupyterHub.authenticator_class: {spec!r} is not a jupyterhub Authenticator class"])
    return cls


@functools.cache
def plugin_handlers(spec: Any) -> tuple[tuple[str, type], ...]:
    """The plugin class's ``get_handlers``: (pattern, tornado handler class) pairs, read once at setup from a
    bare instance (routes are fixed before the plugin is built at start; traitlets gives it its trait
    defaults). JupyterHub's tornado app is not there (``app`` is None): a plugin that needs it, or fails
    otherwise, mounts no pages of its own, with a warning."""
    from tornado import web as tornado_web

    cls = load_plugin_class(spec)
    try:
        entries = list(cls.__new__(cls).get_handlers(None))
    except Exception as e:
        log.warning("%s.get_handlers failed without a running JupyterHub (%s: %s): its own pages are not mounted",
                    cls.__name__, type(e).__name__, e)
        return ()
    return tuple((entry[0], entry[1]) for entry in entries
                 if isinstance(entry, (tuple, list)) and len(entry) >= 2 and isinstance(entry[1], type)
                 and issubclass(entry[1], tornado_web.RequestHandler))


def build_plugin(settings: Settings) -> Any:
    """The plugin instance, configured from every config section (traitlets resolves its own)."""
    from traitlets.config import Config

    cls = load_plugin_class(settings.authenticator_plugin)
    config = Config({section: dict(values) for section, values in settings.plugin_config.items()})
    try:
        plugin = cls(config=config, log=plugin_log)
    except Exception as e:  # the plugin's own validation (ValueError from a trait observer ...)
        raise ConfigError([f"{cls.__name__}: {type(e).__name__}: {e}"]) from None
    problems = [f"{cls.__name__}.{trait} = {getattr(plugin, trait)!r}: gateway cannot honour it ({why})"
                for trait, fine, why in UNHONOURED if plugin.has_trait(trait) and getattr(plugin, trait) != fine]
    if problems:
        raise ConfigError(problems)
    try:
        plugin.check_allow_config()
    except Exception as e:
        raise ConfigError([f"{cls.__name__}: {e}"]) from None
    in_thread = settings.authenticate_in_thread
    if in_thread or in_thread is None and _is_ldap(cls):
        authenticate_in_a_thread(plugin)
    return plugin


def _is_ldap(cls: type) -> bool:
    return any(base.__module__.split(".")[0] == "ldapauthenticator" for base in cls.__mro__)


def authenticate_in_a_thread(plugin: Any) -> None:
    """The plugin's ``authenticate`` runs in a worker thread, on an event loop of its own for each call:
    gateway's loop is also the proxy's, and a directory's synchronous round trips (ldap3: bind, searches)
    would stall every proxied request meanwhile. Only ``authenticate``: the steps around it
    (allow/block/admin checks, hooks, the user's auth_state) stay on gateway's loop. A plugin whose
    ``authenticate`` uses objects bound to gateway's loop needs ``c.Gateway.authenticate_in_thread = False``."""
    original = plugin.authenticate

    def run(handler: Any, data: Any) -> Any:
        result = original(handler, data)
        return asyncio.run(result) if inspect.iscoroutine(result) else result

    async def authenticate(handler: Any, data: Any = None) -> Any:
        return await asyncio.to_thread(run, handler, data)

    plugin.authenticate = authenticate


def _overrides(plugin: Any, method: str) -> bool:
    from jupyterhub.auth import Authenticator as HubAuthenticator

    return getattr(type(plugin), method) is not getattr(HubAuthenticator, method)


def http_error_message(error: Any) -> str:
    """tornado HTTPError's text for the person logging in: its formatted log_message, else its reason."""
    if error.log_message:
        try:
            return error.log_message % error.args if error.args else error.log_message
        except (TypeError, ValueError):
            return error.log_message
    return error.reason or "Login refused"


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


# ---------------------------------------------------------------- the user object plugins see


class PluginUser:
    """What JupyterHub's User wrapper gives an authenticator: name, id, admin, groups, auth_state."""

    def __init__(self, user: User, store: Store, crypt: AuthStateCrypt | None, groups: list[str]):
        self.orm_user = user
        self.id = user.id
        self.name = user.name
        self.admin = user.admin
        self.escaped_name = quote(user.name, safe="@~")
        self.groups = [SimpleNamespace(name=g) for g in groups]
        self._store = store
        self._crypt = crypt

    async def get_auth_state(self) -> Any:
        return await load_auth_state(self._store, self._crypt, self.name)

    async def save_auth_state(self, auth_state: Any) -> None:
        await save_auth_state(self._store, self._crypt, self.id, auth_state)


# ---------------------------------------------------------------- the adapter


class PluginAuthenticator:
    """gateway's authenticator interface, carried out by a JupyterHub Authenticator plugin."""

    kind = "plugin"
    manages_passwords = False

    def __init__(self, settings: Settings, store: Store, plugin: Any, crypt: AuthStateCrypt | None,
                 cookie_secret: bytes):
        self.settings = settings
        self.store = store
        self.plugin = plugin
        self.crypt = crypt
        self.cookie_secret = cookie_secret
        self.throttle = LoginThrottle()
        self._refreshed: dict[str, float] = {}  # user name -> monotonic time of the last refresh or login

    # ---- facts other parts read
    @property
    def blocked_users(self) -> frozenset[str]:
        return frozenset(self.plugin.blocked_users)

    @property
    def manage_groups(self) -> bool:
        return bool(getattr(self.plugin, "manage_groups", False))

    @property
    def refresh_pre_spawn(self) -> bool:
        return bool(getattr(self.plugin, "refresh_pre_spawn", False))

    @property
    def refresh_pre_stop(self) -> bool:
        return bool(getattr(self.plugin, "refresh_pre_stop", False))

    @property
    def login_service(self) -> str:
        return getattr(self.plugin, "login_service", "") or ""

    @property
    def logout_redirect_url(self) -> str:
        """Where a logged-out browser goes instead of the login page (oauthenticator's trait), if set."""
        return getattr(self.plugin, "logout_redirect_url", "") or ""

    def warn_about_config(self) -> None:
        pass  # the plugin's check_allow_config ran when it was built

    def user_object(self, user: User, groups: list[str] | None = None) -> PluginUser:
        return PluginUser(user, self.store, self.crypt, list(groups or []))

    async def plugin_user(self, user: User) -> PluginUser:
        groups = (await self.store.groups_of_users([user.id]))[user.id]
        return self.user_object(user, groups)

    def handler_for(self, request: web.Request | None, *, form: Mapping[str, list[str]] | None = None,
                    body: bytes = b"", handler_class: type[PluginHandler] = PluginHandler) -> PluginHandler:
        """The tornado-like handler for ``request`` (None: an API call with no page, e.g. token requests);
        ``handler_class``: a PluginHandler subclass (the redirect login runs a plugin's own handler classes)."""
        hub_prefix = self.settings.hub_prefix
        if request is None:
            return PluginHandler(method="POST", uri=hub_prefix + "api/", headers={}, host="", protocol="http",
                                 remote_ip=None, form=form, cookie_secret=self.cookie_secret,
                                 base_url=self.settings.base_url, hub_prefix=hub_prefix, authenticator=self.plugin,
                                 log=plugin_log)
        query: dict[str, list[str]] = {}
        for name, value in request.query.items():
            query.setdefault(name, []).append(value)
        return handler_class(method=request.method, uri=request.raw_path, headers=list(request.headers.items()),
                             host=request.host, protocol=request.scheme, remote_ip=request.remote, body=body,
                             query=query, form=form, cookie_secret=self.cookie_secret,
                             base_url=self.settings.base_url, hub_prefix=hub_prefix, authenticator=self.plugin,
                             log=plugin_log)

    # ---- login

    def _throttle_key(self, username: str) -> str:
        return username[:MAX_LOGIN_NAME].strip().lower()

    def check_throttle(self, username: str, address: str | None) -> None:
        wait = self.throttle.retry_after(self._throttle_key(username), address)
        if wait > 0:
            seconds = math.ceil(wait)
            raise ApiError(429, f"Too many failed login attempts. Try again in {seconds} seconds.",
                           headers={"Retry-After": str(seconds)})

    async def login(self, username: str, password: str, address: str | None = None, *,
                    request: web.Request | None = None, form: Mapping[str, list[str]] | None = None,
                    body: bytes = b"") -> User | None:
        """Throttled form login through the plugin; the user record, or None.

        Raises ApiError: 429 while throttled, the plugin's own status when it refused with tornado's HTTPError.
        """
        if not isinstance(username, str) or not isinstance(password, str):
            return None
        self.check_throttle(username, address)
        if form is None:
            form = {"username": [username], "password": [password]}
        data = form_data(form)
        handler = self.handler_for(request, form=form, body=body)
        model = None
        if len(data.get("username", "")) <= MAX_LOGIN_NAME:
            try:
                model = await self.authenticated_model(handler, data)
            except ApiError as e:
                if e.status < 500:  # the plugin's own refusal counts as a failed attempt
                    self.throttle.failure(self._throttle_key(username), address)
                raise
        if model is None:
            self.throttle.failure(self._throttle_key(username), address)
            log.warning("Failed login for %s from %s", loggable(username), address)
            return None
        self.throttle.success(self._throttle_key(username))
        return await self.apply_auth_model(model)

    async def authenticated_model(self, handler: PluginHandler, data: Any) -> dict[str, Any] | None:
        """The plugin's ``get_authenticated_user``; its HTTPError becomes ApiError, anything else a 503."""
        from tornado.web import HTTPError

        try:
            model = await self.plugin.get_authenticated_user(handler, data)
        except HTTPError as e:
            if e.status_code >= 500:
                log.error("%s refused a login with %d: %s", type(self.plugin).__name__, e.status_code,
                          e.log_message)
                raise ApiError(e.status_code, "Login failed") from None
            raise ApiError(e.status_code, http_error_message(e)) from None
        except Exception as e:
            log.error("%s failed while authenticating: %s: %s", type(self.plugin).__name__, type(e).__name__, e)
            raise ApiError(503, "The login service is not available; try again later") from None
        if model is None:
            return None
        if not isinstance(model, dict) or not isinstance(model.get("name"), str):
            log.error("%s returned an auth model without a name", type(self.plugin).__name__)
            return None
        return model

    async def apply_auth_model(self, model: Mapping[str, Any], user: User | None = None) -> User | None:
        """Persist a model from authenticate / refresh_user (JupyterHub's ``auth_to_user``); the user record."""
        name = model["name"]
        if not validate_username(name, self.settings):
            log.warning("Refusing user name %s from %s: not a valid gateway user name", loggable(name),
                        type(self.plugin).__name__)
            return None
        if self.manage_groups and "groups" not in model:
            log.error("Authenticator.manage_groups is True but %s gave no groups for %s",
                      type(self.plugin).__name__, name)
            return None
        admin = model.get("admin")
        if user is None:
            user = await self.store.get_user(name)
            if user is None:
                try:
                    user = await self.store.create_user(name, admin=bool(admin),
                                                        roles=("user", "admin") if admin else ("user",))
                    log.info("Created user %s at first login", name)
                except Conflict:
                    user = await self.store.get_user(name)
                assert user is not None
                await _maybe_await(self.plugin.add_user(self.user_object(user)))
        changes: dict[str, Any] = {}
        if admin is not None and bool(admin) != user.admin:
            changes["admin"] = bool(admin)
        if model.get("user_info") is not None:
            changes["user_info"] = model["user_info"]
        if changes:
            user = await self.store.update_user(user.id, **changes) or user
        if self.manage_groups and model.get("groups") is not None:
            await self.sync_groups(user, model["groups"])
        await self.store_auth_state(user, model)
        self._refreshed[user.name] = time.monotonic()
        return user

    async def store_auth_state(self, user: User, model: Mapping[str, Any]) -> None:
        if not getattr(self.plugin, "enable_auth_state", False):
            await save_auth_state(self.store, None, user.id, None)  # disabled: nothing kept
            return
        auth_state = model.get("auth_state")
        hook = getattr(self.plugin, "reconcile_auth_state_hook", None)
        if hook:
            existing = await load_auth_state(self.store, self.crypt, user.name)
            auth_state = await _maybe_await(hook(self.plugin, model, existing))
        await save_auth_state(self.store, self.crypt, user.id, auth_state)

    async def sync_groups(self, user: User, names: Any) -> None:
        """Membership becomes exactly ``names`` (groups created as needed), as JupyterHub's sync_groups."""
        wanted = [n for n in dict.fromkeys(names) if isinstance(n, str)]
        bad = [n for n in wanted if not valid_group_name(n)]
        if bad:
            log.warning("Ignoring group names from %s that gateway cannot use: %s", type(self.plugin).__name__,
                        ", ".join(loggable(n) for n in bad[:5]))
            wanted = [n for n in wanted if n not in bad]
        ids = await self.store.group_ids(wanted)
        for name in wanted:
            if name not in ids:
                try:
                    (group,) = await self.store.create_groups([name])
                    ids[name] = group.id
                except Conflict:
                    ids.update(await self.store.group_ids([name]))
        current = set((await self.store.groups_of_users([user.id]))[user.id])
        for name in wanted:
            if name not in current:
                await self.store.change_group_members(ids[name], add=[user.id])
        stale = await self.store.group_ids(sorted(current - set(wanted)))
        for group_id in stale.values():
            await self.store.change_group_members(group_id, remove=[user.id])

    # ---- refresh

    def refresh_due(self, user_name: str) -> bool:
        age = getattr(self.plugin, "auth_refresh_age", 0)
        if not age or not _overrides(self.plugin, "refresh_user"):
            return False
        last = self._refreshed.get(user_name)
        return last is None or time.monotonic() - last >= age

    async def refresh(self, user: User, handler: PluginHandler | None, *, force: bool = False) -> User | None:
        """The user, refreshed if due (or forced); None when the plugin says the login must be renewed."""
        if not force and not self.refresh_due(user.name):
            return user
        try:
            result = await _maybe_await(self.plugin.refresh_user(await self.plugin_user(user), handler))
        except Exception as e:
            log.error("%s.refresh_user failed for %s: %s: %s", type(self.plugin).__name__, user.name,
                      type(e).__name__, e)
            return None
        if not result:
            log.warning("User %s has stale auth info: a new login is required", user.name)
            self._refreshed.pop(user.name, None)
            return None
        if isinstance(result, dict):
            model = {"name": user.name, **result}
            if model["name"] != user.name:
                log.error("%s.refresh_user renamed %s: refused", type(self.plugin).__name__, user.name)
                return None
            return await self.apply_auth_model(model, user)
        self._refreshed[user.name] = time.monotonic()
        return user

    async def user_added(self, user: User) -> None:
        """The plugin's ``add_user`` for a user an admin created (the REST API, the admin page), as
        JupyterHub calls it; its refusal is a 400 that names its reason."""
        try:
            await _maybe_await(self.plugin.add_user(await self.plugin_user(user)))
        except Exception as exc:
            log.warning("%s.add_user(%s) failed: %s: %s", type(self.plugin).__name__, user.name,
                        type(exc).__name__, exc)
            raise ApiError(400, f"Failed to create user {user.name}: {exc}") from None

    async def user_deleted(self, user: User) -> None:
        """The plugin's ``delete_user`` (JupyterHub's base drops the name from ``allowed_users``, so a user
        let in by ``allow_existing_users`` cannot log in again once deleted). Its failure is a 503."""
        self._refreshed.pop(user.name, None)
        try:
            await _maybe_await(self.plugin.delete_user(await self.plugin_user(user)))
        except Exception as exc:
            log.warning("%s.delete_user(%s) failed: %s: %s", type(self.plugin).__name__, user.name,
                        type(exc).__name__, exc)
            raise ApiError(503, f"The authenticator could not delete {user.name}: {exc}") from None

    async def refresh_page_user(self, request: web.Request, user: User) -> User | None:
        """A cookie-authenticated page request: the user, refreshed when due; None means log in again."""
        return await self.refresh(user, self.handler_for(request))

    async def refresh_before_spawn(self, request: web.Request, identity: Identity, user: User) -> bool:
        """``refresh_pre_spawn``: False when the spawn must wait for a new login (the user's own browser
        session and a failed refresh). Token requests and admins spawning for others go ahead on the stale
        auth, as JupyterHub 6.1 does without ``auth_refresh_strict``."""
        if not self.refresh_pre_spawn:
            return True
        return await self._refreshed_first(request, identity, user, doing="starting")

    async def refresh_before_stop(self, request: web.Request, identity: Identity, user: User) -> bool:
        """``refresh_pre_stop`` (the spawner's stop may use a fresh auth_state): False when the user's own
        browser session asked for the stop and the refresh failed, so the stop must wait for a new login.
        Token requests and anyone else's stop go ahead on the stale auth, as in JupyterHub (its
        ``refresh_auth`` fails only cookie requests without ``auth_refresh_strict``)."""
        if not self.refresh_pre_stop:
            return True
        return await self._refreshed_first(request, identity, user, doing="stopping")

    async def refresh_for_stop(self, user: User) -> None:
        """``refresh_pre_stop`` for stops no request asked for (logout, deletion, the idle culler): a forced
        refresh, bounded so a slow provider holds up no stop for long; when it fails or times out the stop
        goes ahead on the stored auth_state, with a warning."""
        if not self.refresh_pre_stop:
            return
        try:
            refreshed = await asyncio.wait_for(self.refresh(user, None, force=True), REFRESH_BEFORE_STOP_TIMEOUT)
        except asyncio.TimeoutError:
            refreshed = None
        if refreshed is None:
            log.warning("User %s has stale auth info; stopping the server anyway", user.name)

    async def _refreshed_first(self, request: web.Request, identity: Identity, user: User, *, doing: str) -> bool:
        """A forced refresh; on failure False for the user's own browser session, else a warning and True."""
        if await self.refresh(user, self.handler_for(request), force=True) is not None:
            return True
        if identity.via == "cookie" and identity.user is not None and identity.user.id == user.id:
            return False
        log.warning("User %s has stale auth info; %s the server anyway (asked by %s)", user.name, doing, identity.name)
        return True


# ---------------------------------------------------------------- start


async def start_plugin(settings: Settings, store: Store, cookie_secret: bytes,
                       remove_user: Callable[[User], Awaitable[None]]) -> PluginAuthenticator:
    """Build the plugin and the auth_state crypt, then bring the store's users in line (JupyterHub's init_users).
    ``remove_user`` deletes a user the plugin finds invalid, servers first (``delete_invalid_users``)."""
    plugin = build_plugin(settings)
    crypt = AuthStateCrypt.from_environment() if plugin.enable_auth_state else None
    if crypt is not None:
        stored = await store.any_encrypted_auth_state()
        if stored is not None and not crypt.can_decrypt(bytes(stored)):
            raise ConfigError(["JUPYTERHUB_CRYPT_KEY does not decrypt the stored auth_state: was the key changed? "
                               "To rotate keys, put the new key first and keep the old one after it ('new;old')"])
    adapter = PluginAuthenticator(settings, store, plugin, crypt, cookie_secret)
    normalize = plugin.normalize_username
    for raw, admin in [(n, True) for n in sorted(plugin.admin_users)] + \
                      [(n, False) for n in sorted(plugin.allowed_users)]:
        name = normalize(raw)
        if not validate_username(name, settings):
            raise ConfigError([f"{type(plugin).__name__}: invalid user name {name!r} in "
                               f"{'admin_users' if admin else 'allowed_users'}"])
        user = await store.get_user(name)
        if user is None:
            await store.create_user(name, admin=admin, roles=("user", "admin") if admin else ("user",))
            log.info("Created user %s from %s", name, "admin_users" if admin else "allowed_users")
        elif admin and not user.admin:
            await store.update_user(user.id, admin=True)
    invalid = await _notify_stored_users(plugin, adapter, store)
    for user, why in invalid:
        if plugin.delete_invalid_users:
            log.warning("Deleting user %s, whom %s no longer accepts (%s)", user.name, type(plugin).__name__, why)
            await remove_user(user)
        else:
            log.warning("User %s is kept although %s no longer accepts them (%s); set "
                        "c.Authenticator.delete_invalid_users = True to delete such users at start",
                        user.name, type(plugin).__name__, why)
    if crypt is not None:
        log.info("auth_state is enabled: stored encrypted with the keys in JUPYTERHUB_CRYPT_KEY")
    return adapter


async def _notify_stored_users(plugin: Any, adapter: PluginAuthenticator, store: Store) -> list[tuple[User, str]]:
    """``add_user`` for every stored user, a page at a time; the users it refused, each with the reason."""
    invalid: list[tuple[User, str]] = []
    offset = 0
    while True:
        users, _ = await store.list_users(offset=offset, limit=500)
        for user in users:
            if user.name in plugin.blocked_users:  # as JupyterHub's init_users: never added, never deleted here
                continue
            try:
                await _maybe_await(plugin.add_user(adapter.user_object(user)))
            except Exception as exc:  # the plugin's verdict, in whatever form it raises it
                invalid.append((user, f"{type(exc).__name__}: {exc}"))
        if len(users) < 500:
            return invalid
        offset += 500
