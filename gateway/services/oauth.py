"""The hub's OAuth2 provider: the authorization-code grant (with PKCE) that ``jupyterhub.services.auth.HubOAuth``
and ``jupyterhub-singleuser`` use to log a browser in with the hub.

Vocabulary:
- client: who asks to know the browser's user. Two kinds, none stored apart from what they belong to:
  a *service* (client id its ``oauth_client_id``, default ``service-<name>``; redirect URI its
  ``oauth_redirect_uri``; secret any of the service's API tokens), or a *running user server*
  (client id ``jupyterhub-user-<name>[-<server>]``; redirect ``<server prefix>oauth_callback``; secret
  the server's own hub token). A stopped server is no client.
- access scope: what opens the client's resource (``access:services!service=x``,
  ``access:servers!server=alice/nb``). A user without it is refused at the authorize step, and
  every issued token carries it.
- code: the one-time value the browser carries back to the client: random, stored only as its
  sha256, valid CODE_LIFETIME seconds, bound to client, redirect URI, user, login session and
  the PKCE challenge; consumed by the first exchange attempt, right or wrong.
- issued token: a hub API token owned by the user, with ``client_id`` and ``session_id`` set (logging
  out deletes it), expiring after ``oauth_token_expires_in``; raw scopes = the client's access scope
  plus those of the client's allowed scopes the user holds (the identify scopes always come along).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

from gateway.config import Settings
from gateway.store import Store
from gateway.vocab import scopes, security
from gateway.vocab.models import Identity, Token, User
from gateway.wire.routing import RouteTable

CODE_LIFETIME = 300.0
CODE_BYTES = 32
PKCE_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


@dataclass(frozen=True)
class OAuthClient:
    client_id: str
    kind: str  # 'service' | 'server'
    description: str  # 'JupyterHub service x', 'Server at /user/alice/'
    redirect_uri: str
    access_scope: str
    allowed_scopes: tuple[str, ...] = ()
    no_confirm: bool = False
    service_id: int | None = None
    service: str | None = None
    user: str | None = None  # the server's owner
    server_name: str = ""


@dataclass(frozen=True)
class Grant:
    """A consumed code: what the token endpoint issues a token for."""

    client_id: str
    user_id: int
    session_id: str | None
    redirect_uri: str
    scopes: tuple[str, ...]
    code_challenge: str


class OAuthError(Exception):
    """An answer of the token endpoint: ``{"error", "error_description"}`` with ``status``."""

    def __init__(self, error: str, description: str, status: int = 400):
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


def server_client_id(user: str, server_name: str) -> str:
    """``jupyterhub-user-<name>[-<server>]``, names escaped as in URLs (what the spawner tells the server)."""
    named = f"-{quote(server_name, safe='@~')}" if server_name else ""
    return f"jupyterhub-user-{quote(user, safe='@~')}{named}"


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


class OAuthProvider:
    """Clients, consent decisions, codes and token issue. One per app (``app[OAUTH]``)."""

    def __init__(self, store: Store, settings: Settings, routes: RouteTable | None):
        self.store = store
        self.settings = settings
        self.routes = routes

    # ------------------------------------------------------------ clients

    async def client(self, client_id: str) -> OAuthClient | None:
        if not client_id or len(client_id) > 1024:
            return None
        if client_id.startswith("jupyterhub-user-") and self.routes is not None:
            for route in self.routes.all():
                if route.kind == "user" and route.user is not None and \
                        server_client_id(route.user, route.server_name) == client_id:
                    return OAuthClient(
                        client_id=client_id, kind="server", description=f"Server at {route.prefix}",
                        redirect_uri=route.prefix + "oauth_callback",
                        access_scope=scopes.access_scope(route.user, route.server_name),
                        user=route.user, server_name=route.server_name)
            return None
        for service in await self.store.list_services():
            if service.oauth_client_id == client_id and service.oauth_redirect_uri:
                return OAuthClient(
                    client_id=client_id, kind="service", description=f"JupyterHub service {service.name}",
                    redirect_uri=service.oauth_redirect_uri, access_scope=scopes.access_scope("", service=service.name),
                    allowed_scopes=service.oauth_client_allowed_scopes, no_confirm=service.oauth_no_confirm,
                    service_id=service.id, service=service.name)
        return None

    async def authenticate_client(self, client_id: str, secret: str) -> OAuthClient | None:
        """The client, if ``secret`` is one of its credentials (a service token, or the server's own token)."""
        client = await self.client(client_id)
        token = await self.store.find_token(secret) if client is not None and secret else None
        if token is None or token.expired(time.time()):
            return None
        if client.kind == "service":
            return client if token.owner_kind == "service" and token.owner_id == client.service_id else None
        user = await self.store.get_user(client.user or "")
        server = await self.store.get_server(user.id, client.server_name) if user else None
        return client if server is not None and token.server_id == server.id else None

    # ------------------------------------------------------------ consent

    def may_access(self, client: OAuthClient, identity: Identity, user_groups: frozenset[str]) -> bool:
        if client.kind == "service":
            return identity.scopes.has("access:services", service=client.service)
        return identity.scopes.has("access:servers", server=f"{client.user}/{client.server_name}",
                                   user_groups=user_groups)

    def grantable_scopes(self, client: OAuthClient, identity: Identity, requested: Iterable[str] | None,
                         groups_of) -> tuple[str, ...]:
        """Raw scopes for the token: the access scope plus the requested ones (default: the client's
        allowed scopes) that are within the client's allowed scopes and held by the user."""
        wanted = list(client.allowed_scopes) if requested is None else [s for s in requested if s]
        user = identity.name
        allowed = scopes.expand_scopes([s for s in client.allowed_scopes if _known(s)], owner_kind="user",
                                       owner_name=user)
        granted = {client.access_scope}
        for scope in wanted:
            if scope == client.access_scope or not _known(scope):
                continue
            expanded = scopes.expand_scopes([scope], owner_kind="user", owner_name=user)
            if not scopes.excess_scopes(expanded, allowed, groups_of=groups_of) and \
                    not scopes.excess_scopes(expanded, identity.scopes.expanded, groups_of=groups_of):
                granted.add(scope)
        return tuple(sorted(granted))

    async def needs_confirmation(self, client: OAuthClient, user: User, granted: Iterable[str]) -> bool:
        """No page for the user's own servers, ``oauth_no_confirm`` services, or scopes already authorized."""
        if client.no_confirm or (client.kind == "server" and client.user == user.name):
            return False
        tokens: list[Token] = [t for t in await self.store.list_tokens("user", user.id)
                               if t.client_id == client.client_id and not t.expired(time.time())]
        held = {s for t in tokens for s in t.scopes}
        return not tokens or not set(granted) <= held

    # ------------------------------------------------------------ codes and tokens

    async def issue_code(self, client: OAuthClient, user: User, session_id: str | None, redirect_uri: str,
                         granted: Iterable[str], code_challenge: str) -> str:
        code = secrets.token_urlsafe(CODE_BYTES)
        now = time.time()
        async with self.store.transaction() as db:
            await db.execute("DELETE FROM oauth_codes WHERE expires_at <= ?", (now,))
            await db.execute(
                "INSERT INTO oauth_codes (hash, client_id, user_id, session_id, redirect_uri, scopes, code_challenge,"
                " created, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (code_hash(code), client.client_id, user.id, session_id, redirect_uri, json.dumps(sorted(granted)),
                 code_challenge, now, now + CODE_LIFETIME))
        return code

    async def consume_code(self, code: str) -> Grant | None:
        """Take the code out of the store (single use) and return what it grants, if it has not expired."""
        if not code or len(code) > 256:
            return None
        async with self.store.transaction() as db:
            rows = await db.execute_fetchall("SELECT * FROM oauth_codes WHERE hash = ?", (code_hash(code),))
            if not rows:
                return None
            row = rows[0]
            await db.execute("DELETE FROM oauth_codes WHERE id = ?", (row["id"],))
        if row["expires_at"] <= time.time():
            return None
        return Grant(client_id=row["client_id"], user_id=row["user_id"], session_id=row["session_id"],
                     redirect_uri=row["redirect_uri"], scopes=tuple(json.loads(row["scopes"])),
                     code_challenge=row["code_challenge"])

    async def exchange(self, client: OAuthClient, code: str, redirect_uri: str | None,
                       verifier: str | None) -> tuple[Token, str]:
        """The token endpoint's work after the client authenticated. Raises OAuthError."""
        grant = await self.consume_code(code)
        if grant is None or grant.client_id != client.client_id:
            raise OAuthError("invalid_grant", "Invalid or expired authorization code")
        if redirect_uri is not None and redirect_uri != grant.redirect_uri:
            raise OAuthError("invalid_grant", "Mismatching redirect URI")
        if grant.code_challenge:
            if not verifier or not PKCE_VERIFIER.fullmatch(verifier) or \
                    not security.constant_time_equals(s256(verifier), grant.code_challenge):
                raise OAuthError("invalid_grant", "Code verifier is missing or does not match the code challenge")
        if grant.session_id is not None and await self.store.get_session(grant.session_id) is None:
            raise OAuthError("invalid_grant", "The login session of this code has ended")
        expires_in = self.token_lifetime()
        return await self.store.create_token(
            "user", grant.user_id, note=f"OAuth token for {client.description}", scopes=grant.scopes,
            expires_at=time.time() + expires_in, session_id=grant.session_id, client_id=client.client_id)

    def token_lifetime(self) -> int:
        settings = self.settings
        return int(settings.oauth_token_expires_in or settings.cookie_max_age_days * 86400 or 86400)


def _known(scope: str) -> bool:
    try:
        scopes.validate_scopes([scope])
    except scopes.ScopeNotFound:
        return False
    return True
