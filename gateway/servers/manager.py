"""ServerManager: the lifecycle of every single-user server, in one place (never in handlers).

Vocabulary:
- entry: the in-memory record of one (user, server name): its spawner, its pending action
  (``spawn`` or ``stop``, None when settled), the running start/stop task, and the events of
  the current (or last) start for the progress stream.
- ready: started, answering, routed. ``pending`` and ``ready`` are what the REST API reports.
- secret: the server's own hub token (see ``gateway.servers.making``); at rest it is kept only
  encrypted (cookie-secret key) in the server's state, so a restarted gateway can route to it.

Restart recovery: at start-up every server recorded as running is polled; live ones are routed
again, dead ones marked stopped. Watching: each running server has a task that waits for its
exit (pidfd for local processes), so a server killed from outside is noticed at once; the
proxy also reports backends that refuse connections (``backend_failed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import random
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from gateway.config import Settings
from gateway.servers.entries import Entry, cancel_starts, describe, progress_events, ready_event
from gateway.servers.making import SpawnerMaker
from gateway.spawners import hooks as spawn_hooks
from gateway.spawners.base import ServerSpec, Spawner, SpawnError
from gateway.store import Store, StoreError
from gateway.vocab.models import Server, User
from gateway.vocab.names import valid_display_name, valid_server_name
from gateway.vocab.refusals import AlreadyExists, Busy, Refused
from gateway.vocab.security import CookieCipher
from gateway.vocab.serialize import user_url

NAMED_SERVERS_DISABLED = "Named servers are not enabled."
log = logging.getLogger("gateway.servers")

SLOW_SPAWN_TIMEOUT = 10.0  # JupyterHub's slow_spawn_timeout: POST answers 201 if ready by then, else 202
SLOW_STOP_TIMEOUT = 10.0


class ServerManager:
    def __init__(self, store: Store, settings: Settings, *, cipher: CookieCipher, hub_api_url: str,
                 routes: Any = None, activity: Any = None, metrics: Any = None):
        self.store = store
        self.settings = settings
        self.cipher = cipher
        self.hub_api_url = hub_api_url
        self.routes = routes  # gateway.wire.routing.RouteTable, when the proxy is wired
        self.activity = activity
        self.metrics = metrics
        self.maker = SpawnerMaker(store, settings, hub_api_url=hub_api_url)
        self._entries: dict[tuple[str, str], Entry] = {}
        self._route_servers: dict[str, Entry] = {}  # route prefix -> entry, for activity
        self._closing = False

    def apply_settings(self, settings: Settings) -> None:
        """Use these settings for limits and future starts (SIGHUP); running servers are left alone."""
        self.settings = settings
        self.maker.apply_settings(settings)

    @property
    def plugin_context(self) -> Any:
        """Live plugin spawners (batchspawner's port report finds them here); None without plugins."""
        return self.maker.plugin_context

    def set_authenticator(self, authenticator: Any, auth_state_reader: spawn_hooks.AuthStateReader | None) -> None:
        """The JupyterHub authenticator plugin (or None) spawner plugins see, and how auth_state is read."""
        self.maker.set_authenticator(authenticator, auth_state_reader)

    async def spawner_for_form(self, user: User, server_name: str) -> Spawner:
        """A spawner that is not started: for its options form and options_from_form."""
        return await self.maker.for_form(user, server_name)

    # ------------------------------------------------------------ queries

    def entry(self, user_name: str, server_name: str) -> Entry | None:
        return self._entries.get((user_name, server_name))

    def status(self, user_name: str, server_name: str) -> str | None:
        """'ready', 'spawn', 'stop', or None when stopped."""
        entry = self.entry(user_name, server_name)
        if entry is None:
            return None
        if entry.pending:
            return entry.pending
        return "ready" if entry.ready else None

    def has_active(self, user_name: str) -> bool:
        """Whether any server of the user is running or starting or stopping (from memory, no store)."""
        return any(e.user_name == user_name and (e.ready or e.pending) for e in self._entries.values())

    def pending_count(self) -> int:
        return sum(1 for e in self._entries.values() if e.pending == "spawn")

    def active_count(self) -> int:
        return sum(1 for e in self._entries.values() if e.ready or e.pending)

    def running_count(self) -> int:
        return sum(1 for e in self._entries.values() if e.ready)

    async def list_servers(self, user: User) -> list[Server]:
        return (await self.store.servers_of_users([user.id]))[user.id]


    # ------------------------------------------------------------ start

    def check_named_allowed(self, server_name: str) -> None:
        if server_name and not self.settings.allow_named_servers:
            raise Refused(NAMED_SERVERS_DISABLED)

    async def check_new_server(self, user: User, server_name: str) -> None:
        """Name and limit checks for a server that has no record yet (JupyterHub's messages)."""
        self.check_named_allowed(server_name)
        if "/" in server_name:
            raise Refused(f"Invalid server_name (may not contain '/'): {server_name}")
        if server_name and not valid_server_name(server_name):
            raise Refused(f"Invalid server_name: {server_name!r}")
        limit = self.settings.named_server_limit_per_user
        if server_name and limit and await self.store.count_named_servers(user.id) >= limit:
            raise Refused(f"User {user.name} already has the maximum of {limit} named servers."
                          "  One must be deleted before a new server can be created")

    async def create(self, user: User, server_name: str, *, display_name: str | None = None,
                     user_options: Mapping[str, Any] | None = None) -> Server:
        """PUT: record a named server without starting it."""
        if not server_name:
            raise AlreadyExists(f"User {user.name} already has a default server")
        self.check_named_allowed(server_name)
        if await self.store.get_server(user.id, server_name) is not None:
            raise AlreadyExists(f"User {user.name} already has server {server_name}")
        await self.check_new_server(user, server_name)
        if display_name is not None and not valid_display_name(display_name):
            raise Refused(f"Invalid display_name: {display_name!r}")
        return await self.store.create_server(user.id, server_name, display_name=display_name or "",
                                              user_options=user_options)

    async def start(self, user: User, server_name: str, *, user_options: Mapping[str, Any] | None = None,
                    display_name: str | None = None) -> tuple[Entry, bool]:
        """Begin a start; return its entry at once (pending 'spawn') and whether this call began it.

        JupyterHub's checks and messages: a start already pending is not an error (False)."""
        self.check_named_allowed(server_name)
        entry = self.entry(user.name, server_name)
        name = describe(user.name, server_name)
        if entry is not None and entry.pending == "spawn":
            return entry, False
        if entry is not None and entry.pending:
            raise Refused(f"{name} is pending {entry.pending}")
        if entry is not None and entry.ready:
            if entry.spawner is not None and await entry.spawner.poll() is None:
                raise Refused(f"{name} is already running")
            await self._mark_stopped(entry, "exited")
        server = await self.store.get_server(user.id, server_name)
        if server is None:
            await self.check_new_server(user, server_name)
        if display_name is not None and not valid_display_name(display_name):
            raise Refused(f"Invalid display_name: {display_name!r}")
        self._check_limits()
        if server is None:
            server = await self.store.create_server(user.id, server_name, display_name=display_name or "",
                                                    user_options=user_options)
        else:
            changes: dict[str, Any] = {}
            if user_options is not None:
                changes["user_options"] = dict(user_options)
            if display_name is not None:
                changes["display_name"] = display_name
            if changes:
                server = await self.store.update_server(server.id, **changes) or server
        entry = Entry(user.name, server_name, server.id, user.id, pending="spawn", spawn_started=time.monotonic())
        entry.emit({"progress": 0, "message": "Server requested"})
        self._entries[entry.key] = entry
        entry.task = asyncio.create_task(self._spawn(entry, server), name=f"spawn {name}")
        return entry, True

    def _check_limits(self) -> None:
        limit = self.settings.concurrent_spawn_limit
        if limit and self.pending_count() >= limit:
            low, high = 30, 60
            raise Busy("Too many users trying to log in right now. Try again in 30 seconds.",
                       retry_after=random.randint(low, high))
        active = self.settings.active_server_limit
        if active and self.active_count() >= active:
            raise Busy("Active user limit exceeded. Try again in a few minutes.", retry_after=random.randint(30, 60))

    async def _spawn(self, entry: Entry, server: Server) -> None:
        name = describe(entry.user_name, entry.server_name)
        spawner: Spawner | None = None
        try:
            secret = await self.maker.new_secret(server)
            separate = self.maker.spawner_class.separate_route_secret
            route_secret = await self.maker.new_route_secret(server) if separate else secret
            user = await self.store.get_user_by_id(server.user_id)
            groups = tuple((await self.store.groups_of_users([server.user_id])).get(server.user_id, []))
            spec = self.maker.spec(server, secret, route_secret=route_secret, user=user, groups=groups)
            spawner = self.maker.make(spec)
            entry.spawner = spawner
            forward = asyncio.create_task(self._forward_progress(entry, spawner))
            try:
                url = await asyncio.wait_for(self.maker.start(spawner), spawner.start_timeout + 5)
            finally:
                forward.cancel()
            state = {"spawner": spawner.get_state(), "secret": self.cipher.encrypt(route_secret)}
            now = time.time()
            await self.store.update_server(entry.server_id, url=url, state=state, started=now, last_activity=now)
            self._route(entry, url, route_secret)
            entry.ready, entry.pending, entry.failure, entry.failure_status = True, None, None, 500
            entry.emit(ready_event(self.settings.base_url, entry))
            entry.watcher = asyncio.create_task(self._watch(entry, spawner), name=f"watch {name}")
            self._observe_spawn("success", entry)
            log.info("Server %s ready at %s", name, url)
        except asyncio.CancelledError:
            await self._abandon(entry, spawner, "Spawn cancelled")
            self._observe_spawn("cancelled", entry)
            raise
        except spawn_hooks.UserOptionsError as e:
            log.warning("Server %s: user options refused: %s", name, e)
            entry.failure_status = 400
            await self._abandon(entry, spawner, f"Spawn failed: {e}")
            self._observe_spawn("failure", entry)
        except (SpawnError, TimeoutError, OSError, StoreError) as e:
            message = e.message if isinstance(e, SpawnError) else (
                f"Server did not start within {spawner.start_timeout if spawner else 0:g} seconds"
                if isinstance(e, TimeoutError) else str(e))
            log.warning("Server %s failed to start: %s", name, message.splitlines()[0] if message else e)
            await self._abandon(entry, spawner, f"Spawn failed: {message}")
            self._observe_spawn("failure", entry)
        except Exception as e:  # a hook's or a bug's error must not leave the entry pending forever
            log.exception("Unexpected error starting %s", name)
            await self._abandon(entry, spawner, f"Spawn failed: {type(e).__name__}: {e}")
            self._observe_spawn("failure", entry)

    def _observe_spawn(self, status: str, entry: Entry) -> None:
        if self.metrics is not None:
            self.metrics.observe_spawn(status, time.monotonic() - entry.spawn_started)

    async def _forward_progress(self, entry: Entry, spawner: Spawner) -> None:
        async for event in spawner.progress():
            event = {k: v for k, v in event.items() if k != "ready"}
            entry.emit(event)

    async def _abandon(self, entry: Entry, spawner: Spawner | None, message: str) -> None:
        """A start that did not finish: stop what it started, forget the secret, report the failure."""
        if spawner is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(spawner.stop(now=True))
            with contextlib.suppress(Exception):
                await asyncio.shield(spawner.after_stop())
        with contextlib.suppress(StoreError):
            await self.store.delete_tokens(server_id=entry.server_id)
            await self.store.update_server(entry.server_id, url="", state={}, started=None)
        entry.ready, entry.pending, entry.spawner = False, None, None
        entry.failure = message
        entry.emit({"progress": 100, "failed": True, "message": message,
                    "html_message": html.escape(message).replace("\n", "<br>")})

    async def wait(self, entry: Entry, timeout: float) -> None:
        """Wait until the entry's current action settles or ``timeout`` passes."""
        task = entry.task
        if task is None or task.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # our caller is being cancelled (client gone, shutdown bound): let it end
            # else the action itself was cancelled (a stop cancelled the start): settled

    # ------------------------------------------------------------ routing

    def _route(self, entry: Entry, url: str, secret: str) -> None:
        prefix = user_url(self.settings.base_url, entry.user_name, entry.server_name)
        self._route_servers[prefix] = entry
        if self.routes is not None:
            from gateway.wire.routing import Route

            self.routes.add(Route(prefix=prefix, target=url, kind="user", user=entry.user_name,
                                  server_name=entry.server_name, service=None, secret=secret))

    def _unroute(self, entry: Entry) -> None:
        prefix = user_url(self.settings.base_url, entry.user_name, entry.server_name)
        self._route_servers.pop(prefix, None)
        if self.routes is not None:
            self.routes.remove(prefix)

    def note_activity(self, prefix: str) -> None:
        """Called by the proxy for each request or websocket message: memory only."""
        entry = self._route_servers.get(prefix)
        if entry is not None and self.activity is not None:
            self.activity.note_server(entry.server_id, entry.user_id)

    def backend_failed(self, prefix: str) -> None:
        """The proxy could not reach a backend: check it now rather than at the next poll."""
        entry = self._route_servers.get(prefix)
        if entry is not None and entry.ready and not entry.pending:
            asyncio.create_task(self._check(entry))

    async def _check(self, entry: Entry) -> None:
        if entry.spawner is not None and await entry.spawner.poll() is not None and entry.ready:
            await self._mark_stopped(entry, "unreachable")

    # ------------------------------------------------------------ watching

    async def _watch(self, entry: Entry, spawner: Spawner) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            status = await spawner.wait_for_exit()
            if entry.spawner is spawner and entry.ready and entry.pending is None:
                log.warning("Server %s exited on its own (status %s)", describe(*entry.key), status)
                await self._mark_stopped(entry, "exited")

    async def _mark_stopped(self, entry: Entry, why: str) -> None:
        """Route gone first (no traffic to a dead port), then the store, then memory: readers of the
        API never see 'stopped' before the store says so."""
        self._unroute(entry)
        if entry.watcher is not None and entry.watcher is not asyncio.current_task():
            entry.watcher.cancel()
        entry.watcher = None
        spawner = entry.spawner
        with contextlib.suppress(StoreError):
            await self.store.delete_tokens(server_id=entry.server_id)
            await self.store.update_server(entry.server_id, url="", state={}, started=None)
        entry.ready, entry.spawner = False, None
        entry.notify()
        if spawner is not None and why != "gone":
            with contextlib.suppress(Exception):
                await spawner.stop(now=True)  # lets a plugin clear its state (a cancelled job's id)
            await spawner.after_stop()

    async def poll_all(self) -> None:
        """One pass of the poll loop: catch servers whose exit the watchers could not see."""
        for entry in list(self._entries.values()):
            if entry.ready and not entry.pending and entry.spawner is not None:
                if await entry.spawner.poll() is not None:
                    await self._mark_stopped(entry, "poll")

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.spawner_poll_interval)
            try:
                await self.poll_all()
            except Exception:
                log.exception("Error polling servers")

    async def check_routes(self) -> None:
        """Re-add routes for ready servers and drop routes of stopped ones (POST /hub/api/proxy)."""
        await self.poll_all()
        if self.routes is None:
            return
        for entry in self._entries.values():
            if entry.ready and not entry.pending:
                server = await self.store.get_server_by_id(entry.server_id)
                if server is not None and server.url:
                    self._route(entry, server.url, self.cipher.decrypt(server.state.get("secret", "")) or "")

    # ------------------------------------------------------------ stop

    async def stop(self, user: User, server_name: str, *, remove: bool = False) -> Entry | None:
        """Begin stopping (cancelling a pending start); return the entry whose task to wait on, or None if nothing ran."""
        entry = self.entry(user.name, server_name)
        if entry is None:
            if remove:
                await self._remove(user, server_name)
            return None
        if entry.pending == "stop":
            return entry
        if not entry.ready and not entry.pending:  # already stopped: nothing to do
            if remove:
                await self._remove(user, server_name)
            return None
        if entry.pending == "spawn" and entry.task is not None:
            entry.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await entry.task
        entry.pending = "stop"
        entry.notify()
        entry.task = asyncio.create_task(self._stop(entry, user, remove), name=f"stop {describe(*entry.key)}")
        return entry

    async def _stop(self, entry: Entry, user: User, remove: bool) -> None:
        started = time.monotonic()
        spawner = entry.spawner
        self._unroute(entry)
        if entry.watcher is not None:
            entry.watcher.cancel()
            entry.watcher = None
        try:
            if spawner is not None:
                await spawner.stop()
                await spawner.after_stop()
        except Exception:
            log.exception("Error stopping %s", describe(*entry.key))
        finally:
            entry.ready, entry.pending, entry.spawner = False, None, None
            with contextlib.suppress(StoreError):
                await self.store.delete_tokens(server_id=entry.server_id)
                # as JupyterHub deletes the server's OAuth client: browser logins to it end with it
                await self.store.delete_tokens(client_id=ServerSpec(entry.user_name, entry.server_name).client_id)
                await self.store.update_server(entry.server_id, url="", state={}, started=None)
            if remove:
                await self._remove(user, entry.server_name)
            entry.notify()
            if self.metrics is not None:
                self.metrics.observe_stop(time.monotonic() - started)
            log.info("Server %s stopped", describe(*entry.key))

    async def _remove(self, user: User, server_name: str) -> None:
        server = await self.store.get_server(user.id, server_name)
        if server is not None:
            await self.store.delete_server(server.id)
        self._entries.pop((user.name, server_name), None)

    async def stop_all(self, user: User) -> None:
        entries = [e for e in self._entries.values() if e.user_name == user.name]
        stopping = [await self.stop(user, e.server_name) for e in entries]
        await asyncio.gather(*(self.wait(e, 60) for e in stopping if e is not None))

    async def stop_all_servers(self) -> None:
        users = {e.user_name for e in self._entries.values() if e.ready or e.pending}
        for name in users:
            user = await self.store.get_user(name)
            if user is not None:
                await self.stop_all(user)

    def forget_user(self, user_name: str) -> None:
        for key in [k for k in self._entries if k[0] == user_name]:
            entry = self._entries.pop(key)
            self._unroute(entry)

    async def rename(self, user: User, old: str, new: str) -> None:
        entry = self._entries.pop((user.name, old), None)
        if entry is not None:
            entry.server_name = new
            self._entries[(user.name, new)] = entry

    # ------------------------------------------------------------ progress

    async def progress(self, user_name: str, server_name: str) -> AsyncIterator[dict[str, Any]]:
        """Events of the current start (all of them, from the first), ending with ready or failed."""
        entry = self.entry(user_name, server_name)
        if entry is not None:
            async for event in progress_events(entry, self.settings.base_url):
                yield event

    # ------------------------------------------------------------ lifecycle

    async def recover(self) -> None:
        """After a (re)start: adopt servers that kept running, mark the others stopped."""
        for server in await self.store.running_servers():
            state = server.state or {}
            secret = self.cipher.decrypt(state.get("secret", "")) or ""
            entry = Entry(server.user_name, server.name, server.id, server.user_id)
            spawner = self.maker.make(self.maker.spec(server, secret), state.get("spawner") or {})
            alive = bool(secret) and await spawner.poll() is None
            self._entries[entry.key] = entry
            if alive:
                entry.spawner, entry.ready = spawner, True
                entry.events = [ready_event(self.settings.base_url, entry)]
                self._route(entry, server.url, secret)
                entry.watcher = asyncio.create_task(self._watch(entry, spawner))
                log.info("Found running server %s at %s", describe(*entry.key), server.url)
            else:
                log.info("Server %s is no longer running", describe(*entry.key))
                await self._mark_stopped(entry, "gone")
        # servers that were starting when the gateway died never finished: nothing to adopt
        for server in await self.store.all_servers():
            if not server.url and server.started is not None:
                await self.store.update_server(server.id, started=None)

    async def run(self) -> None:
        self._poller = asyncio.create_task(self._poll_loop(), name="server-poll")

    async def close(self) -> None:
        self._closing = True
        self._poller.cancel()
        pending = [e.task for e in self._entries.values() if e.task is not None and not e.task.done()]
        await cancel_starts([e for e in self._entries.values() if e.pending == "spawn" and e.task is not None])
        if self.settings.cleanup_servers:
            log.info("Stopping all servers (cleanup_servers)")
            await self.stop_all_servers()
        for entry in self._entries.values():
            if entry.watcher is not None:
                entry.watcher.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
