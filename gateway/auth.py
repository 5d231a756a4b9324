"""Who is calling (identity) and may they (authorization).

- ``Authorizer`` turns a token or a login session into an ``Identity`` with its effective
  scopes, and caches what it verified so the hot paths (REST calls, proxied requests) cost
  no database round trip. Revocation, deletion and role changes bump the store's counters,
  which invalidate cached entries at once; expiry is checked on every hit.
- ``identity_middleware`` resolves every request once and never raises.
- ``requires_scope`` declares what an API handler needs; the filter (``!user=``, ``!server=``,
  ``!group=``, ``!service=``) is built from the URL's ``user_name``/``server_name``/... .
- XSRF: cookie-authenticated state changes need a token bound to the login session.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace

from aiohttp import web

from gateway import keys, scopes, security
from gateway.errors import MISSING_CREDENTIALS, ApiError
from gateway.models import ANONYMOUS, Identity, Service, Token, User
from gateway.shares import Shares
from gateway.store import Store

SESSION_COOKIE = "gateway-login"
XSRF_COOKIE = "_xsrf"
GATEWAY_COOKIES = frozenset({SESSION_COOKIE})
AUTH_HEADER = re.compile(r"^(?:token|bearer)\s+([^\s]+)$", re.IGNORECASE)
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
        if token is None or "inherit" in token.scopes:
            effective = owner.expanded | scopes.identify_scopes(kind, name)
        else:
            known = {name: owner.groups} if kind == "user" else {}
            for other in _users_named_in(token.scopes):  # filters may need other users' groups
                known.setdefault(other, await self.groups_of(other))
            effective = scopes.resolve_token_scopes(
                token.scopes, owner_scopes=owner.expanded, owner_kind=kind, owner_name=name,
                groups_of=lambda n: known.get(n, frozenset()))
            effective = effective | scopes.identify_scopes(kind, name)
        return Identity(kind=kind, name=name, user=user, service=service, token=token, session_id=session_id,
                        via=via, scopes=scopes.Scopes.from_expanded(effective), groups=owner.groups)

    # ---------------------------------------------------------- tokens

    async def identify_token(self, plaintext: str) -> Identity | None:
        if not plaintext or len(plaintext) > security.TOKEN_MAX_LENGTH:
            return None
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


# ---------------------------------------------------------------- middleware


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if not header:
        return None
    match = AUTH_HEADER.match(header.strip())
    return match.group(1) if match else None


def is_websocket_upgrade(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


async def resolve_identity(request: web.Request, *, allow_query_token: bool = False,
                           not_a_credential: str | None = None) -> Identity:
    """Token header first, then (websocket upgrades only, when allowed) ?token=, then the login cookie.

    A token equal to ``not_a_credential`` counts as no token (the proxy passes a server's own
    secret: jupyterhub-singleuser hands it to the browser in JupyterLab's page config)."""
    authorizer = request.app[keys.AUTHORIZER]
    token = bearer_token(request)
    if token is None and allow_query_token and is_websocket_upgrade(request):
        token = request.query.get("token")
    if token is not None and not_a_credential and security.constant_time_equals(token, not_a_credential):
        token = None
    if token is not None:
        identity = await authorizer.identify_token(token)
        return identity or ANONYMOUS
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        session_id = authorizer.session_id_from_cookie(cookie)
        if session_id:
            identity = await authorizer.identify_session(session_id)
            if identity is not None:
                return identity
    return ANONYMOUS


def make_identity_middleware(hub_prefix: str):
    """Resolve the identity of hub requests once. Proxied paths resolve their own (they accept ?token= on upgrades)."""

    @web.middleware
    async def identity_middleware(request: web.Request, handler):
        if request.path.startswith(hub_prefix):
            request[keys.IDENTITY] = await resolve_identity(request)
        else:
            request[keys.IDENTITY] = ANONYMOUS
        return await handler(request)

    return identity_middleware


def current_identity(request: web.Request) -> Identity:
    return request.get(keys.IDENTITY, ANONYMOUS)


# JupyterHub exempts HEAD/OPTIONS from XSRF on the API (GET is checked too, except plain navigations).
XSRF_SAFE_METHODS = frozenset({"HEAD", "OPTIONS"})


def presented_xsrf(request: web.Request) -> str | None:
    return (request.headers.get("X-XSRFToken") or request.headers.get("X-CSRFToken")
            or request.query.get("_xsrf"))


def api_cookie_check(request: web.Request, identity: Identity) -> Identity:
    """Cookie-authenticated API calls: XSRF token and JSON content type, else treated as unauthenticated/forbidden."""
    if identity.via != "cookie" or request.method in XSRF_SAFE_METHODS:
        return identity
    fetch_mode = request.headers.get("Sec-Fetch-Mode", "navigate")
    if request.method == "GET" and fetch_mode in ("navigate", "websocket"):
        return identity  # a plain navigation cannot read the answer cross-site
    if request.method in ("POST", "PUT", "PATCH", "DELETE") and request.body_exists \
            and request.content_type != "application/json":
        return ANONYMOUS  # as JupyterHub: a cookie-authenticated form post to the API is not authenticated
    authorizer = request.app[keys.AUTHORIZER]
    if not authorizer.check_xsrf(identity, presented_xsrf(request), request.app[keys.SETTINGS].hub_prefix):
        raise ApiError(403, f"'_xsrf' argument missing from {request.method}" if not presented_xsrf(request)
                       else "'_xsrf' argument invalid")
    return identity


# ---------------------------------------------------------------- requires_scope


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def resource_of(request: web.Request) -> dict[str, object]:
    """The resource a URL names, as keyword arguments for ``Scopes.check``."""
    match = request.match_info
    resource: dict[str, object] = {}
    user = match.get("user_name")
    if user is not None:
        resource["user"] = user
        resource["user_groups"] = await request.app[keys.AUTHORIZER].groups_of(user)
        if "server_name" in match:
            resource["server"] = f"{user}/{match['server_name']}"
    if "group_name" in match:
        resource["group"] = match["group_name"]
    if "service_name" in match:
        resource["service"] = match["service_name"]
    return resource


def authorize(identity: Identity, required: Iterable[str], resource: dict[str, object]) -> None:
    """Raise JupyterHub's 403/404 unless ``identity`` holds one of ``required`` for ``resource``."""
    required = tuple(required)
    if identity.anonymous:
        raise ApiError(403, MISSING_CREDENTIALS)
    decision = identity.scopes.check(required, **resource)
    if decision == "ok":
        return
    if decision == "other" and resource:
        raise ApiError(404, scopes.SCOPE_MESSAGE_NOT_FOUND)
    raise ApiError(403, scopes.missing_scope_message(required))


def requires_scope(*required: str, post_filter: bool = False) -> Callable[[Handler], Handler]:
    """Declare the scopes an API handler needs (any of). Unknown scopes fail at import time.

    With ``post_filter`` (list endpoints) a scope held only with filters passes; the handler
    filters its results with ``identity.scopes.list_filter(...)``.
    """
    for scope in required:
        if scope not in scopes.SCOPE_DEFINITIONS:
            raise ValueError(f"requires_scope: unknown scope {scope!r}")

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(request: web.Request) -> web.StreamResponse:
            identity = api_cookie_check(request, current_identity(request))
            request[keys.IDENTITY] = identity
            if post_filter:
                if identity.anonymous:
                    raise ApiError(403, MISSING_CREDENTIALS)
                if not any(identity.scopes.list_filter(s) is not None for s in required):
                    raise ApiError(403, scopes.missing_scope_message(required))
            else:
                authorize(identity, required, await resource_of(request))
            return await handler(request)

        wrapper.__required_scopes__ = required  # type: ignore[attr-defined]
        return wrapper

    return decorate


def authenticated(handler: Handler) -> Handler:
    """For API handlers that any valid credential may call (GET /user), or that check scopes inside."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        identity = api_cookie_check(request, current_identity(request))
        request[keys.IDENTITY] = identity
        return await handler(request)

    wrapper.__required_scopes__ = ("(authenticated)",)  # type: ignore[attr-defined]
    return wrapper


def public(handler: Handler) -> Handler:
    """Mark an API handler that needs no credentials (version, health); the meta-test checks every route is marked."""
    handler.__required_scopes__ = ()  # type: ignore[attr-defined]
    return handler


def with_identity(identity: Identity, **changes) -> Identity:
    return replace(identity, **changes)
