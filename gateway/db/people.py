"""Users, groups and roles in the store.

A part of ``Store`` (gateway/store.py), which provides the connections, ``transaction()``, ``_write``,
``_all``, ``_one`` and the cache counters these methods use.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Unpack

from gateway.db.rows import (
    Conflict,
    UserFilters,
    UserListing,
    _group,
    _json,
    _limit_offset,
    _names,
    _role,
    _user,
    _user_query,
)
from gateway.vocab.models import Group, Role, User


class PeopleStore:
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
        return await self._count_users("", [])

    async def count_active_users(self, since: float) -> int:
        """Users whose last_activity is at or after ``since`` (for the active-users metric)."""
        return await self._count_users("WHERE last_activity >= ?", [since])

    async def list_users(self, *, offset: int = 0, limit: int | None = None,
                         **filters: Unpack[UserFilters]) -> tuple[list[User], int]:
        """A page of users and the total matching (filters: see ``_user_query``)."""
        clause, params, order = _user_query(**filters)
        total = await self._count_users(clause, params)
        page = _limit_offset(offset, limit)
        rows = await self._all(f"SELECT * FROM users {clause} ORDER BY {order}, users.id{page}", params)
        return [_user(r) for r in rows], total

    async def _count_users(self, clause: str, params: list[Any]) -> int:
        """How many users the WHERE ``clause`` ('' for all) matches."""
        row = await self._one(f"SELECT COUNT(*) AS n FROM users {clause}", params)
        return row["n"] if row else 0

    async def set_password_hash(self, user_id: int, password_hash: str | None) -> None:
        await self._write("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))

    async def get_password_hash(self, name: str) -> str | None:
        row = await self._one("SELECT password_hash FROM users WHERE name = ?", (name,))
        return row["password_hash"] if row else None

    async def count_users_with_password(self) -> int:
        return await self._count_users("WHERE password_hash IS NOT NULL", [])

    async def set_encrypted_auth_state(self, user_id: int, blob: bytes | None) -> None:
        await self._write("UPDATE users SET encrypted_auth_state = ? WHERE id = ?", (blob, user_id))

    async def get_encrypted_auth_state(self, name: str) -> bytes | None:
        row = await self._one("SELECT encrypted_auth_state FROM users WHERE name = ?", (name,))
        return row["encrypted_auth_state"] if row else None

    async def any_encrypted_auth_state(self) -> bytes | None:
        """One stored auth_state (to check at start that the configured keys still decrypt them)."""
        row = await self._one("SELECT encrypted_auth_state FROM users WHERE encrypted_auth_state IS NOT NULL "
                              "ORDER BY id LIMIT 1")
        return row["encrypted_auth_state"] if row else None

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

    async def _names_by_id(self, query: str, ids: Iterable[int]) -> dict[int, list[str]]:
        """The names ``query`` finds for each of ``ids``, in its order. ``query`` selects (id, name) rows;
        ``{marks}`` in it stands for the ids' placeholders (filled 500 at a time)."""
        ids = list(dict.fromkeys(ids))
        found: dict[int, list[str]] = {i: [] for i in ids}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for row in await self._all(query.format(marks=",".join("?" * len(chunk))), chunk):
                found[row[0]].append(row[1])
        return found

    async def group_member_names(self, group_ids: Iterable[int]) -> dict[int, list[str]]:
        return await self._names_by_id(
            "SELECT group_members.group_id, users.name FROM group_members JOIN users ON users.id = group_members.user_id "
            "WHERE group_id IN ({marks}) ORDER BY users.id", group_ids)

    async def groups_of_users(self, user_ids: Iterable[int]) -> dict[int, list[str]]:
        return await self._names_by_id(
            "SELECT group_members.user_id, groups.name FROM group_members JOIN groups ON groups.id = group_members.group_id "
            "WHERE user_id IN ({marks}) ORDER BY groups.id", user_ids)

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
        return await self._names_by_id(
            "SELECT user_roles.user_id, roles.name FROM user_roles JOIN roles ON roles.id = user_roles.role_id "
            "WHERE user_id IN ({marks}) ORDER BY roles.id", user_ids)

    async def role_names_of_groups(self, group_ids: Iterable[int]) -> dict[int, list[str]]:
        return await self._names_by_id(
            "SELECT group_roles.group_id, roles.name FROM group_roles JOIN roles ON roles.id = group_roles.role_id "
            "WHERE group_id IN ({marks}) ORDER BY roles.id", group_ids)

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

    async def list_users_detailed(self, *, offset: int = 0, limit: int | None = None,
                                  **filters: Unpack[UserFilters]) -> tuple[list[UserListing], int]:
        """``list_users`` with each user's group and role names and whether it has server records, and the
        total, in one statement: a page of the REST user list costs one database round trip."""
        clause, params, order = _user_query(**filters)
        page = _limit_offset(offset, limit)
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
            return [], await self._count_users(clause, params)
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
