"""Authenticators: who may log in, behind one interface, with JupyterHub 6's allow semantics.

Vocabulary:
- *login name*: what the person typed; *user name*: the login name normalised (lower case,
  ``username_map``) and validated once (``gateway.vocab.names``). Only user names reach the store.
- *allowed*: not in ``blocked_users``, and ``allow_all``, or in ``allowed_users`` (plus
  ``admin_users`` when ``allowed_users`` is set), or ``allow_existing_users`` and already in the store.

Defaults, as JupyterHub 5+/6: ``allow_all`` is False except for ``dummy`` without ``allowed_users``;
``allow_existing_users`` is True when ``allowed_users`` is set. The built-in ``password``
authenticator keeps its users in the store, so for it ``allow_existing_users`` defaults to True
(a user an admin created, and gave a password, may log in).

Implementations (``Settings.authenticator_class``): ``password`` (scrypt hashes in the store),
``pam`` (system accounts through pamela), ``dummy`` (any password, or ``DummyAuthenticator.password``),
``shared-password`` (``user_password`` for users, ``admin_password`` for ``admin_users``).
The authenticator lives at ``app[keys.AUTHENTICATOR]``; ``login()`` adds throttling and creates
the user record on first login.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import math
import os
import pwd
import secrets

from aiohttp import web

from gateway.authenticators.throttle import LoginThrottle
from gateway.config import ConfigError, Settings
from gateway.errors import ApiError
from gateway.store import Conflict, Store
from gateway.vocab import passwords
from gateway.vocab.models import Identity, User
from gateway.vocab.names import normalize_username, validate_username
from gateway.vocab.security import constant_time_equals

log = logging.getLogger("gateway.auth")

FIRST_ADMIN = "admin"
MAX_LOGIN_NAME = 255


def loggable(name: str) -> str:
    """A login name safe to log: bounded, repr-quoted (CVE-2026-54338: unbounded names in logs)."""
    return repr(name) if len(name) <= 32 else f"{name[:16]!r}...({len(name)} chars)"


class Authenticator:
    """Base: the allow/block rules and the login flow. Subclasses implement ``check_password``."""

    kind = ""
    manages_passwords = False  # True: passwords are set through gateway (admin page, CLI)
    crypt = None  # auth_state encryption: only plugin authenticators keep auth_state (authenticators.plugin)

    def __init__(self, settings: Settings, store: Store):
        self.settings = settings
        self.store = store
        norm = self.normalize
        self.admin_users = frozenset(norm(n) for n in settings.all_admin_users)
        self.allowed_users = frozenset(norm(n) for n in settings.allowed_users)
        self.blocked_users = frozenset(norm(n) for n in settings.blocked_users)
        self.allow_all = settings.allow_all if settings.allow_all is not None else self.default_allow_all()
        self.allow_existing_users = (settings.allow_existing_users if settings.allow_existing_users is not None
                                     else self.default_allow_existing_users())
        self.throttle = LoginThrottle()

    def default_allow_all(self) -> bool:
        return False

    def default_allow_existing_users(self) -> bool:
        return bool(self.allowed_users)

    def normalize(self, name: str) -> str:
        return normalize_username(name, self.settings)

    def warn_about_config(self) -> None:
        if not (self.allow_all or self.allowed_users or self.allow_existing_users):
            log.warning("No allow config found: nobody can log in. Set c.Authenticator.allow_all = True "
                        "or c.Authenticator.allowed_users.")

    # ---------------------------------------------------------- the interface

    async def check_password(self, name: str, login_name: str, password: str) -> bool:
        """True if ``password`` is right for user ``name`` (typed as ``login_name``)."""
        raise NotImplementedError

    async def authenticate(self, username: str, password: str) -> str | None:
        """The normalised user name if the credentials are right and the user is allowed, else None."""
        if not isinstance(username, str) or not isinstance(password, str):
            return None
        if len(username) > MAX_LOGIN_NAME or len(password) > passwords.MAX_LENGTH:
            return None
        name = self.normalize(username)
        if not validate_username(name, self.settings):
            log.warning("Refusing invalid user name %s", loggable(username))
            return None
        if not await self.check_password(name, username, password):
            return None
        if name in self.blocked_users:
            log.warning("User %s is blocked", loggable(name))
            return None
        if not await self.is_allowed(name):
            log.warning("User %s is not allowed", loggable(name))
            return None
        return name

    async def is_allowed(self, name: str) -> bool:
        if name in self.blocked_users:
            return False
        if self.allow_all or name in self.allowed_users:
            return True
        if self.allowed_users and name in self.admin_users:
            return True  # JupyterHub adds admins to a non-empty allowed set
        return self.allow_existing_users and await self.store.get_user(name) is not None

    async def is_admin(self, name: str) -> bool | None:
        """True for configured admins; None leaves the stored flag as it is."""
        return True if name in self.admin_users else None

    # Renewal of a login (JupyterHub's refresh_user): built-in logins never go stale; plugins override.
    def refresh_due(self, user_name: str) -> bool:
        return False

    async def refresh_page_user(self, request: web.Request, user: User) -> User | None:
        return user

    async def refresh_before_spawn(self, request: web.Request, identity: Identity, user: User) -> bool:
        return True

    async def refresh_before_stop(self, request: web.Request, identity: Identity, user: User) -> bool:
        return True

    async def refresh_for_stop(self, user: User) -> None:
        """Before a stop no request asked for; the built-ins keep no login state to refresh."""

    async def user_added(self, user: User) -> None:
        """Called after a user is created by an admin; the built-ins need nothing more."""

    async def user_deleted(self, user: User) -> None:
        """Called before a user is deleted; the built-ins keep nothing of their own (passwords go with the row)."""

    # ---------------------------------------------------------- the login flow

    async def login(self, username: str, password: str, address: str | None = None) -> User | None:
        """Throttled ``authenticate``; the user record (created on first login), or None.

        Raises ApiError(429) with Retry-After while the name or the address is throttled.
        """
        key = self.normalize(username[:MAX_LOGIN_NAME]) if isinstance(username, str) else ""
        wait = self.throttle.retry_after(key, address)
        if wait > 0:
            seconds = math.ceil(wait)
            raise ApiError(429, f"Too many failed login attempts. Try again in {seconds} seconds.",
                           headers={"Retry-After": str(seconds)})
        name = await self.authenticate(username, password)
        if name is None:
            self.throttle.failure(key, address)
            log.warning("Failed login for %s from %s", loggable(username if isinstance(username, str) else ""),
                        address)
            return None
        self.throttle.success(key)
        return await self.user_for_login(name)

    async def user_for_login(self, name: str) -> User:
        admin = await self.is_admin(name)
        user = await self.store.get_user(name)
        if user is None:
            roles = ("user", "admin") if admin else ("user",)
            try:
                user = await self.store.create_user(name, admin=bool(admin), roles=roles)
                log.info("Created user %s at first login", name)
            except Conflict:
                user = await self.store.get_user(name)
        elif admin is not None and admin != user.admin:  # None: the stored flag stays (JupyterHub's auth_to_user)
            user = await self.store.update_user(user.id, admin=admin)
            log.info("User %s is %s an admin", name, "now" if admin else "no longer")
        assert user is not None
        return user


class PasswordAuthenticator(Authenticator):
    """Users and scrypt password hashes kept in the store; admins set passwords."""

    kind = "password"
    manages_passwords = True

    def default_allow_existing_users(self) -> bool:
        return True

    async def check_password(self, name: str, login_name: str, password: str) -> bool:
        return await passwords.verify_password_async(password, await self.store.get_password_hash(name))

    async def set_password(self, user: User, password: str, *, end_sessions: bool = True) -> None:
        await set_user_password(self.store, user, password, end_sessions=end_sessions)


async def set_user_password(store: Store, user: User, password: str, *, end_sessions: bool = True) -> None:
    """Hash and store ``password``; by default also log the user out everywhere (a reset ends old sessions)."""
    problem = passwords.password_problem(password)
    if problem:
        raise ApiError(400, problem)
    await store.set_password_hash(user.id, await passwords.hash_password_async(password))
    if end_sessions:
        await store.delete_user_sessions(user.id)


async def require_fresh_auth(authenticator: "Authenticator", request: web.Request, identity: Identity, user: User,
                             *, before: str) -> None:
    """``refresh_pre_spawn`` (``before="start"``) or ``refresh_pre_stop`` (``"stop"``), as the REST API and
    the admin page apply them: ApiError 403 when the user's own browser session must log in again."""
    refresh = authenticator.refresh_before_spawn if before == "start" else authenticator.refresh_before_stop
    if not await refresh(request, identity, user):
        raise ApiError(403, f"auth has expired for {user.name}, login again")


def in_unix_groups(name: str, groups: frozenset[str]) -> bool:
    """Whether account ``name`` is in one of ``groups`` (primary or supplementary), compared by gid as
    JupyterHub's LocalAuthenticator does; False without such an account. Blocking (NSS: files, sssd,
    LDAP): call it in a thread."""
    wanted = set()
    for group in groups:
        with contextlib.suppress(KeyError):
            wanted.add(grp.getgrnam(group).gr_gid)
    try:
        return bool(wanted.intersection(os.getgrouplist(name, pwd.getpwnam(name).pw_gid)))
    except KeyError:
        return False


class PAMAuthenticator(Authenticator):
    """System accounts through PAM (pamela), JupyterHub's default; PAM runs in a thread."""

    kind = "pam"

    def __init__(self, settings: Settings, store: Store):
        super().__init__(settings, store)
        try:
            import pamela
        except Exception as e:  # ImportError, or OSError when libpam is missing
            raise ConfigError([f"authenticator_class 'pam' needs the pamela package and libpam: {e}"]) from None
        self._pamela = pamela

    def warn_about_config(self) -> None:
        if not self.settings.pam_allowed_groups:
            super().warn_about_config()

    async def is_allowed(self, name: str) -> bool:
        """LocalAuthenticator.allowed_groups: a member of one may log in (blocked users still may not)."""
        groups = self.settings.pam_allowed_groups
        if groups and name not in self.blocked_users and await asyncio.to_thread(in_unix_groups, name, groups):
            return True
        return await super().is_allowed(name)

    async def is_admin(self, name: str) -> bool | None:
        """PAMAuthenticator.admin_groups is authoritative, as in JupyterHub: with it set, a user neither in
        admin_users nor in one of the groups is not an admin (and loses the flag at the next login)."""
        admin = await super().is_admin(name)
        groups = self.settings.pam_admin_groups
        if admin or not groups:
            return admin
        return await asyncio.to_thread(in_unix_groups, name, groups)

    async def check_password(self, name: str, login_name: str, password: str) -> bool:
        return await asyncio.to_thread(self._check, login_name, password)

    def _check(self, login_name: str, password: str) -> bool:
        pamela, service = self._pamela, self.settings.pam_service
        try:
            pamela.authenticate(login_name, password, service=service)
            pamela.check_account(login_name, service=service)
        except pamela.PAMError as e:
            log.warning("PAM refused %s: %s", loggable(login_name), e)
            return False
        return True


class DummyAuthenticator(Authenticator):
    """Testing only: any password, or the one in DummyAuthenticator.password."""

    kind = "dummy"

    def default_allow_all(self) -> bool:
        return not self.allowed_users

    def warn_about_config(self) -> None:
        log.warning("Using testing authenticator dummy! This is not meant for production!")

    async def check_password(self, name: str, login_name: str, password: str) -> bool:
        expected = self.settings.dummy_password
        return constant_time_equals(password, expected) if expected else True


class SharedPasswordAuthenticator(Authenticator):
    """One password for all users, another for admin_users (who must use it)."""

    kind = "shared-password"

    async def check_password(self, name: str, login_name: str, password: str) -> bool:
        expected = self.settings.admin_password if name in self.admin_users else self.settings.shared_password
        return bool(expected) and constant_time_equals(password, expected)


AUTHENTICATORS: dict[str, type[Authenticator]] = {
    cls.kind: cls for cls in (PasswordAuthenticator, PAMAuthenticator, DummyAuthenticator, SharedPasswordAuthenticator)
}


def make_authenticator(settings: Settings, store: Store) -> Authenticator:
    return AUTHENTICATORS[settings.authenticator_class](settings, store)


async def ensure_first_admin(store: Store, settings: Settings) -> str | None:
    """If no user has a password, give one admin (the first admin_users name, else ``admin``) a random one.

    Returns the user name it was set for. The password goes to the log once and is never stored in clear.
    """
    if await store.count_users_with_password():
        return None
    names = sorted(normalize_username(n, settings) for n in settings.all_admin_users)
    name = names[0] if names else FIRST_ADMIN
    user = await store.get_user(name)
    if user is None:
        user = await store.create_user(name, admin=True, roles=("user", "admin"))
    elif not user.admin:
        user = await store.update_user(user.id, admin=True)
    assert user is not None
    password = secrets.token_urlsafe(12)
    await set_user_password(store, user, password)
    log.warning("First start: created admin user %r with password %s (shown once; change it on the admin "
                "page or with `gateway set-password %s`)", name, password, name)
    return name


async def end_blocked_sessions(store: Store, blocked: frozenset[str]) -> None:
    """A user added to blocked_users is logged out at start (JupyterHub 5.2 also revokes their roles)."""
    for user in (await store.get_users(sorted(blocked))).values():
        await store.delete_user_sessions(user.id)
        log.info("Ended the login sessions of blocked user %s", user.name)
