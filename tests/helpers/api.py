"""Helpers for the REST API tests: calls that pin the error shape, tokens with exact scopes, store snapshots.

- ``call(hub, method, path, ...)``: ``hub.api`` plus a check that every error answer is JupyterHub's
  ``{"status": N, "message": str|null}`` JSON with the API's CSP header.
- ``token_with(hub, name, scopes)``: a token of user ``name`` holding ``scopes`` (granted to the user
  through a role of its own, since a token never holds more than its owner).
- ``snapshot(hub)``: every table of the database, read through a separate read-only connection,
  without activity timestamps (the activity flusher moves those); equal snapshots = nothing changed.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Sequence
from typing import Any

from gateway import keys

_roles = itertools.count()


def assert_error_shape(r: Any) -> None:
    assert r.headers["Content-Type"].startswith("application/json"), (r.status, r.headers, r.text)
    assert isinstance(r.body, dict) and set(r.body) == {"status", "message"}, r.text
    assert r.body["status"] == r.status
    assert r.body["message"] is None or isinstance(r.body["message"], str)
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-JupyterHub-Version"] == "6.1.1"


async def call(hub, method: str, path: str, **kwargs: Any):
    r = await hub.api(method, path, **kwargs)
    if r.status >= 400 and method != "HEAD":  # a HEAD answer has no body
        assert_error_shape(r)
    return r


async def expect(hub, method: str, path: str, status: int, message: Any = ..., **kwargs: Any):
    """Call and assert the status (and, when given, the exact error message)."""
    r = await call(hub, method, path, **kwargs)
    assert r.status == status, (method, path, r.status, r.text[:500])
    if message is not ...:
        assert r.body["message"] == message, r.body
    return r


async def token_with(hub, name: str, scopes: Sequence[str], *, admin: bool = False) -> str:
    user = await hub.store.get_user(name) or await hub.new_user(name, admin=admin)
    role = await hub.store.upsert_role(f"test-role-{next(_roles)}", "granted by a test", list(scopes))
    await hub.store.grant_role(role.id, user_id=user.id)
    return await hub.new_token(name, scopes=list(scopes))


def snapshot(hub) -> dict[str, list[str]]:
    db = sqlite3.connect(f"file:{hub.store.path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        state = {}
        for table in tables:
            cursor = db.execute(f"SELECT * FROM {table}")
            columns = [d[0] for d in cursor.description]
            keep = [i for i, c in enumerate(columns) if c != "last_activity"]
            state[table] = sorted(repr(tuple(row[i] for i in keep)) for row in cursor)
        return state
    finally:
        db.close()


async def service_token_with(hub, name: str, scopes: Sequence[str]) -> str:
    """A token of a (new) service holding ``scopes``: services have no self scopes on users."""
    service, _ = await hub.store.upsert_service(name)
    role = await hub.store.upsert_role(f"test-role-{next(_roles)}", "granted by a test", list(scopes))
    await hub.store.grant_role(role.id, service_id=service.id)
    return await hub.new_token(name, scopes=list(scopes), service=True)


async def running(hub, user_name: str, server_name: str = ""):
    """A really running server (the fake single-user server), started through the ServerManager."""
    user = await hub.store.get_user(user_name) or await hub.new_user(user_name)
    manager = hub.app[keys.SERVERS]
    entry, _ = await manager.start(user, server_name)
    await manager.wait(entry, 30)
    assert entry.ready, entry.failure
    return await hub.store.get_server(user.id, server_name)
