"""The spawner interface: what the ServerManager codes against to start, watch and stop one server.

Vocabulary:
- spec (ServerSpec): what the ServerManager asks for: whose server, at which URL prefix, with
  which secret.
- options (SpawnerOptions): how servers run, from the ``c.Spawner.*`` configuration.
- secret: the server's own hub API token. It reaches the server by environment only
  (``JUPYTER_TOKEN`` for jupyter-server, ``JUPYTERHUB_API_TOKEN`` for jupyterhub-singleuser),
  never on the command line, which every local user can read in /proc/<pid>/cmdline.
- ready: the server answers HTTP at ``<url><prefix>api/status``, whatever the status (403 too).
- state: the JSON dict a spawner persists so that a restarted gateway finds its server again.
- progress event: ``{"progress": 0-100, "message": str}``, fed into JupyterHub's spawn event stream.

Implementations: ``gateway.spawners.local.ProcessSpawner`` (local processes).
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from gateway.spawners import hooks as spawn_hooks
from gateway.spawners.hooks import SpawnHooks


# The environment variables a server inherits from the gateway's (c.Spawner.env_keep's default).
DEFAULT_ENV_KEEP = (
    "PATH",
    "PYTHONPATH",
    "CONDA_ROOT",
    "CONDA_DEFAULT_ENV",
    "VIRTUAL_ENV",
    "LANG",
    "LC_ALL",
    "JUPYTERHUB_SINGLEUSER_APP",
)


@dataclass(frozen=True)
class SpawnerOptions:
    """How servers are run; one object for all servers, from ``c.Spawner.*``."""

    cmd: tuple[str, ...] = ()  # empty: jupyter-server next to sys.executable, else on PATH
    args: tuple[str, ...] = ()  # appended after cmd and the flags we set, so they can override them
    environment: Mapping[str, Any] = field(default_factory=dict)  # str, or callable(spawner) -> str
    env_keep: tuple[str, ...] = DEFAULT_ENV_KEEP
    start_timeout: float = 60.0  # the whole start(), readiness included
    http_timeout: float = 30.0  # from launching the process to its first HTTP answer
    default_url: str = ""
    notebook_dir: str = ""  # '{username}', '{servername}' and a leading '~' are expanded
    home_dir_template: str = ""  # per-user folder when not switching user; default <data_dir>/users/<name>
    disable_user_config: bool = False  # JUPYTERHUB_DISABLE_USER_CONFIG=1: the server reads no ~/.jupyter config
    shell_cmd: tuple[str, ...] = ()  # e.g. ('bash', '-l', '-c'): the command line runs as that shell's one argument
    switch_user: bool = True  # False for spawner_class 'simple'
    data_dir: str = "."  # where per-user folders and logs go
    interrupt_timeout: float = 5.0  # stop(): wait after SIGINT
    term_timeout: float = 3.0  # ... after SIGTERM
    kill_timeout: float = 5.0  # ... after SIGKILL
    debug: bool = False
    hooks: SpawnHooks = field(default_factory=SpawnHooks)
    mem_limit: int | None = None  # bytes; passed on as MEM_LIMIT (the local spawner enforces none, as JupyterHub's)
    cpu_limit: float | None = None
    mem_guarantee: int | None = None
    cpu_guarantee: float | None = None


@dataclass(frozen=True)
class ServerSpec:
    """What the ServerManager asks for: one (user, server name) at one URL prefix, with its secret."""

    user: str
    server_name: str = ""
    base_url: str = "/"  # the hub's base_url
    prefix: str = ""  # URL path of the server, '/user/alice/' or '/user/alice/nb/'; '' derives it
    api_token: str = ""  # the server's secret (its own hub API token)
    hub_api_url: str = ""  # where the server reaches the hub API, e.g. http://127.0.0.1:8000/hub/api
    hub_url_base: str = ""  # the hub's own URL prefix (base_url + 'hub/'), for spawners that link to it
    public_url: str = ""  # public URL of this server, when JupyterHub.public_url is set
    public_hub_url: str = ""
    public_host: str = ""
    admin_access: bool = False
    cookie_host_prefix_enabled: bool = False
    oauth_client_id: str = ""  # '' derives jupyterhub-user-<name>[-<server>]
    user_options: Mapping[str, Any] | None = None
    env_extra: Mapping[str, str] = field(default_factory=dict)
    user_id: int = 0
    user_admin: bool = False
    user_groups: tuple[str, ...] = ()
    display_name: str = ""
    route_secret: str = ""  # what the proxy presents, when not api_token (spawners with separate_route_secret)

    @property
    def escaped_user(self) -> str:
        return quote(self.user, safe="@~")

    @property
    def server_prefix(self) -> str:
        if self.prefix:
            return self.prefix
        named = f"{quote(self.server_name, safe='@~')}/" if self.server_name else ""
        return f"{self.base_url}user/{self.escaped_user}/{named}"

    @property
    def client_id(self) -> str:
        if self.oauth_client_id:
            return self.oauth_client_id
        named = f"-{quote(self.server_name, safe='@~')}" if self.server_name else ""
        return f"jupyterhub-user-{self.escaped_user}{named}"

    @property
    def access_scopes(self) -> list[str]:
        return [f"access:servers!server={self.user}/{self.server_name}", f"access:servers!user={self.user}"]


class SpawnError(Exception):
    """A start that failed; ``message`` is meant for the user and ends with the server's last output."""

    def __init__(self, message: str, log_tail: str = ""):
        self.log_tail = log_tail
        self.message = f"{message}\nLast output of the server:\n{log_tail}" if log_tail else message
        super().__init__(self.message)


@dataclass(frozen=True)
class _Group:
    name: str


class _UserView:
    """What JupyterHub-style hooks and ``environment`` callables read as ``spawner.user``."""

    def __init__(self, spec: ServerSpec, store: Any = None):
        self.name = spec.user
        self.escaped_name = spec.escaped_user
        self.id = spec.user_id
        self.admin = spec.user_admin
        self.groups = [_Group(g) for g in spec.user_groups]
        self.url = f"{spec.base_url}user/{spec.escaped_user}/"
        self._auth_state_reader: spawn_hooks.AuthStateReader | None = None  # set by the ServerManager

    async def get_auth_state(self) -> Mapping[str, Any] | None:
        return await spawn_hooks.read_auth_state(self._auth_state_reader, self.name)


class Spawner(ABC):
    """One server's lifecycle: start() -> url, poll(), stop(); get_state() persists it as JSON.

    A spawner built with the state of a running server (even by another gateway process) polls
    and stops that server. progress() yields the events of the current start.
    """

    separate_route_secret = False  # True: the ServerManager mints a second token for the proxy to present

    def __init__(self, options: SpawnerOptions, spec: ServerSpec, state: Mapping[str, Any] | None = None):
        self.options = options
        self.spec = spec
        # JupyterHub's per-spawner attributes, which hooks (pre_spawn_hook, group_overrides,
        # apply_user_options) may change before start()
        self.environment: dict[str, Any] = dict(options.environment)
        self.cmd: list[str] = list(options.cmd)
        self.args: list[str] = list(options.args)
        self.notebook_dir = options.notebook_dir
        self.default_url = options.default_url
        self.mem_limit, self.cpu_limit = options.mem_limit, options.cpu_limit
        self.mem_guarantee, self.cpu_guarantee = options.mem_guarantee, options.cpu_guarantee
        self.user_options: dict[str, Any] = dict(spec.user_options or {})
        self.user = _UserView(spec)  # the ServerManager hands it the auth_state reader, for get_auth_state()
        self._events: list[dict[str, Any]] = []
        self._starting = False
        self._began = False
        self._pulse: asyncio.Event | None = None
        if state:
            self.load_state(state)

    @abstractmethod
    async def start(self) -> str:
        """Start the server and wait until it answers; return its URL (http://127.0.0.1:PORT)."""

    @abstractmethod
    async def poll(self) -> int | None:
        """None while the server runs, else its exit status (0 when unknown or never started)."""

    @abstractmethod
    async def stop(self, now: bool = False) -> None:
        """Stop the server (gracefully unless ``now``); afterwards get_state() is empty."""

    @abstractmethod
    def get_state(self) -> dict[str, Any]:
        """JSON-serialisable state; {} when no server is running."""

    @abstractmethod
    def load_state(self, state: Mapping[str, Any]) -> None:
        """Adopt a state returned by get_state(), possibly in another gateway process."""

    @property
    @abstractmethod
    def url(self) -> str:
        """URL of the running server, '' when none."""

    @property
    @abstractmethod
    def pid(self) -> int:
        """Process id of the running server, 0 when none (or not a local process)."""

    async def wait_for_exit(self) -> int:
        """Return the exit status once the server has exited; meant to run as a cancellable task."""
        while (status := await self.poll()) is None:
            await asyncio.sleep(1.0)
        return status

    # ---- JupyterHub-compatible names, read by hooks and Spawner.environment callables
    @property
    def name(self) -> str:
        return self.spec.server_name

    @property
    def api_token(self) -> str:
        return self.spec.api_token

    @property
    def start_timeout(self) -> float:
        return self.options.start_timeout

    # ---- hooks and options (JupyterHub 5+/6), from c.Spawner.*
    async def prepare(self, auth_state: Mapping[str, Any] | None) -> None:
        """Run the hooks that precede start(); UserOptionsError means the options were refused."""
        await spawn_hooks.run_before_start(self, self.options.hooks, auth_state, set(self.spec.user_groups),
                                           self.user_options)

    async def after_stop(self) -> None:
        await spawn_hooks.run_after_stop(self, self.options.hooks)

    async def get_options_form(self) -> str:
        return await spawn_hooks.render_options_form(self, self.options.hooks.options_form)

    def options_from_form(self, form_data: Mapping[str, list[str]]) -> dict[str, Any]:
        return spawn_hooks.run_options_from_form(self, self.options.hooks.options_from_form, form_data)

    # ---- progress
    async def progress(self) -> AsyncIterator[dict[str, Any]]:
        """Events of the current start (or of the last one, if none runs), ending with it.

        Called before any start has begun on this spawner, it first waits (at most start_timeout)
        for one, so a ServerManager may open it right after scheduling start().
        """
        if not self._began:
            await self._wait_for_change(self.options.start_timeout)
        index = 0
        while True:
            while index < len(self._events):
                yield dict(self._events[index])
                index += 1
            if not self._starting:
                return
            await self._wait_for_change(1.0)  # re-checks at least every second; start() is bounded

    def _begin_progress(self) -> None:
        self._events = []
        self._starting = self._began = True
        self._notify()

    def _emit(self, event: Mapping[str, Any]) -> None:
        self._events.append(dict(event))
        self._notify()

    def _end_progress(self) -> None:
        self._starting = False
        self._notify()

    def _notify(self) -> None:
        if self._pulse is not None:
            self._pulse.set()
            self._pulse = None

    async def _wait_for_change(self, timeout: float) -> None:
        if self._pulse is None:
            self._pulse = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._pulse.wait(), timeout)
