"""Services from ``c.JupyterHub.services``: their proxy routes, and the processes of managed ones.

Vocabulary:
- service route: ``<base_url>services/<name>/`` → the service's ``url``, for every service with a
  ``url`` (config or REST-created). The proxy checks ``access:services`` and then passes the
  caller's own credentials through (see :mod:`gateway.proxy`); a route's ``secret`` is
  unused for services and left empty.
- managed service: one with a ``command``. The gateway runs it (in ``cwd``, in its own session and
  process group) once the gateway listens, with JupyterHub's environment for services plus the
  service's ``environment``; restarts it when it exits (doubling delays, reset after a long run);
  stops it on shutdown (SIGTERM to the group, SIGKILL after STOP_TIMEOUT). Its pid is the service
  model's ``pid`` (0 while not running). Output goes to ``<data_dir>/logs/service-<name>.log``.
- generated token: a managed service without ``api_token`` gets a fresh one at every start of the
  gateway (note "generated at startup"); the plaintext lives only in memory and the process's env.

A config reload (SIGHUP) calls ``apply_settings``: routes follow the store, managed services that
were removed or changed stop, new or changed ones start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pwd
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.config import DEFAULT_ENV_KEEP, Settings
from gateway.spawners import procs
from gateway.store import Store
from gateway.vocab.models import Service
from gateway.wire.routing import Route, service_prefix

log = logging.getLogger("gateway.services")

GENERATED_NOTE = "generated at startup"
STOP_TIMEOUT = 5.0
RESTART_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
STABLE_RUN = 60.0  # a run this long resets the restart delay
LISTEN_WAIT = 30.0  # how long to wait for the gateway's own port before starting services anyway


def service_route(service: Service, base_url: str) -> Route | None:
    """The proxy route of a service with a ``url`` (an http URL; its path, if any, is not used)."""
    parts = urlsplit(service.url)
    if not service.url or parts.scheme != "http" or not parts.hostname:
        return None
    return Route(prefix=service_prefix(base_url, service.name), target=f"http://{parts.netloc}", kind="service",
                 user=None, server_name="", service=service.name, secret="")


class ManagedService:
    """One managed service's process, kept running until ``stop``."""

    def __init__(self, manager: ServiceManager, spec: Mapping[str, Any], service: Service, token: str):
        self.manager = manager
        self.spec = spec
        self.name = service.name
        self.service = service
        self.token = token
        self.proc: asyncio.subprocess.Process | None = None
        self._identity: tuple[int, int, str] | None = None  # (pid, start time, boot id) of the last launch
        self.restarts = 0
        self._stopping = False
        self._task: asyncio.Task | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None and self.proc.returncode is None else 0

    def env(self) -> dict[str, str]:
        settings, spec, name = self.manager.settings, self.spec, self.name
        env = {key: os.environ[key] for key in DEFAULT_ENV_KEEP if key in os.environ}
        prefix = service_prefix(settings.base_url, name)
        public = settings.public_url.rstrip("/")
        access = ["access:services", f"access:services!service={name}"]
        env.update({
            "JUPYTERHUB_SERVICE_NAME": name,
            "JUPYTERHUB_API_TOKEN": self.token,
            "JPY_API_TOKEN": self.token,
            "JUPYTERHUB_API_URL": self.manager.api_url,
            "JUPYTERHUB_BASE_URL": settings.base_url,
            "JUPYTERHUB_CLIENT_ID": self.service.oauth_client_id or f"service-{name}",
            "JUPYTERHUB_OAUTH_CALLBACK_URL": self.service.oauth_redirect_uri or f"{prefix}oauth_callback",
            "JUPYTERHUB_OAUTH_SCOPES": json.dumps(access),
            "JUPYTERHUB_OAUTH_ACCESS_SCOPES": json.dumps(access),
            "JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES": json.dumps(list(self.service.oauth_client_allowed_scopes)),
            "JUPYTERHUB_USER": str(spec.get("user") or ""),
            "JUPYTERHUB_SERVER_NAME": "",
            "JUPYTERHUB_HOST": "",
            "JUPYTERHUB_PUBLIC_HUB_URL": public + settings.hub_prefix if public else "",
            "JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED": "0",
        })
        if self.service.url:
            env["JUPYTERHUB_SERVICE_URL"] = self.service.url
            env["JUPYTERHUB_SERVICE_PREFIX"] = prefix
            env["JUPYTERHUB_PUBLIC_URL"] = public + prefix if public else ""
        if settings.admin_access:
            env["JUPYTERHUB_ADMIN_ACCESS"] = "1"
        env.update({str(k): str(v) for k, v in (spec.get("environment") or {}).items()})
        return env

    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name=f"service {self.name}")

    async def _supervise(self) -> None:
        failures = 0
        while not self._stopping:
            started = time.monotonic()
            try:
                await self._launch()
            except OSError as e:
                log.error("Service %s could not start: %s", self.name, e)
            else:
                status = await self.proc.wait()
                await self.manager.set_pid(self.name, 0)
                if self._stopping:
                    return
                log.error("Service %s exited with status %s", self.name, status)
            failures = 0 if time.monotonic() - started > STABLE_RUN else failures + 1
            await asyncio.sleep(RESTART_DELAYS[min(failures, len(RESTART_DELAYS) - 1)])
            self.restarts += 1

    async def _launch(self) -> None:
        command = [str(c) for c in self.spec["command"]]
        data_dir = Path(self.manager.settings.data_dir).absolute()
        log_fd = procs.open_log(data_dir / "logs" / f"service-{procs.path_component(self.name)}.log")
        kwargs: dict[str, Any] = {}
        user = self.spec.get("user")
        if user and os.geteuid() == 0:
            account = pwd.getpwnam(user)
            kwargs.update(user=account.pw_uid, group=account.pw_gid)
        elif user and user != pwd.getpwuid(os.geteuid()).pw_name:
            log.warning("Service %s: user %r ignored (the gateway does not run as root)", self.name, user)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *command, env=self.env(), cwd=self.spec.get("cwd") or None, stdin=asyncio.subprocess.DEVNULL,
                stdout=log_fd, stderr=log_fd, start_new_session=True, **kwargs)
        finally:
            os.close(log_fd)
        stat = procs.read_stat(self.proc.pid)
        self._identity = (self.proc.pid, stat.start_time if stat else 0, procs.boot_id())
        log.info("Started service %s (pid %d): %s", self.name, self.proc.pid, " ".join(command))
        await self.manager.set_pid(self.name, self.proc.pid)

    async def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it after STOP_TIMEOUT; stop restarting."""
        self._stopping = True
        proc = self.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, ValueError):
                procs.signal_group(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
            except TimeoutError:
                log.warning("Service %s did not stop after SIGTERM; killing it", self.name)
                with contextlib.suppress(ProcessLookupError, ValueError):
                    procs.signal_group(proc.pid, signal.SIGKILL)
                await proc.wait()
        if self._identity is not None:
            with contextlib.suppress(ProcessLookupError, ValueError):
                procs.kill_remnants(*self._identity)  # members that outlived the leader
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.manager.set_pid(self.name, 0)


class ServiceManager:
    """Service routes and managed-service processes (``app[keys.SERVICES]``)."""

    def __init__(self, store: Store, settings: Settings, routes, api_url: str):
        self.store = store
        self.settings = settings
        self.routes = routes
        self.api_url = api_url
        self.managed: dict[str, ManagedService] = {}

    async def set_pid(self, name: str, pid: int) -> None:
        with contextlib.suppress(Exception):  # a store that cannot write must not stop supervision
            if await self.store.get_service(name) is not None:
                await self.store.upsert_service(name, pid=pid)

    def add_route(self, service: Service) -> None:
        route = service_route(service, self.settings.base_url)
        if self.routes is not None and route is not None:
            self.routes.add(route)

    def remove_route(self, name: str) -> None:
        if self.routes is not None:
            self.routes.remove(service_prefix(self.settings.base_url, name))

    async def prepare(self) -> None:
        """Routes for every service with a url; the token and record of every managed service."""
        for service in await self.store.list_services():
            await self.store.upsert_service(service.name, pid=0)  # no process of ours survives a restart
            if service.url:
                if service_route(service, self.settings.base_url) is None:
                    log.warning("Service %s: url %r is not an http URL; not routed", service.name, service.url)
                self.add_route(service)
        for spec in self.settings.services:
            if not spec.get("command"):
                continue
            service = await self.store.get_service(spec["name"])
            if service is not None:
                self.managed[service.name] = ManagedService(self, spec, service, await self._token_for(spec, service))

    async def _token_for(self, spec: Mapping[str, Any], service: Service) -> str:
        for token in await self.store.list_tokens("service", service.id):
            if token.note == GENERATED_NOTE:
                await self.store.delete_token(token.id)  # the previous run's, whose plaintext is gone
        if spec.get("api_token"):
            return str(spec["api_token"])
        _, plaintext = await self.store.create_token("service", service.id, note=GENERATED_NOTE)
        return plaintext

    async def start(self) -> None:
        """Start managed services once the gateway answers on its own port (as JupyterHub, after the hub)."""
        if not self.managed:
            return
        await wait_for_listener(self.settings, LISTEN_WAIT)
        for managed in self.managed.values():
            managed.start()

    async def apply_settings(self, settings: Settings) -> None:
        """After a config reload (SIGHUP; the store is already synchronised): routes follow the services
        in the store; managed services that are gone or changed stop, new or changed ones start."""
        self.settings = settings
        services = {s.name: s for s in await self.store.list_services()}
        if self.routes is not None:
            for route in self.routes.all():
                if route.kind == "service" and (route.service not in services or not services[route.service].url):
                    self.routes.remove(route.prefix)
        for service in services.values():
            if service.url:
                self.add_route(service)
        wanted = {spec["name"]: spec for spec in settings.services if spec.get("command")}
        for name, managed in list(self.managed.items()):
            if wanted.get(name) != managed.spec or name not in services:
                await managed.stop()
                del self.managed[name]
        for name, spec in wanted.items():
            if name not in self.managed and name in services:
                managed = ManagedService(self, spec, services[name], await self._token_for(spec, services[name]))
                self.managed[name] = managed
                managed.start()

    async def close(self) -> None:
        await asyncio.gather(*(m.stop() for m in self.managed.values()), return_exceptions=True)


async def wait_for_listener(settings: Settings, timeout: float) -> bool:
    host = settings.listen_host if settings.listen_host not in ("", "0.0.0.0", "::") else procs.LOOPBACK
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection(host, settings.listen_port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return True
    return False
