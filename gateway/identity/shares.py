"""Shares: one user's server opened to another user or a group (JupyterHub 5's sharing), and share codes.

Vocabulary:
- share: a record (server, user or group, scopes). It grants its scopes, always filtered to that one
  server (``access:servers!server=alice/nb``), to the user or to every member of the group. The
  Authorizer adds them to the recipient's own scopes, so the proxy honours a share at once and
  forgets it at once (every write here bumps ``store.authz_version``).
- base scopes: what is stored, the scopes without their filter (``access:servers``). The filter is
  put back from the server's *current* owner and name when read, so a renamed server keeps its shares.
- share code: a secret that whoever holds it exchanges (``/hub/accept-share``) for a share of their
  own. Stored hashed (sha256 of a 256-bit random code); expires; counts its exchanges.

Shares live with the server record: deleting the server (or the recipient) deletes them.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace

from gateway.store import Store
from gateway.vocab import scopes

CODE_BYTES = 32
DEFAULT_CODE_EXPIRES_IN = 86400
CODE_EXPIRES_MIN, CODE_EXPIRES_MAX = 60, 525600 * 60


@dataclass(frozen=True)
class Share:
    id: int
    server_id: int
    owner_name: str
    server_name: str
    user_name: str | None  # exactly one of user_name, group_name
    group_name: str | None
    bases: tuple[str, ...]
    created: float

    @property
    def kind(self) -> str:
        return "group" if self.group_name is not None else "user"

    @property
    def scopes(self) -> list[str]:
        return with_filter(self.bases, self.owner_name, self.server_name)


@dataclass(frozen=True)
class ShareCode:
    id: int
    server_id: int
    owner_name: str
    server_name: str
    bases: tuple[str, ...]
    created: float
    expires_at: float
    exchange_count: int
    last_exchanged_at: float | None

    @property
    def scopes(self) -> list[str]:
        return with_filter(self.bases, self.owner_name, self.server_name)

    @property
    def api_id(self) -> str:
        return f"sc_{self.id}"

    def expired(self, now: float) -> bool:
        return self.expires_at <= now


def server_filter(owner: str, server_name: str) -> str:
    return f"server={owner}/{server_name}"


def with_filter(bases: Iterable[str], owner: str, server_name: str) -> list[str]:
    return sorted(f"{b}!{server_filter(owner, server_name)}" for b in bases)


def bases_for_request(requested: Iterable[str] | None, owner: str, server_name: str) -> tuple[str, ...]:
    """The base scopes a share request asks for (default ``access:servers``).

    Raises ``scopes.ScopeNotFound`` for unknown scopes and ValueError for a filter other than this
    server's (JupyterHub's message).
    """
    requested = list(requested or ()) or ["access:servers"]
    scopes.validate_scopes(requested, who_for="share")
    own = server_filter(owner, server_name)
    bases = set()
    for scope in requested:
        base, _, filt = scope.partition("!")
        if filt and filt != own:
            raise ValueError(f"!{filt} not allowed on sharing {scope}, only !{own}")
        bases.add(base)
    return tuple(sorted(bases))


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


_SHARE_SELECT = """
    SELECT shares.*, servers.name AS server_name, owners.name AS owner_name,
           recipients.name AS user_name, groups.name AS group_name
    FROM shares JOIN servers ON servers.id = shares.server_id
    JOIN users AS owners ON owners.id = servers.user_id
    LEFT JOIN users AS recipients ON recipients.id = shares.user_id
    LEFT JOIN groups ON groups.id = shares.group_id
"""
_CODE_SELECT = """
    SELECT share_codes.*, servers.name AS server_name, owners.name AS owner_name
    FROM share_codes JOIN servers ON servers.id = share_codes.server_id
    JOIN users AS owners ON owners.id = servers.user_id
"""


def _share(row) -> Share:
    return Share(id=row["id"], server_id=row["server_id"], owner_name=row["owner_name"],
                 server_name=row["server_name"], user_name=row["user_name"], group_name=row["group_name"],
                 bases=tuple(json.loads(row["scopes"])), created=row["created"])


def _code(row) -> ShareCode:
    return ShareCode(id=row["id"], server_id=row["server_id"], owner_name=row["owner_name"],
                     server_name=row["server_name"], bases=tuple(json.loads(row["scopes"])), created=row["created"],
                     expires_at=row["expires_at"], exchange_count=row["exchange_count"],
                     last_exchanged_at=row["last_exchanged_at"])


class Shares:
    """Share and share-code records over the store's connections."""

    def __init__(self, store: Store):
        self.store = store

    # ------------------------------------------------------------ reading

    async def shared_with_user(self, user_id: int, offset: int = 0, limit: int = -1) -> tuple[list[Share], int]:
        """Shares granted to the user directly or through one of their groups, oldest first."""
        where = "shares.user_id = ? OR shares.group_id IN (SELECT group_id FROM group_members WHERE user_id = ?)"
        return await self._page(where, (user_id, user_id), offset, limit)

    async def shared_with_group(self, group_id: int, offset: int = 0, limit: int = -1) -> tuple[list[Share], int]:
        return await self._page("shares.group_id = ?", (group_id,), offset, limit)

    async def of_owner(self, owner_id: int, offset: int = 0, limit: int = -1) -> tuple[list[Share], int]:
        return await self._page("servers.user_id = ?", (owner_id,), offset, limit)

    async def of_server(self, server_id: int, offset: int = 0, limit: int = -1) -> tuple[list[Share], int]:
        return await self._page("shares.server_id = ?", (server_id,), offset, limit)

    async def _page(self, where: str, params: tuple, offset: int, limit: int) -> tuple[list[Share], int]:
        rows = await self.store.fetch_all(f"{_SHARE_SELECT} WHERE {where} ORDER BY shares.id LIMIT ? OFFSET ?",
                                          (*params, limit, offset))
        total = await self.store.fetch_one(f"SELECT COUNT(*) AS n FROM shares JOIN servers ON servers.id = "
                                           f"shares.server_id WHERE {where}", params)
        return [_share(r) for r in rows], total["n"] if total else 0

    async def find(self, server_id: int, *, user_id: int | None = None, group_id: int | None = None) -> Share | None:
        column, value = ("user_id", user_id) if user_id is not None else ("group_id", group_id)
        row = await self.store.fetch_one(f"{_SHARE_SELECT} WHERE shares.server_id = ? AND shares.{column} = ?",
                                         (server_id, value))
        return _share(row) if row else None

    async def scopes_shared_with(self, user_id: int) -> frozenset[str]:
        """The expanded scopes a user holds through shares (direct and through groups)."""
        shares, _ = await self.shared_with_user(user_id)
        raw = [s for share in shares for s in share.scopes]
        return scopes.expand_scopes(raw) if raw else frozenset()

    # ------------------------------------------------------------ writing

    async def grant(self, server_id: int, bases: Iterable[str], *, user_id: int | None = None,
                    group_id: int | None = None) -> Share:
        """Add ``bases`` to the share of this server with the user (or group), creating it if needed."""
        column, value = ("user_id", user_id) if user_id is not None else ("group_id", group_id)
        async with self.store.transaction() as db:
            rows = await db.execute_fetchall(f"SELECT id, scopes FROM shares WHERE server_id = ? AND {column} = ?",
                                             (server_id, value))
            if rows:
                merged = sorted(set(json.loads(rows[0]["scopes"])) | set(bases))
                await db.execute("UPDATE shares SET scopes = ? WHERE id = ?", (json.dumps(merged), rows[0]["id"]))
            else:
                await db.execute(f"INSERT INTO shares (server_id, {column}, scopes, created) VALUES (?, ?, ?, ?)",
                                 (server_id, value, json.dumps(sorted(set(bases))), time.time()))
        self.store.note_authz_change()
        share = await self.find(server_id, user_id=user_id, group_id=group_id)
        assert share is not None
        return share

    async def revoke(self, share: Share, bases: Iterable[str] | None) -> Share | None:
        """Take ``bases`` (all if None) away; the share is deleted when none remain. Returns what is left."""
        removed = set(share.bases) if bases is None else set(bases)
        left = tuple(b for b in share.bases if b not in removed)
        if left == share.bases:
            return share
        if left:
            await self._execute("UPDATE shares SET scopes = ? WHERE id = ?", (json.dumps(list(left)), share.id))
        else:
            await self._execute("DELETE FROM shares WHERE id = ?", (share.id,))
        self.store.note_authz_change()
        return replace(share, bases=left) if left else None

    async def delete_server_shares(self, server_id: int) -> int:
        count = await self._execute("DELETE FROM shares WHERE server_id = ?", (server_id,))
        self.store.note_authz_change()
        return count

    async def _execute(self, sql: str, params: tuple) -> int:
        async with self.store.transaction() as db:
            cursor = await db.execute(sql, params)
            return cursor.rowcount

    # ------------------------------------------------------------ share codes

    async def new_code(self, server_id: int, bases: Iterable[str], expires_in: int) -> tuple[ShareCode, str]:
        code = secrets.token_urlsafe(CODE_BYTES)
        now = time.time()
        async with self.store.transaction() as db:
            cursor = await db.execute(
                "INSERT INTO share_codes (server_id, hash, scopes, created, expires_at) VALUES (?, ?, ?, ?, ?)",
                (server_id, code_hash(code), json.dumps(sorted(set(bases))), now, now + expires_in))
            code_id = cursor.lastrowid
        found = await self.code_by_id(server_id, code_id)
        assert found is not None
        return found, code

    async def codes(self, *, owner_id: int | None = None, server_id: int | None = None, offset: int = 0,
                    limit: int = -1) -> tuple[list[ShareCode], int]:
        """Unexpired codes of one owner's servers or of one server, oldest first."""
        where, value = ("servers.user_id = ?", owner_id) if owner_id is not None else ("share_codes.server_id = ?",
                                                                                      server_id)
        where += " AND share_codes.expires_at > ?"
        params = (value, time.time())
        rows = await self.store.fetch_all(f"{_CODE_SELECT} WHERE {where} ORDER BY share_codes.id LIMIT ? OFFSET ?",
                                          (*params, limit, offset))
        total = await self.store.fetch_one(f"SELECT COUNT(*) AS n FROM share_codes JOIN servers ON servers.id = "
                                           f"share_codes.server_id WHERE {where}", params)
        return [_code(r) for r in rows], total["n"] if total else 0

    async def code_by_id(self, server_id: int, code_id: int) -> ShareCode | None:
        row = await self.store.fetch_one(f"{_CODE_SELECT} WHERE share_codes.id = ? AND share_codes.server_id = ?",
                                         (code_id, server_id))
        return _code(row) if row else None

    async def find_code(self, code: str, server_id: int | None = None) -> ShareCode | None:
        """The code's record, expired or not (None if unknown); optionally only for one server."""
        if not code or len(code) > 256:
            return None
        row = await self.store.fetch_one(f"{_CODE_SELECT} WHERE share_codes.hash = ?", (code_hash(code),))
        if row is None or (server_id is not None and row["server_id"] != server_id):
            return None
        return _code(row)

    async def delete_codes(self, server_id: int, code_id: int | None = None) -> int:
        if code_id is None:
            return await self._execute("DELETE FROM share_codes WHERE server_id = ?", (server_id,))
        return await self._execute("DELETE FROM share_codes WHERE server_id = ? AND id = ?", (server_id, code_id))

    async def exchange(self, code: ShareCode, user_id: int) -> Share | None:
        """Turn a code into a share for ``user_id`` (None if it expired: it is deleted then)."""
        now = time.time()
        if code.expired(now):
            await self.delete_codes(code.server_id, code.id)
            return None
        share = await self.grant(code.server_id, code.bases, user_id=user_id)
        await self._execute("UPDATE share_codes SET exchange_count = exchange_count + 1, last_exchanged_at = ? "
                            "WHERE id = ?", (now, code.id))
        return share
