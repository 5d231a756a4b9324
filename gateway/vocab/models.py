"""Frozen records the store returns and everything else passes around. No I/O here.

Times are UNIX seconds (float) or None; ``serialize`` turns them into JupyterHub's
ISO-8601 ``...Z`` strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

OwnerKind = Literal["user", "service"]


@dataclass(frozen=True)
class User:
    id: int
    name: str
    admin: bool
    created: float
    last_activity: float | None = None
    user_info: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Group:
    id: int
    name: str
    properties: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Service:
    id: int
    name: str
    admin: bool = False
    url: str = ""
    info: Mapping[str, Any] = field(default_factory=dict)
    display: bool = True
    from_config: bool = False
    oauth_client_id: str = ""
    oauth_redirect_uri: str = ""
    oauth_no_confirm: bool = False
    oauth_client_allowed_scopes: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    pid: int = 0


@dataclass(frozen=True)
class Role:
    id: int
    name: str
    description: str
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class Server:
    """One (user, server name) record; the default server has name ''."""

    id: int
    user_id: int
    user_name: str
    name: str
    display_name: str = ""
    url: str = ""  # backend URL while running, else ''
    state: Mapping[str, Any] = field(default_factory=dict)  # spawner state JSON
    started: float | None = None
    last_activity: float | None = None
    user_options: Mapping[str, Any] | None = None
    created: float | None = None

    @property
    def full_name(self) -> str:
        return f"{self.user_name}/{self.name}"

    @property
    def running(self) -> bool:
        return bool(self.url)


@dataclass(frozen=True)
class Token:
    """An API token's metadata. The plaintext is never kept; ``hash`` is a salted digest."""

    id: int
    prefix: str
    owner_kind: OwnerKind
    owner_id: int
    owner_name: str
    note: str
    scopes: tuple[str, ...]  # as requested, unexpanded ("inherit", "read:users!user=x", ...)
    created: float
    last_activity: float | None = None
    expires_at: float | None = None
    session_id: str | None = None
    client_id: str = "jupyterhub"
    server_id: int | None = None  # set for a server's own token (its per-server secret)

    @property
    def api_id(self) -> str:
        return f"a{self.id}"

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now


@dataclass(frozen=True)
class LoginSession:
    id: str
    user_id: int
    created: float
    expires_at: float


@dataclass(frozen=True)
class Identity:
    """Who is calling, resolved once per request by the identity middleware.

    ``scopes`` is the caller's effective, expanded scope set (a ``gateway.vocab.scopes.Scopes``).
    """

    kind: OwnerKind | None  # None: anonymous
    name: str = ""
    user: User | None = None
    service: Service | None = None
    token: Token | None = None
    session_id: str | None = None
    via: Literal["token", "cookie", "none"] = "none"
    scopes: Any = None
    groups: frozenset[str] = frozenset()

    @property
    def anonymous(self) -> bool:
        return self.kind is None


ANONYMOUS = Identity(kind=None)
