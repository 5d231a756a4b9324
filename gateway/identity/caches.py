"""The token, session and scope caches: ``Authorizer`` turns a token or a login session into an ``Identity``.

It caches what it verified (owners' expanded scopes and groups, tokens, sessions) so the hot paths
(REST calls, proxied requests) cost no database round trip. Revocation, deletion and role changes
bump the store's counters, which invalidate cached entries at once; expiry is checked on every hit.
It knows no HTTP request: the middleware in ``gateway.auth`` asks it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.identity.shares import Shares
from gateway.store import Store
from gateway.vocab import scopes, security
from gateway.vocab.models import Identity, Service, Token, User

SESSION_COOKIE = "gateway-login"
XSRF_COOKIE = "_xsrf"
GATEWAY_COOKIES = frozenset({SESSION_COOKIE})
CACHE_LIMIT = 20_000


@dataclass(frozen=True)
class _Owner:
    """An owner's expanded scopes and groups, valid for one authz_version."""

    expanded: frozenset[str]
    groups: frozenset[str]
    version: int


@dataclass
class _CachedSession:
    identity: Identity
    authz_version: int
    revocation_version: int
    expires_at: float


@dataclass
class _CachedToken:
    identity: Identity
    authz_version: int
    revocation_version: int


class Authorizer:
    """Resolves tokens and sessions to identities; caches owners' scopes and verified tokens."""

    def __init__(self, store: Store, *, cipher: security.CookieCipher, cookie_secret: bytes,
                 session_max_age: float, activity=None):
        self.store = store
        self.cipher = cipher
        self.cookie_secret = cookie_secret
        self.session_max_age = session_max_age
        self.activity = activity  # ActivityRecorder or None
        self._tokens: dict[bytes, _CachedToken] = {}
        self._sessions: dict[str, _CachedSession] = {}
        self._owners: dict[tuple[str, int], _Owner] = {}
        self._user_groups: dict[str, tuple[int, frozenset[str]]] = {}

    # ---------------------------------------------------------- owners

    async def owner_scopes(self, kind: str, owner_id: int, name: str) -> _Owner:
        version = self.store.authz_version
        cached = self._owners.get((kind, owner_id))
        if cached and cached.version == version:
            return cached
        shared: frozenset[str] = frozenset()
        if kind == "user":
            roles = await self.store.roles_for_user(owner_id)
            groups = frozenset((await self.store.groups_of_users([owner_id]))[owner_id])
            shared = await Shares(self.store).scopes_shared_with(owner_id)  # servers others shared with them
        else:
            roles = await self.store.roles_for_service(owner_id)
            groups = frozenset()
        raw = [s for role in roles for s in role.scopes]
        expanded = scopes.reduce_scopes(scopes.expand_scopes(raw, owner_kind=kind, owner_name=name) | shared)
        owner = _Owner(expanded=expanded, groups=groups, version=version)
        if len(self._owners) > CACHE_LIMIT:
            self._owners.clear()
        self._owners[(kind, owner_id)] = owner
        return owner

    async def groups_of(self, user_name: str) -> frozenset[str]:
        """A user's group names (for !group= filters), cached per authz_version."""
        version = self.store.authz_version
        cached = self._user_groups.get(user_name)
        if cached and cached[0] == version:
            return cached[1]
        user = await self.store.get_user(user_name)
        groups = frozenset((await self.store.groups_of_users([user.id]))[user.id]) if user else frozenset()
        if len(self._user_groups) > CACHE_LIMIT:
            self._user_groups.clear()
        self._user_groups[user_name] = (version, groups)
        return groups

    async def identity_for(self, kind: str, *, user: User | None = None, service: Service | None = None,
                           token: Token | None = None, session_id: str | None = None, via: str = "token") -> Identity:
        owner_id = user.id if user else service.id  # type: ignore[union-attr]
        name = user.name if user else service.name  # type: ignore[union-attr]
        owner = await self.owner_scopes(kind, owner_id, name)
        # As JupyterHub: the identify scopes count only where the owner holds them (whoami adds them
        # for itself); a service without roles holds nothing.
        if token is None or "inherit" in token.scopes:
            effective = owner.expanded
        else:
            known = {name: owner.groups} if kind == "user" else {}
            for other in _users_named_in(token.scopes):  # filters may need other users' groups
                known.setdefault(other, await self.groups_of(other))
            effective = scopes.resolve_token_scopes(
                token.scopes, owner_scopes=owner.expanded, owner_kind=kind, owner_name=name,
                groups_of=lambda n: known.get(n, frozenset()))
        return Identity(kind=kind, name=name, user=user, service=service, token=token, session_id=session_id,
                        via=via, scopes=scopes.Scopes.from_expanded(effective), groups=owner.groups)

    # ---------------------------------------------------------- tokens

    async def identify_token(self, plaintext: str) -> Identity | None:
        if not plaintext or len(plaintext) > security.TOKEN_MAX_LENGTH or not plaintext.isascii():
            return None  # tokens are ASCII: anything else (undecodable bytes included) is no token
        key = security.cache_key(plaintext)
        now = time.time()
        cached = self._tokens.get(key)
        if cached is not None:
            token = cached.identity.token
            if token is None or token.expired(now):
                self._tokens.pop(key, None)
                return None
            # Snapshot the counters before any await: a change that lands meanwhile is rechecked next time.
            revocation_version, authz_version = self.store.revocation_version, self.store.authz_version
            if cached.revocation_version != revocation_version:
                # Same row, not merely the same id: sqlite reuses the highest deleted id, so a revoked
                # token's id (and a deleted user's) can belong to a new token (or user) a moment later.
                if not same_token(token, await self.store.get_token(token.id)):
                    self._tokens.pop(key, None)
                    return None
                cached.revocation_version = revocation_version
            if cached.authz_version != authz_version:
                identity = await self._token_identity(token)
                if identity is None:
                    self._tokens.pop(key, None)
                    return None
                cached.identity, cached.authz_version = identity, authz_version
            self._note(cached.identity)
            return cached.identity
        revocation_version, authz_version = self.store.revocation_version, self.store.authz_version
        token = await self.store.find_token(plaintext)
        if token is None or token.expired(now):
            return None
        identity = await self._token_identity(token)
        if identity is None:
            return None
        if len(self._tokens) > CACHE_LIMIT:
            self._tokens.clear()
        self._tokens[key] = _CachedToken(identity, authz_version, revocation_version)
        self._note(identity)
        return identity

    async def _token_identity(self, token: Token) -> Identity | None:
        if token.owner_kind == "user":
            user = await self.store.get_user_by_id(token.owner_id)
            if user is None or user.name != token.owner_name:  # an id reused by a newer user is not the owner
                return None
            return await self.identity_for("user", user=user, token=token, session_id=token.session_id)
        service = await self.store.get_service_by_id(token.owner_id)
        return await self.identity_for("service", service=service, token=token) if service else None

    def _note(self, identity: Identity) -> None:
        if self.activity is not None and identity.token is not None:
            self.activity.note_token(identity.token, identity.user)

    # ---------------------------------------------------------- sessions

    def session_cookie_value(self, session_id: str) -> str:
        return self.cipher.encrypt(session_id)

    def session_id_from_cookie(self, value: str) -> str | None:
        return self.cipher.decrypt(value, max_age=self.session_max_age)

    async def identify_session(self, session_id: str) -> Identity | None:
        """The session's user, cached like tokens: browsers send the cookie on every proxied request."""
        now = time.time()
        cached = self._sessions.get(session_id)
        if cached is not None:
            identity, expires_at = cached.identity, cached.expires_at
            if expires_at <= now:
                self._sessions.pop(session_id, None)
                return None
            if cached.revocation_version == self.store.revocation_version and \
                    cached.authz_version == self.store.authz_version:
                return identity
        revocation_version, authz_version = self.store.revocation_version, self.store.authz_version
        session = await self.store.get_session(session_id)
        if session is None or session.expires_at <= now:
            self._sessions.pop(session_id, None)
            return None
        user = await self.store.get_user_by_id(session.user_id)
        if user is None:
            return None
        identity = await self.identity_for("user", user=user, session_id=session_id, via="cookie")
        if len(self._sessions) > CACHE_LIMIT:
            self._sessions.clear()
        self._sessions[session_id] = _CachedSession(identity, authz_version, revocation_version, session.expires_at)
        return identity

    # ---------------------------------------------------------- XSRF

    def xsrf_token(self, session_id: str, path: str = "/") -> str:
        """A token bound to one login session and one path prefix (the hub, or one server)."""
        return security.sign(self.cookie_secret, f"{session_id}|{path}")

    def check_xsrf(self, identity: Identity, presented: str | None, path: str = "/") -> bool:
        if identity.session_id is None or not presented:
            return False
        return security.constant_time_equals(presented, self.xsrf_token(identity.session_id, path))


def same_token(cached: Token, fresh: Token | None) -> bool:
    """Whether ``fresh`` (looked up by id) is still the row ``cached`` was made from."""
    return (fresh is not None and fresh.prefix == cached.prefix and fresh.created == cached.created
            and fresh.owner_kind == cached.owner_kind and fresh.owner_id == cached.owner_id
            and fresh.owner_name == cached.owner_name)


def _users_named_in(raw_scopes: Iterable[str]) -> set[str]:
    names = set()
    for scope in raw_scopes:
        _, _, filt = scope.partition("!")
        kind, _, value = filt.partition("=")
        if kind == "user" and value:
            names.add(value)
        elif kind == "server" and "/" in value:
            names.add(value.split("/", 1)[0])
    return names
