"""JupyterHub spawner plugins (batchspawner, kubespawner, a class in the config file), run unchanged.

The only module that imports ``jupyterhub``: a gateway without plugins never loads it.

Vocabulary:
- plugin: an instance of the operator's ``jupyterhub.spawner.Spawner`` subclass, built with the
  traitlets config so ``c.SlurmSpawner.*``, ``c.BatchSpawnerBase.*``, ``c.Spawner.*`` reach it.
- adapter (PluginSpawner): gateway's Spawner interface around one plugin; the ServerManager
  cannot tell it from the local spawner.
- shims: what JupyterHub hands a spawner (``user``, ``hub``, ``orm_spawner``, ``db``), made from
  gateway's own records. ``server`` is JupyterHub's in-memory ``objects.Server``.
- route secret: what the proxy presents to the plugin's server (``JUPYTER_TOKEN``); a token that
  only grants access to that one server, so the server's own API token (activity, port report)
  never crosses the network with proxied requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import importlib
import logging
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
from jupyterhub import orm
from jupyterhub.objects import Hub
from jupyterhub.spawner import Spawner as HubSpawner
from traitlets.config import Config, Configurable

from gateway.spawners.base import ServerSpec, SpawnError, Spawner, SpawnerOptions
from gateway.spawners import hooks

log = logging.getLogger("gateway.spawners.plugin")

WATCH_INTERVAL_MAX = 10.0  # seconds between exit checks; proxy failures trigger earlier checks


# ------------------------------------------------------------------ loading


def load_spawner_class(value: Any) -> type:
    """An entry-point name (``jupyterhub.spawners``), a dotted import path, or a class."""
    if isinstance(value, type):
        cls = value
    else:
        name = str(value)
        found = [ep for ep in entry_points(group="jupyterhub.spawners") if ep.name == name]
        if found:
            cls = found[0].load()
        elif "." in name:
            module, _, attr = name.rpartition(".")
            try:
                cls = getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError) as exc:
                raise ValueError(f"cannot import {name!r}: {exc}") from None
        else:
            raise ValueError(f"{name!r} is neither a jupyterhub.spawners entry point nor an import path")
    if not (isinstance(cls, type) and issubclass(cls, HubSpawner)):
        raise ValueError(f"{cls!r} is not a subclass of jupyterhub.spawner.Spawner")
    return cls


def config_sections(cls: type) -> list[str]:
    """The config sections a plugin reads: its class and its configurable parents, base first."""
    return [k.__name__ for k in reversed(cls.__mro__) if isinstance(k, type) and issubclass(k, Configurable)
            and k is not Configurable]


def unknown_keys(cls: type, raw: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Keys in the plugin's sections that it has no config trait for (traitlets would only warn)."""
    names = set(cls.class_trait_names(config=True))
    return [f"{section}.{key}" for section in config_sections(cls) for key in raw.get(section, {})
            if key not in names]


# ------------------------------------------------------------------ shims


class _Group:
    def __init__(self, name: str):
        self.name = name


class PluginUser:
    """What plugins read as ``spawner.user``."""

    def __init__(self, spec: ServerSpec, auth_state_reader: hooks.AuthStateReader | None,
                 spawners: dict[str, HubSpawner]):
        self.name = spec.user
        self.id = spec.user_id
        self.admin = spec.user_admin
        self.escaped_name = quote(spec.user, safe="@~")
        self.base_url = self.url = f"{spec.base_url}user/{self.escaped_name}/"
        self.groups = [_Group(g) for g in spec.user_groups]
        self.spawners = spawners
        self._auth_state_reader = auth_state_reader
        self._hub_prefix = spec.hub_url_base or spec.base_url + "hub/"

    @property
    def spawner(self) -> HubSpawner | None:
        return self.spawners.get("")

    async def get_auth_state(self) -> Mapping[str, Any] | None:
        return await hooks.read_auth_state(self._auth_state_reader, self.name)

    def server_url(self, server_name: str = "") -> str:
        return self.url + (quote(server_name, safe="@~") + "/" if server_name else "")

    def progress_url(self, server_name: str = "") -> str:
        tail = f"servers/{quote(server_name, safe='@~')}/progress" if server_name else "server/progress"
        return f"{self._hub_prefix}api/users/{self.escaped_name}/{tail}"

    def __repr__(self) -> str:
        return f"<User {self.name}>"


class _OrmSpawner:
    """The slice of JupyterHub's orm.Spawner that Spawner's properties read (name, server, ...)."""

    def __init__(self, spec: ServerSpec, server: orm.Server):
        self.name = spec.server_name
        self.display_name = spec.display_name
        self.server = server
        self.user_options = dict(spec.user_options or {})
        self.state: dict[str, Any] = {}
        self.last_activity = None
        self.started = None


class _Db:
    """``spawner.db``: batchspawner commits after start; there is nothing to commit here."""

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass


def make_hub(spec: ServerSpec) -> Hub:
    """JupyterHub's Hub object: api_url follows hub_connect_url when one is set."""
    parts = urlsplit(spec.hub_api_url)
    hub = Hub(proto=parts.scheme or "http", ip=parts.hostname or "127.0.0.1", port=parts.port or 80,
              base_url=spec.hub_url_base or spec.base_url + "hub/", public_host=spec.public_host)
    return hub


# ------------------------------------------------------------------ the adapter


class PluginSpawner(Spawner):
    """gateway's Spawner interface around one JupyterHub spawner plugin.

    Subclassed per configuration by :func:`plugin_spawner_class`, which binds the plugin class,
    its traitlets config and the shared context (store, live plugins, authenticator).
    """

    plugin_class: type[HubSpawner] = HubSpawner
    plugin_config: Config = Config()
    context: PluginContext
    stop_timeout = 60.0  # Gateway.plugin_stop_timeout: a stop() that hangs is given up after this
    separate_route_secret = True  # the ServerManager mints a route secret (see module docstring)

    def __init__(self, options: SpawnerOptions, spec: ServerSpec, state: Mapping[str, Any] | None = None):
        self._url = ""
        self._active = False  # started or adopted, and not yet stopped: only then is stop() passed on
        spawners = self.context.user_spawners(spec.user)
        orm_server = orm.Server(proto="http", ip="", port=0, base_url=spec.server_prefix, cookie_name="")
        self.orm_spawner = _OrmSpawner(spec, orm_server)
        self.plugin = self.plugin_class(
            user=PluginUser(spec, self.context.auth_state_reader, spawners),
            hub=make_hub(spec),
            authenticator=self.context.authenticator,
            config=self.plugin_config,
            orm_spawner=self.orm_spawner,
            _deprecated_db_session=_Db(),
            db=_Db(),
            oauth_client_id=spec.client_id,
            cookie_host_prefix_enabled=spec.cookie_host_prefix_enabled,
            public_url=spec.public_url,
            public_hub_url=spec.public_hub_url,
            user_options=dict(spec.user_options or {}),
            admin_access=spec.admin_access,
        )
        self.plugin.api_token = spec.api_token
        if spec.route_secret:  # plain jupyter-server reads it; jupyterhub-singleuser asks the hub about it
            self.plugin.environment = {**self.plugin.environment, "JUPYTER_TOKEN": spec.route_secret}
        super().__init__(options, spec, state)

    # ---- gateway's Spawner interface
    @property
    def url(self) -> str:
        return self._url

    @property
    def pid(self) -> int:
        return 0

    @property
    def start_timeout(self) -> float:
        return float(self.plugin.start_timeout) + float(self.plugin.http_timeout)

    def get_state(self) -> dict[str, Any]:
        return dict(self.plugin.get_state() or {})

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.plugin.load_state(dict(state))
        self._active = bool(state)

    async def prepare(self, auth_state: Mapping[str, Any] | None) -> None:
        """JupyterHub's User.spawn before start(): authenticator, auth_state, groups, options, pre-spawn."""
        plugin = self.plugin
        authenticator = self.context.authenticator
        if authenticator is not None and hasattr(authenticator, "pre_spawn_start"):
            await hooks.maybe_await(authenticator.pre_spawn_start(plugin.user, plugin))
        await plugin.run_auth_state_hook(auth_state)
        await plugin.apply_group_overrides()
        try:
            await plugin._run_apply_user_options(plugin.user_options)
        except Exception as exc:  # tornado's HTTPError(400) in JupyterHub
            raise hooks.UserOptionsError(getattr(exc, "log_message", None) or str(exc)) from exc
        await hooks.maybe_await(plugin.run_pre_spawn_hook())

    async def after_stop(self) -> None:
        await hooks.maybe_await(self.plugin.run_post_stop_hook())
        authenticator = self.context.authenticator
        if authenticator is not None and hasattr(authenticator, "post_spawn_stop"):
            with contextlib.suppress(Exception):
                await hooks.maybe_await(authenticator.post_spawn_stop(self.plugin.user, self.plugin))

    async def get_options_form(self) -> str:
        return str(await self.plugin.get_options_form() or "")

    def options_from_form(self, form_data: Mapping[str, list[str]]) -> dict[str, Any]:
        options = self.plugin.run_options_from_form(dict(form_data))
        if not isinstance(options, Mapping):
            raise hooks.UserOptionsError("options_from_form must return a dict")
        return dict(options)

    async def start(self) -> str:
        plugin, spec = self.plugin, self.spec
        self._begin_progress()
        self._active = True
        self.context.live[(spec.user, spec.server_name)] = self
        self.context.user_spawners(spec.user)[spec.server_name] = plugin
        relay = asyncio.create_task(self._relay_progress())
        try:
            try:
                async with asyncio.timeout(float(plugin.start_timeout)):
                    result = await plugin.start()
            except TimeoutError:
                raise SpawnError(f"Server at {spec.server_prefix} did not start within "
                                 f"{plugin.start_timeout:g} seconds (Spawner.start_timeout).") from None
            self._url = self._as_url(result)
            self._set_server_address()
            await self._wait_http()
            return self._url
        except BaseException as exc:
            await self._stop_quietly()
            if isinstance(exc, Exception) and not isinstance(exc, SpawnError):
                raise SpawnError(_message(exc)) from exc
            raise
        finally:
            relay.cancel()
            self._end_progress()

    def _as_url(self, result: Any) -> str:
        """start() returns a URL or (ip, port), as in JupyterHub."""
        if isinstance(result, str) and result:
            parts = urlsplit(result)
            return f"{parts.scheme or 'http'}://{parts.netloc}"
        if isinstance(result, (tuple, list)) and len(result) == 2:
            ip, port = result
            ip = ip or "127.0.0.1"
            host = f"[{ip}]" if ":" in ip else ip
            return f"http://{host}:{int(port)}"
        raise SpawnError(f"{type(self.plugin).__name__}.start() returned {result!r}, not a URL or (ip, port).")

    def _set_server_address(self) -> None:
        parts = urlsplit(self._url)
        server = self.plugin.server
        if server is not None:
            server.ip, server.port = parts.hostname or "", parts.port or 80

    async def _wait_http(self) -> None:
        """JupyterHub waits for the server to answer HTTP (any status), bounded by http_timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(self.plugin.http_timeout)
        url = self._url + quote(self.spec.server_prefix, safe="/%@~:!$&'()*+,;=") + "api"
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                    async with session.get(url, allow_redirects=False):
                        return
                status = await self.plugin.poll()
                if status is not None:
                    raise SpawnError(f"Server at {self.spec.server_prefix} exited with status {status} "
                                     "before it answered.")
                if loop.time() >= deadline:
                    raise SpawnError(f"Server at {self.spec.server_prefix} did not answer at {self._url} within "
                                     f"{self.plugin.http_timeout:g} seconds (Spawner.http_timeout).")
                await asyncio.sleep(0.1)

    async def _relay_progress(self) -> None:
        """The plugin's progress() events go to the progress stream while start() runs."""
        try:
            async with contextlib.aclosing(self.plugin.progress()) as events:
                async for event in events:
                    if isinstance(event, Mapping):
                        self._emit({k: v for k, v in event.items() if k in ("progress", "message", "html_message")})
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("progress() of %s failed", self.spec.server_prefix)

    async def poll(self) -> int | None:
        return await self.plugin.poll()

    async def wait_for_exit(self) -> int:
        interval = min(max(float(self.plugin.poll_interval or 1.0), 1.0), WATCH_INTERVAL_MAX)
        while True:
            try:
                status = await self.plugin.poll()
            except Exception:  # e.g. squeue failing for a moment: not a reason to call the server dead
                log.exception("poll() of %s failed; trying again", self.spec.server_prefix)
                status = None
            if status is not None:
                return status
            await asyncio.sleep(interval)

    async def stop(self, now: bool = False) -> None:
        if not self._active:
            return
        try:
            async with asyncio.timeout(self.stop_timeout):
                await self.plugin.stop(now=now)
        except TimeoutError:
            log.warning("stop() of %s did not return within %g s; forgetting the server",
                        self.spec.server_prefix, self.stop_timeout)
        finally:
            self._forget()

    async def _stop_quietly(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.shield(self.stop(now=True))

    def _forget(self) -> None:
        self._url = ""
        self._active = False
        self.plugin.clear_state()
        self.context.live.pop((self.spec.user, self.spec.server_name), None)

    # ---- batchspawner's port report
    def set_reported(self, data: Mapping[str, Any]) -> None:
        """Set what the job wrapper reported (``{"port": N}``) on the plugin, as JupyterHub's handler does."""
        for key, value in data.items():
            if isinstance(key, str) and not key.startswith("_") and hasattr(self.plugin, key):
                setattr(self.plugin, key, value)


def _message(exc: BaseException) -> str:
    text = getattr(exc, "log_message", None) or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, RuntimeError) else text


class PluginContext:
    """What every adapter of one gateway shares: the store, the live plugins, the authenticator."""

    def __init__(self, store: Any, authenticator: Any = None):
        self.store = store
        self.authenticator = authenticator
        self.auth_state_reader: hooks.AuthStateReader | None = None
        self.live: dict[tuple[str, str], PluginSpawner] = {}
        self._spawners: dict[str, dict[str, HubSpawner]] = {}

    def user_spawners(self, user_name: str) -> dict[str, HubSpawner]:
        return self._spawners.setdefault(user_name, {})

    def by_api_token(self, user_name: str, token: str) -> PluginSpawner | None:
        given = token.encode()  # compared in constant time, as every token
        for (owner, _), adapter in self.live.items():
            secret = adapter.spec.api_token
            if owner == user_name and secret and hmac.compare_digest(secret.encode(), given):
                return adapter
        return None


def plugin_spawner_class(cls: type[HubSpawner], raw_config: Mapping[str, Any], context: PluginContext, *,
                         stop_timeout: float = 60.0) -> type[PluginSpawner]:
    config = raw_config if isinstance(raw_config, Config) else Config(
        {k: dict(v) for k, v in raw_config.items() if isinstance(v, Mapping)})
    return type(f"Plugin{cls.__name__}", (PluginSpawner,),
                {"plugin_class": cls, "plugin_config": config, "context": context, "stop_timeout": stop_timeout})
