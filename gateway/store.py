"""The Store: all persistent state in one sqlite file, behind typed async methods.

Two connections: one writer (every write runs in ``BEGIN IMMEDIATE`` under an asyncio
lock, so multi-statement writes are atomic and concurrent writers queue instead of
losing updates) and one reader (WAL lets it read committed data while a write is open).
Methods return frozen models from ``gateway.models``, never rows.

Two counters let in-process caches stay correct without a database round trip per request:
``authz_version`` changes whenever roles, memberships, admin flags or users change;
``revocation_version`` whenever a token, session, user or service is deleted.

Another store (PostgreSQL) implements the same public methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import shutil
import sqlite3
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import aiosqlite

from gateway import security
from gateway.migrations import MIGRATIONS
from gateway.models import Group, LoginSession, OwnerKind, Role, Server, Service, Token, User

log = logging.getLogger("gateway.store")


class UserListing(NamedTuple):
    """One row of a user listing: the user, its group and role names, and whether it has server records.
    (A NamedTuple rather than a frozen dataclass: listings build thousands of these per second.)"""

    user: User
    groups: tuple[str, ...]
    roles: tuple[str, ...]
    has_servers: bool


class StoreError(Exception):
    """A write the database refused (read-only file, disk full ...); the message says which."""


class Conflict(Exception):
    """A unique name is already taken."""


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _user(row: sqlite3.Row) -> User:
    info = row["user_info"]
    return User(
        id=row["id"],
        name=row["name"],
        admin=bool(row["admin"]),
        created=row["created"],
        last_activity=row["last_activity"],
        user_info=json.loads(info) if info else None,
    )


def _group(row: sqlite3.Row) -> Group:
    return Group(id=row["id"], name=row["name"], properties=json.loads(row["properties"]))


def _role(row: sqlite3.Row) -> Role:
    return Role(id=row["id"], name=row["name"], description=row["description"], scopes=tuple(json.loads(row["scopes"])))


def _service(row: sqlite3.Row) -> Service:
    return Service(
        id=row["id"],
        name=row["name"],
        admin=bool(row["admin"]),
        url=row["url"],
        info=json.loads(row["info"]),
        display=bool(row["display"]),
        from_config=bool(row["from_config"]),
        oauth_client_id=row["oauth_client_id"],
        oauth_redirect_uri=row["oauth_redirect_uri"],
        oauth_no_confirm=bool(row["oauth_no_confirm"]),
        oauth_client_allowed_scopes=tuple(json.loads(row["oauth_client_allowed_scopes"])),
        command=tuple(json.loads(row["command"])),
        pid=row["pid"],
    )


def _server(row: sqlite3.Row) -> Server:
    options = row["user_options"]
    return Server(
        id=row["id"],
        user_id=row["user_id"],
        user_name=row["user_name"],
        name=row["name"],
        display_name=row["display_name"],
        url=row["url"],
        state=json.loads(row["state"]),
        started=row["started"],
        last_activity=row["last_activity"],
        user_options=json.loads(options) if options else None,
        created=row["created"],
    )


def _token(row: sqlite3.Row) -> Token:
    return Token(
        id=row["id"],
        prefix=row["prefix"],
        owner_kind="user" if row["user_id"] is not None else "service",
        owner_id=row["user_id"] if row["user_id"] is not None else row["service_id"],
        owner_name=row["owner_name"],
        note=row["note"],
        scopes=tuple(json.loads(row["scopes"])),
        created=row["created"],
        last_activity=row["last_activity"],
        expires_at=row["expires_at"],
        session_id=row["session_id"],
        client_id=row["client_id"],
        server_id=row["server_id"],
    )


TOKEN_SELECT = """
    SELECT tokens.*, COALESCE(users.name, services.name) AS owner_name
    FROM tokens LEFT JOIN users ON users.id = tokens.user_id
    LEFT JOIN services ON services.id = tokens.service_id
"""
SERVER_SELECT = "SELECT servers.*, users.name AS user_name FROM servers JOIN users ON users.id = servers.user_id"

USER_SORTS = {"id": "users.id", "name": "users.name", "last_activity": "users.last_activity"}


@functools.lru_cache(maxsize=4096)
def _names(json_array: str) -> tuple[str, ...]:
    """A JSON array of names, decoded once per distinct value (most users share a few role/group sets)."""
    return tuple(json.loads(json_array))


def _user_query(name_filter: str, state: str, names: Iterable[str] | None, group_ids: Iterable[int] | None,
                sort: str) -> tuple[str, list[Any], str]:
    """WHERE clause, its parameters and ORDER BY terms of a user listing (see ``Store.list_users``)."""
    where: list[str] = []
    params: list[Any] = []
    if name_filter:
        where.append("users.name LIKE ? ESCAPE '\\'")
        escaped = name_filter.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params.append(f"%{escaped}%")
    if state == "active":
        where.append("EXISTS (SELECT 1 FROM servers WHERE servers.user_id = users.id AND (servers.url != '' OR servers.started IS NOT NULL))")
    elif state == "inactive":
        where.append("NOT EXISTS (SELECT 1 FROM servers WHERE servers.user_id = users.id AND (servers.url != '' OR servers.started IS NOT NULL))")
    elif state == "ready":
        where.append("EXISTS (SELECT 1 FROM servers WHERE servers.user_id = users.id AND servers.url != '')")
    if names is not None or group_ids is not None:
        alternatives = []
        names, group_ids = list(names or ()), list(group_ids or ())
        if names:
            alternatives.append(f"users.name IN ({','.join('?' * len(names))})")
            params.extend(names)
        if group_ids:
            alternatives.append(
                f"users.id IN (SELECT user_id FROM group_members WHERE group_id IN ({','.join('?' * len(group_ids))}))")
            params.extend(group_ids)
        where.append("(" + " OR ".join(alternatives) + ")" if alternatives else "0")
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    descending = sort.startswith("-")
    column = USER_SORTS[sort.lstrip("-")]
    # JupyterHub: ascending puts NULLs first, descending puts them last.
    order = f"{column} DESC NULLS LAST" if descending else f"{column} ASC NULLS FIRST"
    return clause, params, order


class Store:
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

    # ------------------------------------------------------------ users

    async def get_user(self, name: str) -> User | None:
        row = await self._one("SELECT * FROM users WHERE name = ?", (name,))
        return _user(row) if row else None

    async def get_user_by_id(self, user_id: int) -> User | None:
        row = await self._one("SELECT * FROM users WHERE id = ?", (user_id,))
        return _user(row) if row else None

    async def get_users(self, names: Iterable[str]) -> dict[str, User]:
        names = list(names)
        found: dict[str, User] = {}
        for i in range(0, len(names), 500):
            chunk = names[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for row in await self._all(f"SELECT * FROM users WHERE name IN ({marks})", chunk):
                found[row["name"]] = _user(row)
        return found

    async def create_users(self, names: Sequence[str], *, admin: bool = False, roles: Sequence[str] = ("user",)) -> list[User]:
        """Create the users that do not exist yet (with the given roles); return the new ones, atomically."""
        created = []
        now = time.time()
        async with self.transaction() as db:
            role_ids = [r["id"] for r in await db.execute_fetchall(
                f"SELECT id FROM roles WHERE name IN ({','.join('?' * len(roles))})", list(roles))] if roles else []
            for name in names:
                cursor = await db.execute(
                    "INSERT INTO users (name, admin, created) VALUES (?, ?, ?) ON CONFLICT(name) DO NOTHING",
                    (name, int(admin), now),
                )
                if cursor.rowcount:
                    user_id = cursor.lastrowid
                    for role_id in role_ids:
                        await db.execute("INSERT OR IGNORE INTO user_roles VALUES (?, ?)", (role_id, user_id))
                    created.append(User(id=user_id, name=name, admin=admin, created=now))
        if created:
            self._authz_changed()
        return created

    async def create_user(self, name: str, *, admin: bool = False, roles: Sequence[str] = ("user",)) -> User:
        created = await self.create_users([name], admin=admin, roles=roles)
        if not created:
            raise Conflict(f"User {name} already exists")
        return created[0]

    async def update_user(self, user_id: int, *, name: str | None = None, admin: bool | None = None,
                          user_info: Mapping[str, Any] | None = None) -> User | None:
        async with self.transaction() as db:
            if name is not None:
                try:
                    await db.execute("UPDATE users SET name = ? WHERE id = ?", (name, user_id))
                except sqlite3.IntegrityError:
                    raise Conflict(f"User {name} already exists, username must be unique") from None
            if admin is not None:
                await db.execute("UPDATE users SET admin = ? WHERE id = ?", (int(admin), user_id))
                role = await db.execute_fetchall("SELECT id FROM roles WHERE name = 'admin'")
                if role:
                    if admin:
                        await db.execute("INSERT OR IGNORE INTO user_roles VALUES (?, ?)", (role[0]["id"], user_id))
                    else:
                        await db.execute("DELETE FROM user_roles WHERE role_id = ? AND user_id = ?", (role[0]["id"], user_id))
            if user_info is not None:
                await db.execute("UPDATE users SET user_info = ? WHERE id = ?", (_json(user_info), user_id))
        self._authz_changed()
        return await self.get_user_by_id(user_id)

    async def delete_user(self, user_id: int) -> None:
        await self._write("DELETE FROM users WHERE id = ?", (user_id,))
        self._authz_changed()
        self._revoked()

    async def touch_users(self, activity: Mapping[int, float]) -> None:
        """Move last_activity forward (never back) for many users in one transaction."""
        if not activity:
            return
        async with self.transaction() as db:
            await db.executemany(
                "UPDATE users SET last_activity = ? WHERE id = ? AND (last_activity IS NULL OR last_activity < ?)",
                [(ts, uid, ts) for uid, ts in activity.items()],
            )

    async def count_users(self) -> int:
        row = await self._one("SELECT COUNT(*) AS n FROM users")
        return row["n"] if row else 0

    async def count_active_users(self, since: float) -> int:
        """Users whose last_activity is at or after ``since`` (for the active-users metric)."""
        row = await self._one("SELECT COUNT(*) AS n FROM users WHERE last_activity >= ?", (since,))
        return row["n"] if row else 0

    async def list_users(
        self,
        *,
        offset: int = 0,
        limit: int | None = None,
        name_filter: str = "",
        sort: str = "id",
        state: str = "",
        names: Iterable[str] | None = None,
        group_ids: Iterable[int] | None = None,
    ) -> tuple[list[User], int]:
        """A page of users and the total matching. ``state``: '' | 'active' | 'ready' | 'inactive' (by server records);
        ``names``/``group_ids`` restrict to listed users or members (for post-filtered scopes)."""
        clause, params, order = _user_query(name_filter, state, names, group_ids, sort)
        total_row = await self._one(f"SELECT COUNT(*) AS n FROM users {clause}", params)
        page = f" LIMIT {int(limit)} OFFSET {int(offset)}" if limit is not None else (f" LIMIT -1 OFFSET {int(offset)}" if offset else "")
        rows = await self._all(f"SELECT * FROM users {clause} ORDER BY {order}, users.id{page}", params)
        return [_user(r) for r in rows], total_row["n"] if total_row else 0

    async def set_password_hash(self, user_id: int, password_hash: str | None) -> None:
        await self._write("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))

    async def get_password_hash(self, name: str) -> str | None:
        row = await self._one("SELECT password_hash FROM users WHERE name = ?", (name,))
        return row["password_hash"] if row else None

    async def count_users_with_password(self) -> int:
        row = await self._one("SELECT COUNT(*) AS n FROM users WHERE password_hash IS NOT NULL")
        return row["n"] if row else 0

    # ------------------------------------------------------------ groups

    async def get_group(self, name: str) -> Group | None:
        row = await self._one("SELECT * FROM groups WHERE name = ?", (name,))
        return _group(row) if row else None

    async def list_groups(self, *, offset: int = 0, limit: int | None = None,
                          names: Iterable[str] | None = None) -> tuple[list[Group], int]:
        clause, params = "", []
        if names is not None:
            names = list(names)
            clause = f"WHERE name IN ({','.join('?' * len(names))})" if names else "WHERE 0"
            params = names
        total = await self._one(f"SELECT COUNT(*) AS n FROM groups {clause}", params)
        page = f" LIMIT {int(limit)} OFFSET {int(offset)}" if limit is not None else ""
        rows = await self._all(f"SELECT * FROM groups {clause} ORDER BY id{page}", params)
        return [_group(r) for r in rows], total["n"] if total else 0

    async def create_groups(self, names: Sequence[str], member_ids: Sequence[int] = (),
                            properties: Mapping[str, Any] | None = None) -> list[Group]:
        """Create all the groups (with the same members) or none: Conflict if one exists."""
        groups = []
        async with self.transaction() as db:
            for name in names:
                try:
                    cursor = await db.execute("INSERT INTO groups (name, properties) VALUES (?, ?)",
                                              (name, _json(properties or {})))
                except sqlite3.IntegrityError:
                    raise Conflict(f"Group {name} already exists") from None
                await db.executemany("INSERT OR IGNORE INTO group_members VALUES (?, ?)",
                                     [(cursor.lastrowid, uid) for uid in member_ids])
                groups.append(Group(id=cursor.lastrowid, name=name, properties=dict(properties or {})))
        self._authz_changed()
        return groups

    async def delete_group(self, group_id: int) -> None:
        await self._write("DELETE FROM groups WHERE id = ?", (group_id,))
        self._authz_changed()

    async def set_group_properties(self, group_id: int, properties: Mapping[str, Any]) -> None:
        await self._write("UPDATE groups SET properties = ? WHERE id = ?", (_json(properties), group_id))

    async def change_group_members(self, group_id: int, *, add: Iterable[int] = (), remove: Iterable[int] = ()) -> None:
        async with self.transaction() as db:
            await db.executemany("INSERT OR IGNORE INTO group_members VALUES (?, ?)", [(group_id, u) for u in add])
            await db.executemany("DELETE FROM group_members WHERE group_id = ? AND user_id = ?",
                                 [(group_id, u) for u in remove])
        self._authz_changed()

    async def group_member_names(self, group_ids: Iterable[int]) -> dict[int, list[str]]:
        group_ids = list(group_ids)
        members: dict[int, list[str]] = {g: [] for g in group_ids}
        if not group_ids:
            return members
        rows = await self._all(
            f"SELECT group_members.group_id, users.name FROM group_members JOIN users ON users.id = group_members.user_id "
            f"WHERE group_id IN ({','.join('?' * len(group_ids))}) ORDER BY users.id", group_ids)
        for row in rows:
            members[row["group_id"]].append(row["name"])
        return members

    async def groups_of_users(self, user_ids: Iterable[int]) -> dict[int, list[str]]:
        user_ids = list(user_ids)
        result: dict[int, list[str]] = {u: [] for u in user_ids}
        for i in range(0, len(user_ids), 500):
            chunk = user_ids[i : i + 500]
            rows = await self._all(
                f"SELECT group_members.user_id, groups.name FROM group_members JOIN groups ON groups.id = group_members.group_id "
                f"WHERE user_id IN ({','.join('?' * len(chunk))}) ORDER BY groups.id", chunk)
            for row in rows:
                result[row["user_id"]].append(row["name"])
        return result

    async def group_ids(self, names: Iterable[str]) -> dict[str, int]:
        names = list(names)
        if not names:
            return {}
        rows = await self._all(f"SELECT id, name FROM groups WHERE name IN ({','.join('?' * len(names))})", names)
        return {r["name"]: r["id"] for r in rows}

    # ------------------------------------------------------------ roles

    async def get_role(self, name: str) -> Role | None:
        row = await self._one("SELECT * FROM roles WHERE name = ?", (name,))
        return _role(row) if row else None

    async def list_roles(self) -> list[Role]:
        return [_role(r) for r in await self._all("SELECT * FROM roles ORDER BY id")]

    async def upsert_role(self, name: str, description: str, scopes: Sequence[str]) -> Role:
        async with self.transaction() as db:
            await db.execute(
                "INSERT INTO roles (name, description, scopes) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET description = excluded.description, scopes = excluded.scopes",
                (name, description, _json(list(scopes))),
            )
        self._authz_changed()
        role = await self.get_role(name)
        assert role is not None
        return role

    async def delete_roles_except(self, keep: Iterable[str]) -> list[str]:
        keep = list(keep)
        rows = await self._all(f"SELECT name FROM roles WHERE name NOT IN ({','.join('?' * len(keep))})", keep)
        if rows:
            await self._write(f"DELETE FROM roles WHERE name NOT IN ({','.join('?' * len(keep))})", keep)
            self._authz_changed()
        return [r["name"] for r in rows]

    async def set_role_members(self, role_id: int, *, user_ids: Iterable[int] | None = None,
                               group_ids: Iterable[int] | None = None, service_ids: Iterable[int] | None = None) -> None:
        """Make the role's members exactly those given, for each kind that is not None."""
        async with self.transaction() as db:
            for table, column, ids in (("user_roles", "user_id", user_ids), ("group_roles", "group_id", group_ids),
                                       ("service_roles", "service_id", service_ids)):
                if ids is None:
                    continue
                await db.execute(f"DELETE FROM {table} WHERE role_id = ?", (role_id,))
                await db.executemany(f"INSERT OR IGNORE INTO {table} (role_id, {column}) VALUES (?, ?)",
                                     [(role_id, i) for i in ids])
        self._authz_changed()

    async def grant_role(self, role_id: int, *, user_id: int | None = None, service_id: int | None = None,
                         group_id: int | None = None) -> None:
        async with self.transaction() as db:
            if user_id is not None:
                await db.execute("INSERT OR IGNORE INTO user_roles VALUES (?, ?)", (role_id, user_id))
            if service_id is not None:
                await db.execute("INSERT OR IGNORE INTO service_roles VALUES (?, ?)", (role_id, service_id))
            if group_id is not None:
                await db.execute("INSERT OR IGNORE INTO group_roles VALUES (?, ?)", (role_id, group_id))
        self._authz_changed()

    async def role_names_of_users(self, user_ids: Iterable[int]) -> dict[int, list[str]]:
        user_ids = list(user_ids)
        result: dict[int, list[str]] = {u: [] for u in user_ids}
        for i in range(0, len(user_ids), 500):
            chunk = user_ids[i : i + 500]
            rows = await self._all(
                f"SELECT user_roles.user_id, roles.name FROM user_roles JOIN roles ON roles.id = user_roles.role_id "
                f"WHERE user_id IN ({','.join('?' * len(chunk))}) ORDER BY roles.id", chunk)
            for row in rows:
                result[row["user_id"]].append(row["name"])
        return result

    async def role_names_of_groups(self, group_ids: Iterable[int]) -> dict[int, list[str]]:
        group_ids = list(group_ids)
        result: dict[int, list[str]] = {g: [] for g in group_ids}
        if group_ids:
            rows = await self._all(
                f"SELECT group_roles.group_id, roles.name FROM group_roles JOIN roles ON roles.id = group_roles.role_id "
                f"WHERE group_id IN ({','.join('?' * len(group_ids))}) ORDER BY roles.id", group_ids)
            for row in rows:
                result[row["group_id"]].append(row["name"])
        return result

    async def role_names_of_service(self, service_id: int) -> list[str]:
        rows = await self._all(
            "SELECT roles.name FROM service_roles JOIN roles ON roles.id = service_roles.role_id "
            "WHERE service_id = ? ORDER BY roles.id", (service_id,))
        return [r["name"] for r in rows]

    async def roles_for_user(self, user_id: int) -> list[Role]:
        """The user's roles, direct and through its groups."""
        rows = await self._all(
            "SELECT DISTINCT roles.* FROM roles WHERE id IN ("
            " SELECT role_id FROM user_roles WHERE user_id = ?"
            " UNION SELECT role_id FROM group_roles WHERE group_id IN (SELECT group_id FROM group_members WHERE user_id = ?)"
            ") ORDER BY id", (user_id, user_id))
        return [_role(r) for r in rows]

    async def roles_for_service(self, service_id: int) -> list[Role]:
        rows = await self._all(
            "SELECT roles.* FROM roles JOIN service_roles ON service_roles.role_id = roles.id "
            "WHERE service_id = ? ORDER BY roles.id", (service_id,))
        return [_role(r) for r in rows]

    # ------------------------------------------------------------ services

    async def get_service(self, name: str) -> Service | None:
        row = await self._one("SELECT * FROM services WHERE name = ?", (name,))
        return _service(row) if row else None

    async def get_service_by_id(self, service_id: int) -> Service | None:
        row = await self._one("SELECT * FROM services WHERE id = ?", (service_id,))
        return _service(row) if row else None

    async def list_services(self) -> list[Service]:
        return [_service(r) for r in await self._all("SELECT * FROM services ORDER BY id")]

    async def upsert_service(self, name: str, **fields: Any) -> tuple[Service, bool]:
        """Create or update a service; return it and whether it was created."""
        encoded = {k: (_json(list(v) if isinstance(v, tuple) else v) if k in ("info", "command", "oauth_client_allowed_scopes")
                       else int(v) if isinstance(v, bool) else v) for k, v in fields.items()}
        async with self.transaction() as db:
            existing = await db.execute_fetchall("SELECT id FROM services WHERE name = ?", (name,))
            if existing:
                if encoded:
                    sets = ", ".join(f"{k} = ?" for k in encoded)
                    await db.execute(f"UPDATE services SET {sets} WHERE name = ?", (*encoded.values(), name))
            else:
                columns = ["name", *encoded]
                await db.execute(f"INSERT INTO services ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                                 (name, *encoded.values()))
        service = await self.get_service(name)
        assert service is not None
        return service, not existing

    async def delete_service(self, service_id: int) -> None:
        await self._write("DELETE FROM services WHERE id = ?", (service_id,))
        self._authz_changed()
        self._revoked()

    # ------------------------------------------------------------ servers

    async def get_server(self, user_id: int, name: str) -> Server | None:
        row = await self._one(f"{SERVER_SELECT} WHERE servers.user_id = ? AND servers.name = ?", (user_id, name))
        return _server(row) if row else None

    async def get_server_by_id(self, server_id: int) -> Server | None:
        row = await self._one(f"{SERVER_SELECT} WHERE servers.id = ?", (server_id,))
        return _server(row) if row else None

    async def servers_of_users(self, user_ids: Iterable[int]) -> dict[int, list[Server]]:
        user_ids = list(user_ids)
        result: dict[int, list[Server]] = {u: [] for u in user_ids}
        for i in range(0, len(user_ids), 500):
            chunk = user_ids[i : i + 500]
            rows = await self._all(
                f"{SERVER_SELECT} WHERE servers.user_id IN ({','.join('?' * len(chunk))}) ORDER BY servers.id", chunk)
            for row in rows:
                result[row["user_id"]].append(_server(row))
        return result

    async def running_servers(self) -> list[Server]:
        return [_server(r) for r in await self._all(f"{SERVER_SELECT} WHERE servers.url != '' ORDER BY servers.id")]

    async def all_servers(self) -> list[Server]:
        return [_server(r) for r in await self._all(f"{SERVER_SELECT} ORDER BY servers.id")]

    async def count_named_servers(self, user_id: int) -> int:
        row = await self._one("SELECT COUNT(*) AS n FROM servers WHERE user_id = ? AND name != ''", (user_id,))
        return row["n"] if row else 0

    async def create_server(self, user_id: int, name: str, *, display_name: str = "",
                            user_options: Mapping[str, Any] | None = None) -> Server:
        try:
            cursor = await self._write(
                "INSERT INTO servers (user_id, name, display_name, user_options, created) VALUES (?, ?, ?, ?, ?)",
                (user_id, name, display_name, _json(user_options) if user_options is not None else None, time.time()))
        except Conflict:
            raise Conflict(f"server {name!r} exists") from None
        server = await self.get_server_by_id(cursor.lastrowid)
        assert server is not None
        return server

    UNSET: Any = object()

    async def update_server(self, server_id: int, **fields: Any) -> Server | None:
        """Set the given columns: name, display_name, url, state, started, last_activity, user_options."""
        allowed = {"name", "display_name", "url", "state", "started", "last_activity", "user_options"}
        assert set(fields) <= allowed, set(fields) - allowed
        encoded = {k: (_json(v) if k in ("state", "user_options") and v is not None else v) for k, v in fields.items()}
        if encoded:
            sets = ", ".join(f"{k} = ?" for k in encoded)
            try:
                await self._write(f"UPDATE servers SET {sets} WHERE id = ?", (*encoded.values(), server_id))
            except Conflict:
                raise Conflict(f"server {fields.get('name')!r} exists") from None
            if "name" in fields:
                self._authz_changed()  # shares name the server in their scope filters
        return await self.get_server_by_id(server_id)

    async def delete_server(self, server_id: int) -> None:
        await self._write("DELETE FROM servers WHERE id = ?", (server_id,))
        self._authz_changed()  # its shares went with it
        self._revoked()

    async def touch_servers(self, activity: Mapping[int, float]) -> None:
        if not activity:
            return
        async with self.transaction() as db:
            await db.executemany(
                "UPDATE servers SET last_activity = ? WHERE id = ? AND (last_activity IS NULL OR last_activity < ?)",
                [(ts, sid, ts) for sid, ts in activity.items()],
            )

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

    # ------------------------------------------------------------ added for the REST API

    async def add_service(self, name: str, *, token: str | None = None, roles: Sequence[str] = (),
                          **fields: Any) -> Service:
        """Create a service with its token and role grants in one transaction; Conflict if the name is taken."""
        encoded = {k: (_json(list(v) if isinstance(v, tuple) else v) if k in ("info", "command", "oauth_client_allowed_scopes")
                       else int(v) if isinstance(v, bool) else v) for k, v in fields.items()}
        columns = ["name", *encoded]
        async with self.transaction() as db:
            try:
                cursor = await db.execute(
                    f"INSERT INTO services ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                    (name, *encoded.values()))
            except sqlite3.IntegrityError:
                raise Conflict(f"Service {name} already exists") from None
            service_id = cursor.lastrowid
            if token is not None:
                salt = security.new_salt()
                await db.execute(
                    "INSERT INTO tokens (prefix, salt, hash, service_id, note, scopes, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (security.token_prefix(token), salt, security.hash_token(token, salt), service_id, "from config",
                     _json(["inherit"]), time.time()))
            for role in roles:
                await db.execute("INSERT OR IGNORE INTO service_roles SELECT id, ? FROM roles WHERE name = ?",
                                 (service_id, role))
        if roles:
            self._authz_changed()
        service = await self.get_service_by_id(service_id)
        assert service is not None
        return service

    async def list_users_detailed(
        self,
        *,
        offset: int = 0,
        limit: int | None = None,
        name_filter: str = "",
        sort: str = "id",
        state: str = "",
        names: Iterable[str] | None = None,
        group_ids: Iterable[int] | None = None,
    ) -> tuple[list[UserListing], int]:
        """``list_users`` with each user's group and role names and whether it has server records, and the
        total, in one statement: a page of the REST user list costs one database round trip."""
        clause, params, order = _user_query(name_filter, state, names, group_ids, sort)
        page = f" LIMIT {int(limit) if limit is not None else -1} OFFSET {int(offset)}"
        # The page is cut first (inner query), so the per-user subqueries run for its rows only.
        rows = await self._all(
            f"""SELECT users.id, users.name, users.admin, users.created, users.last_activity, users.user_info,
                (SELECT COUNT(*) FROM users {clause}) AS total,
                (SELECT json_group_array(name) FROM (SELECT groups.name FROM group_members
                    JOIN groups ON groups.id = group_members.group_id
                    WHERE group_members.user_id = users.id ORDER BY group_members.group_id)) AS group_names,
                (SELECT json_group_array(name) FROM (SELECT roles.name FROM user_roles
                    JOIN roles ON roles.id = user_roles.role_id
                    WHERE user_roles.user_id = users.id ORDER BY user_roles.role_id)) AS role_names,
                EXISTS (SELECT 1 FROM servers WHERE servers.user_id = users.id) AS has_servers
            FROM (SELECT * FROM users {clause} ORDER BY {order}, users.id{page}) AS users
            ORDER BY {order}, users.id""",
            [*params, *params])
        if not rows:
            total = await self._one(f"SELECT COUNT(*) AS n FROM users {clause}", params)
            return [], total["n"] if total else 0
        # Positional reads of the columns listed above: this loop runs for every row of every page.
        listing = [UserListing(User(r[0], r[1], bool(r[2]), r[3], r[4], json.loads(r[5]) if r[5] else None),
                               _names(r[7]), _names(r[8]), bool(r[9])) for r in rows]
        return listing, rows[0][6]

    async def role_names_of_user_cached(self, user_id: int) -> list[str]:
        """The user's own role names, cached until roles or memberships change (``authz_version``)."""
        cache = self._role_names_cache
        hit = cache.get(user_id)
        if hit is not None and hit[0] == self.authz_version:
            return list(hit[1])
        version = self.authz_version
        names = (await self.role_names_of_users([user_id]))[user_id]
        if len(cache) > 20_000:
            cache.clear()
        cache[user_id] = (version, names)
        return list(names)
