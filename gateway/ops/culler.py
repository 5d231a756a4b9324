"""Built-in idle culling, with jupyterhub-idle-culler's semantics, run inside the gateway.

Settings (``c.JupyterHub.*``): ``cull_idle_timeout`` (seconds; 0 turns culling off),
``cull_interval`` (seconds between passes), ``cull_max_age`` (0: no limit), ``cull_users``.

Vocabulary:
- *last activity* of a server: the freshest of its stored ``last_activity`` and the activity the
  proxy noted in memory but has not flushed yet; a server with none counts from ``started``.
- *inactive*: now minus last activity. *age*: now minus ``started`` (servers) or ``created`` (users).

One pass (as jupyterhub-idle-culler does through the API):
- a ready server (not pending) is stopped when inactive >= timeout, or when ``cull_max_age`` is
  set and age >= max age even if it is active. Admins' servers are culled too (the culler's
  default). Named servers are stopped, not removed. Stops go through the ServerManager.
- with ``cull_users``: a user none of whose servers is still running (after this pass's stops
  finished) is deleted when inactive >= timeout, or older than max age; admins never.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.config import Settings
from gateway.authenticators.builtin import Authenticator
from gateway.errors import ApiError
from gateway.ops.activity import ActivityRecorder
from gateway.ops.accounts import remove_user
from gateway.servers import SLOW_STOP_TIMEOUT, ServerManager, describe
from gateway.store import Store, StoreError
from gateway.vocab.models import Server

log = logging.getLogger("gateway.culler")


@dataclass
class CullReport:
    """What one pass did: server full names ('alice/', 'alice/nb') stopped, user names deleted."""

    stopped: list[str] = field(default_factory=list)
    deleted_users: list[str] = field(default_factory=list)


def _latest(*times: float | None) -> float | None:
    present = [t for t in times if t is not None]
    return max(present) if present else None


class IdleCuller:
    """Culls idle servers (and users) every ``cull_interval`` seconds while the gateway runs."""

    def __init__(self, settings: Callable[[], Settings], store: Store, servers: ServerManager,
                 activity: ActivityRecorder | None = None, authenticator: Authenticator | None = None):
        self._settings = settings
        self.store = store
        self.servers = servers
        self.activity = activity
        self.authenticator = authenticator
        self.passes = 0  # completed passes, for tests and the debug log
        self._task: asyncio.Task | None = None

    @property
    def settings(self):
        return self._settings()  # read each pass: SIGHUP may have changed the timeouts

    # ------------------------------------------------------------ one pass

    async def cull_once(self, now: float | None = None) -> CullReport:
        settings = self.settings
        timeout, max_age = settings.cull_idle_timeout, settings.cull_max_age
        report = CullReport()
        if not timeout:
            return report
        now = time.time() if now is None else now
        store, servers = self.store, self.servers
        stopping = []
        blocked_users: set[str] = set()  # users with a server still running after this pass
        refreshed: set[int] = set()
        for server in await store.running_servers():
            status = servers.status(server.user_name, server.name)
            if status is None:
                continue  # recorded but not running (yet): nothing to cull
            if status != "ready":
                log.debug("Not culling server %s with pending %s", server.full_name, status)
                blocked_users.add(server.user_name)
                continue
            why = self._server_reason(server, now, timeout, max_age)
            if why is None:
                blocked_users.add(server.user_name)
                continue
            user = await store.get_user_by_id(server.user_id)
            if user is None:
                continue
            log.info("Culling server %s (%s)", describe(server.user_name, server.name), why)
            if self.authenticator is not None and user.id not in refreshed:
                refreshed.add(user.id)  # refresh_pre_stop, as for every stop: once per user and pass
                await self.authenticator.refresh_for_stop(user)
                if servers.status(server.user_name, server.name) != "ready":
                    continue  # it changed while the refresh ran
            entry = await servers.stop(user, server.name)
            stopping.append((server, entry))
        for server, entry in stopping:
            if entry is not None:
                await servers.wait(entry, SLOW_STOP_TIMEOUT)
            if servers.status(server.user_name, server.name) is None:
                report.stopped.append(server.full_name)
            else:
                log.warning("Server %s is slow to stop", describe(server.user_name, server.name))
                blocked_users.add(server.user_name)
        if settings.cull_users:
            report.deleted_users = await self._cull_users(now, timeout, max_age, blocked_users)
        return report

    def _server_reason(self, server: Server, now: float, timeout: int, max_age: int) -> str | None:
        activity = self.activity
        pending = activity.pending_server_activity(server.id) if activity is not None else None
        last = _latest(server.last_activity, pending) or server.started
        age = now - server.started if server.started is not None else None
        inactive = now - last if last is not None else None
        if inactive is not None and inactive >= timeout:
            return f"inactive for {inactive:.0f}s"
        if max_age and age is not None and age >= max_age:
            return f"age {age:.0f}s, inactive for {inactive or 0:.0f}s"
        return None

    async def _cull_users(self, now: float, timeout: int, max_age: int, blocked: set[str]) -> list[str]:
        store, servers = self.store, self.servers
        activity = self.activity
        deleted = []
        offset = 0
        while True:  # bounded: each page moves offset forward by its size
            users, total = await store.list_users(offset=offset, limit=500, state="inactive")
            if not users:
                break
            offset += len(users)
            for user in users:
                if user.admin or user.name in blocked or servers.has_active(user.name):
                    continue
                pending = activity.pending_user_activity(user.id) if activity is not None else None
                last = _latest(user.last_activity, pending) or user.created
                inactive, age = now - last, now - user.created
                if inactive >= timeout:
                    why = f"inactive for {inactive:.0f}s"
                elif max_age and age >= max_age:
                    why = f"age {age:.0f}s, inactive for {inactive:.0f}s"
                else:
                    continue
                log.info("Culling user %s (%s)", user.name, why)
                try:
                    await remove_user(store, servers, self.authenticator, user)
                except ApiError:  # the authenticator refused (logged): kept, tried again next pass
                    continue
                deleted.append(user.name)
                offset -= 1  # the next page shifted down by one
            if offset >= total:
                break
        return deleted

    # ------------------------------------------------------------ loop

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(max(1, self.settings.cull_interval))
            if not self.settings.cull_idle_timeout:
                continue
            try:
                report = await self.cull_once()
            except StoreError as e:
                log.warning("Idle culling skipped: %s", e)
            except Exception:
                log.exception("Error in idle culling")
            else:
                if report.stopped or report.deleted_users:
                    log.info("Culled %d server(s), %d user(s)", len(report.stopped), len(report.deleted_users))
            self.passes += 1

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="idle-culler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
