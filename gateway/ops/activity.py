"""Activity: who and what was used, noted in memory on the hot paths and written to the store in batches.

Proxied requests and token uses call ``note_*`` (a dict assignment, no I/O); a background task
flushes every ``interval`` seconds, so a busy hub does not write the database per request.
Timestamps only move forward in the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from gateway.store import Store, StoreError
from gateway.vocab.models import Token, User

log = logging.getLogger("gateway.activity")


class ActivityRecorder:
    def __init__(self, store: Store, interval: float):
        self.store = store
        self.interval = interval
        self._tokens: dict[int, float] = {}
        self._users: dict[int, float] = {}
        self._servers: dict[int, float] = {}
        self._flushing_users: dict[int, float] = {}
        self._flushing_servers: dict[int, float] = {}
        self._task: asyncio.Task | None = None

    def note_token(self, token: Token, user: User | None) -> None:
        now = time.time()
        self._tokens[token.id] = now
        # A server's own token acting for it is not the user being active (JupyterHub's rule).
        if user is not None and token.server_id is None:
            self._users[user.id] = now

    def note_user(self, user_id: int, when: float | None = None) -> None:
        self._users[user_id] = max(when or time.time(), self._users.get(user_id, 0))

    def note_server(self, server_id: int, user_id: int, when: float | None = None) -> None:
        when = when or time.time()
        self._servers[server_id] = max(when, self._servers.get(server_id, 0))
        self._users[user_id] = max(when, self._users.get(user_id, 0))

    def pending_server_activity(self, server_id: int) -> float | None:
        """Activity noted but not yet in the store (including a flush under way), so readers
        (culling) see the freshest value."""
        return _latest(self._servers.get(server_id), self._flushing_servers.get(server_id))

    def pending_user_activity(self, user_id: int) -> float | None:
        return _latest(self._users.get(user_id), self._flushing_users.get(user_id))

    async def flush(self) -> None:
        tokens, users, servers = self._tokens, self._users, self._servers
        self._tokens, self._users, self._servers = {}, {}, {}
        self._flushing_users, self._flushing_servers = users, servers
        try:
            await self.store.touch_tokens(tokens)
            await self.store.touch_users(users)
            await self.store.touch_servers(servers)
        except StoreError as e:
            log.warning("Could not record activity: %s", e)
        finally:
            self._flushing_users, self._flushing_servers = {}, {}

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.flush()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="activity-flush")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()


def _latest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None or a >= b else b
