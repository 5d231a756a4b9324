"""Services and servers in the store.

A part of ``Store`` (gateway/store.py), which provides the connections, ``transaction()``, ``_write``,
``_all``, ``_one`` and the cache counters these methods use.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gateway.db.rows import SERVER_SELECT, Conflict, _json, _server, _service
from gateway.vocab import security
from gateway.vocab.models import Server, Service


class ServerStore:
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
