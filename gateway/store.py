"""The Store: all persistent state in one sqlite file, behind typed async methods.

Two connections: one writer (every write runs in ``BEGIN IMMEDIATE`` under an asyncio
lock, so multi-statement writes are atomic and concurrent writers queue instead of
losing updates) and one reader (WAL lets it read committed data while a write is open).
Methods return frozen models from ``gateway.vocab.models``, never rows.

Two counters let in-process caches stay correct without a database round trip per request:
``authz_version`` changes whenever roles, memberships, admin flags or users change;
``revocation_version`` whenever a token, session, user or service is deleted.

Another store (PostgreSQL) implements the same public methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sqlite3
import time
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiosqlite

from gateway.db.migrations import MIGRATIONS
from gateway.db.people import PeopleStore
from gateway.db.rows import Conflict, StoreError, UserListing
from gateway.db.servers import ServerStore
from gateway.db.tokens import TokenStore

log = logging.getLogger("gateway.store")

__all__ = ["Conflict", "Store", "StoreError", "UserListing"]


class Store(PeopleStore, ServerStore, TokenStore):
    """sqlite store. Create with ``await Store.open(path)``; close with ``await store.close()``."""

    def __init__(self, path: str, writer: aiosqlite.Connection, reader: aiosqlite.Connection):
        self.path = path
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()
        self.authz_version = 0
        self.revocation_version = 0
        self._role_names_cache: dict[int, tuple[int, list[str]]] = {}  # user id -> (authz_version, names)

    # ------------------------------------------------------------ lifecycle

    @classmethod
    async def open(cls, path: str, *, migrate: bool = True) -> Store:
        new_file = path != ":memory:" and not os.path.exists(path)
        if new_file:
            # Create the file 0600 before sqlite does: it holds token hashes and spawner state.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        writer = await cls._connect(path)
        reader = await cls._connect(path) if path != ":memory:" else writer
        store = cls(path, writer, reader)
        if migrate:
            await store.migrate()
        return store

    @staticmethod
    async def _connect(path: str) -> aiosqlite.Connection:
        db = await aiosqlite.connect(path, isolation_level=None)
        db.row_factory = sqlite3.Row
        await db.execute("PRAGMA busy_timeout = 10000")
        await db.execute("PRAGMA foreign_keys = ON")
        with contextlib.suppress(sqlite3.OperationalError):  # a read-only file cannot switch modes
            await db.execute("PRAGMA journal_mode = WAL")
        await db.execute("PRAGMA synchronous = NORMAL")
        return db

    async def reopen_writer(self, *, read_only: bool) -> None:
        """Fault injection for tests (and nothing else): reopen the writer connection, read-only if asked,
        through sqlite's ``file:...?mode=ro`` URI. Writes then fail with StoreError as on a read-only
        filesystem, while the reader connection keeps working. Not reachable from config or the API."""
        async with self._write_lock:
            if self._writer is self._reader:
                raise ValueError("an in-memory store has a single connection")
            await self._writer.close()
            if read_only:
                uri = "file:" + urllib.parse.quote(os.path.abspath(self.path)) + "?mode=ro"
                self._writer = await aiosqlite.connect(uri, uri=True, isolation_level=None)
                self._writer.row_factory = sqlite3.Row
                await self._writer.execute("PRAGMA busy_timeout = 10000")
            else:
                self._writer = await self._connect(self.path)

    async def close(self) -> None:
        if self._reader is not self._writer:
            await self._reader.close()
        await self._writer.close()

    async def applied_migrations(self) -> list[str]:
        await self._writer.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied REAL NOT NULL)"
        )
        rows = await self._writer.execute_fetchall("SELECT name FROM schema_migrations ORDER BY name")
        return [r["name"] for r in rows]

    async def pending_migrations(self) -> list[str]:
        done = set(await self.applied_migrations())
        return [name for name, _ in MIGRATIONS if name not in done]

    async def migrate(self, upto: int | None = None) -> list[str]:
        """Apply pending migrations (the first ``upto`` only, for tests of old files); return their names."""
        applied = []
        done = set(await self.applied_migrations())
        for name, sql in MIGRATIONS[:upto]:
            if name in done:
                continue
            async with self.transaction() as db:
                for statement in filter(str.strip, sql.split(";")):
                    await db.execute(statement)
                await db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (name, time.time()))
            log.info("Applied database migration %s", name)
            applied.append(name)
        return applied

    def backup(self) -> str:
        """Copy the database file beside itself (for ``gateway upgrade-db``); return the copy's path."""
        target = f"{self.path}.{time.strftime('%Y%m%d-%H%M%S')}.bak"
        shutil.copy2(self.path, target)
        os.chmod(target, 0o600)
        return target

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._write_lock:
            await self._begin()
            try:
                yield self._writer
            except sqlite3.OperationalError as e:
                # A statement the disk refused (full, read-only, I/O error): same error as at COMMIT.
                with contextlib.suppress(sqlite3.Error):
                    await self._writer.execute("ROLLBACK")
                raise StoreError(f"The database cannot be written: {e}") from None
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    await self._writer.execute("ROLLBACK")
                raise
            try:
                await self._writer.execute("COMMIT")
            except sqlite3.OperationalError as e:
                with contextlib.suppress(sqlite3.Error):
                    await self._writer.execute("ROLLBACK")
                raise StoreError(f"The database cannot be written: {e}") from None

    async def _begin(self) -> None:
        # aiosqlite runs a statement to its end in its own thread even when the task awaiting it is
        # cancelled (a server start cancelled by a stop, say): a BEGIN cancelled on its way still opens
        # the transaction, which must be rolled back before the next writer gets the lock, or every
        # later write fails with "cannot start a transaction within a transaction".
        begin = asyncio.ensure_future(self._writer.execute("BEGIN IMMEDIATE"))
        try:
            await asyncio.shield(begin)
        except asyncio.CancelledError:
            await asyncio.shield(self._undo_begin(begin))
            raise
        except sqlite3.OperationalError as e:
            raise StoreError(f"The database cannot be written: {e}") from None

    async def _undo_begin(self, begin: asyncio.Future) -> None:
        try:
            await begin
        except sqlite3.Error:
            return  # it never began
        with contextlib.suppress(sqlite3.Error):
            await self._writer.execute("ROLLBACK")

    async def _write(self, sql: str, params: Sequence[Any] = ()) -> aiosqlite.Cursor:
        async with self.transaction() as db:
            try:
                return await db.execute(sql, params)
            except sqlite3.IntegrityError as e:
                if "UNIQUE" in str(e):
                    raise Conflict(str(e)) from None
                raise
            except sqlite3.OperationalError as e:
                raise StoreError(f"The database cannot be written: {e}") from None

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return list(await self._reader.execute_fetchall(sql, params))

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        rows = await self._reader.execute_fetchall(sql, params)
        return rows[0] if rows else None

    async def data_version(self) -> int:
        """sqlite's data_version on the writer connection: it changes when another connection commits,
        never for the writer's own commits (asked on the reader, every activity flush of our own would
        look like an outside write and empty the identity caches)."""
        async with self._write_lock:  # the writer connection may be swapped (reopen_writer)
            rows = await self._writer.execute_fetchall("PRAGMA data_version")
        return rows[0][0] if rows else 0

    async def watch_other_writers(self, interval: float = 1.0) -> None:
        """Bump both cache counters when the file changed under us (``gateway token``/``set-password`` run
        in another process), so revocations from outside reach the in-process caches within ``interval``."""
        seen = await self.data_version()
        while True:
            await asyncio.sleep(interval)
            try:
                version = await self.data_version()
            except sqlite3.Error:
                continue
            if version != seen:
                seen = version
                self._authz_changed()
                self._revoked()

    def _authz_changed(self) -> None:
        self.authz_version += 1

    # For sibling data modules (shares, OAuth codes) that keep their own tables: reads on the reader
    # connection, writes through ``transaction()``, and the cache counters bumped after a write.
    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return await self._all(sql, params)

    async def fetch_one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        return await self._one(sql, params)

    def note_authz_change(self) -> None:
        """Someone's scopes changed (a share granted or revoked): cached identities are recomputed."""
        self._authz_changed()

    def note_revocation(self) -> None:
        self._revoked()

    def _revoked(self) -> None:
        self.revocation_version += 1
