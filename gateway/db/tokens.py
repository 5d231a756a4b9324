"""Tokens and login sessions in the store.

A part of ``Store`` (gateway/store.py), which provides the connections, ``transaction()``, ``_write``,
``_all``, ``_one`` and the cache counters these methods use.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from gateway.db.rows import TOKEN_SELECT, _json, _token
from gateway.vocab import security
from gateway.vocab.models import LoginSession, OwnerKind, Token


class TokenStore:
    # ------------------------------------------------------------ tokens

    async def create_token(
        self,
        owner_kind: OwnerKind,
        owner_id: int,
        *,
        note: str = "",
        scopes: Sequence[str] = ("inherit",),
        expires_at: float | None = None,
        session_id: str | None = None,
        client_id: str = "jupyterhub",
        server_id: int | None = None,
        token: str | None = None,
    ) -> tuple[Token, str]:
        """Store a new token (or the given plaintext, for config tokens); return it and its plaintext, shown once."""
        token = token or security.new_token()
        salt = security.new_salt()
        now = time.time()
        column = "user_id" if owner_kind == "user" else "service_id"
        cursor = await self._write(
            f"INSERT INTO tokens (prefix, salt, hash, {column}, note, scopes, created, expires_at, session_id, client_id, server_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (security.token_prefix(token), salt, security.hash_token(token, salt), owner_id, note, _json(list(scopes)),
             now, expires_at, session_id, client_id, server_id),
        )
        stored = await self.get_token(cursor.lastrowid)
        assert stored is not None
        return stored, token

    async def find_token(self, token: str) -> Token | None:
        """The stored token matching this plaintext (expired ones too: the caller decides), or None."""
        if not token or len(token) > security.TOKEN_MAX_LENGTH:
            return None
        rows = await self._all(f"{TOKEN_SELECT} WHERE tokens.prefix = ?", (security.token_prefix(token),))
        for row in rows:
            if security.token_matches(token, row["salt"], row["hash"]):
                return _token(row)
        return None

    async def get_token(self, token_id: int) -> Token | None:
        row = await self._one(f"{TOKEN_SELECT} WHERE tokens.id = ?", (token_id,))
        return _token(row) if row else None

    async def list_tokens(self, owner_kind: OwnerKind, owner_id: int) -> list[Token]:
        column = "user_id" if owner_kind == "user" else "service_id"
        rows = await self._all(f"{TOKEN_SELECT} WHERE tokens.{column} = ? ORDER BY COALESCE(tokens.last_activity, tokens.created), tokens.id",
                               (owner_id,))
        return [_token(r) for r in rows]

    async def delete_token(self, token_id: int) -> None:
        await self._write("DELETE FROM tokens WHERE id = ?", (token_id,))
        self._revoked()

    async def delete_tokens(self, *, session_id: str | None = None, server_id: int | None = None,
                            user_id: int | None = None, client_id: str | None = None, expired_before: float | None = None) -> int:
        where, params = [], []
        for column, value in (("session_id", session_id), ("server_id", server_id), ("user_id", user_id), ("client_id", client_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if expired_before is not None:
            where.append("expires_at IS NOT NULL AND expires_at <= ?")
            params.append(expired_before)
        assert where, "refusing to delete every token"
        cursor = await self._write(f"DELETE FROM tokens WHERE {' AND '.join(where)}", params)
        if cursor.rowcount:
            self._revoked()
        return cursor.rowcount

    async def touch_tokens(self, activity: Mapping[int, float]) -> None:
        if not activity:
            return
        async with self.transaction() as db:
            await db.executemany("UPDATE tokens SET last_activity = ? WHERE id = ?", [(ts, tid) for tid, ts in activity.items()])

    # ------------------------------------------------------------ login sessions

    async def create_session(self, session_id: str, user_id: int, expires_at: float) -> LoginSession:
        now = time.time()
        await self._write("INSERT INTO login_sessions VALUES (?, ?, ?, ?)", (session_id, user_id, now, expires_at))
        return LoginSession(id=session_id, user_id=user_id, created=now, expires_at=expires_at)

    async def get_session(self, session_id: str) -> LoginSession | None:
        row = await self._one("SELECT * FROM login_sessions WHERE id = ?", (session_id,))
        return LoginSession(id=row["id"], user_id=row["user_id"], created=row["created"], expires_at=row["expires_at"]) if row else None

    async def delete_session(self, session_id: str) -> None:
        async with self.transaction() as db:
            await db.execute("DELETE FROM login_sessions WHERE id = ?", (session_id,))
            # Tokens issued within this browser session (OAuth) end with it.
            await db.execute("DELETE FROM tokens WHERE session_id = ?", (session_id,))
        self._revoked()

    async def delete_user_sessions(self, user_id: int) -> None:
        async with self.transaction() as db:
            await db.execute("DELETE FROM tokens WHERE session_id IN (SELECT id FROM login_sessions WHERE user_id = ?)", (user_id,))
            await db.execute("DELETE FROM login_sessions WHERE user_id = ?", (user_id,))
        self._revoked()
