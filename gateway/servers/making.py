"""What each start of a server needs: the spawner options and class (built-in or a JupyterHub plugin)
from the settings, the server's spec, and the tokens minted for it.

Tokens: the server's secret (its own hub token: access to itself and its user's activity), created
per start and deleted at stop; the proxy sends it to the backend. Plugin spawners get a separate
route secret (what the proxy presents: access to that one server). Spawners see a spec, never the store.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from gateway.config import Settings
from gateway.spawners import hooks as spawn_hooks
from gateway.spawners.base import ServerSpec, Spawner, SpawnerOptions
from gateway.spawners.local import spawner_class_for
from gateway.store import Store
from gateway.vocab import scopes
from gateway.vocab.models import Server, User
from gateway.vocab.serialize import server_api_url, user_url


class SpawnerMaker:
    """Makes the spawner of each start (and of each options form) with the current settings."""

    def __init__(self, store: Store, settings: Settings, *, hub_api_url: str) -> None:
        self.store = store
        self.hub_api_url = hub_api_url
        self.authenticator: Any = None  # a JupyterHub authenticator plugin, when one is loaded
        self.auth_state_reader: spawn_hooks.AuthStateReader | None = None  # set with the authenticator
        self._plugin_context: Any = None
        self.apply_settings(settings)

    def apply_settings(self, settings: Settings) -> None:
        """Use these settings for future starts (SIGHUP); running servers are left alone."""
        self.settings = settings
        self.options = SpawnerOptions(
            cmd=settings.spawner_cmd,
            args=settings.spawner_args,
            environment=dict(settings.spawner_environment),
            env_keep=settings.spawner_env_keep,
            start_timeout=settings.spawner_start_timeout,
            http_timeout=settings.spawner_http_timeout,
            default_url=settings.spawner_default_url,
            notebook_dir=settings.spawner_notebook_dir,
            home_dir_template=settings.spawner_home_dir_template,
            debug=settings.spawner_debug,
            disable_user_config=settings.spawner_disable_user_config,
            shell_cmd=settings.spawner_shell_cmd,
            switch_user=settings.spawner_class != "simple",
            data_dir=settings.state_dir,
            hooks=spawn_hooks.SpawnHooks(
                pre_spawn_hook=settings.spawner_pre_spawn_hook, post_stop_hook=settings.spawner_post_stop_hook,
                auth_state_hook=settings.spawner_auth_state_hook,
                apply_user_options=settings.spawner_apply_user_options,
                group_overrides=settings.spawner_group_overrides, options_form=settings.spawner_options_form,
                options_from_form=settings.spawner_options_from_form),
            mem_limit=settings.spawner_mem_limit, cpu_limit=settings.spawner_cpu_limit,
            mem_guarantee=settings.spawner_mem_guarantee, cpu_guarantee=settings.spawner_cpu_guarantee,
        )
        self.servers_hub_api_url = servers_hub_api_url(settings, self.hub_api_url)
        if settings.spawner_class == "plugin":
            from gateway.spawners.plugin import PluginContext, plugin_spawner_class

            if self._plugin_context is None:
                self._plugin_context = PluginContext(self.store, self.authenticator)
            self.spawner_class = plugin_spawner_class(settings.spawner_plugin, settings.plugin_config,
                                                      self._plugin_context, stop_timeout=settings.plugin_stop_timeout)
        else:
            self.spawner_class = spawner_class_for(settings.spawner_class)

    @property
    def plugin_context(self) -> Any:
        """Live plugin spawners (batchspawner's port report finds them here); None without plugins."""
        return self._plugin_context

    def set_authenticator(self, authenticator: Any, auth_state_reader: spawn_hooks.AuthStateReader | None) -> None:
        """The JupyterHub authenticator plugin (or None) spawner plugins see, and how auth_state is read."""
        self.authenticator = authenticator
        self.auth_state_reader = auth_state_reader
        if self._plugin_context is not None:
            self._plugin_context.authenticator = authenticator
            self._plugin_context.auth_state_reader = auth_state_reader

    def spec(self, server: Server, secret: str, *, route_secret: str = "", user: User | None = None,
              groups: tuple[str, ...] = ()) -> ServerSpec:
        """What the spawner is told about the server it runs."""
        settings = self.settings
        return ServerSpec(
            user=server.user_name,
            server_name=server.name,
            base_url=settings.base_url,
            prefix=user_url(settings.base_url, server.user_name, server.name),
            api_token=secret,
            route_secret=route_secret or secret,
            hub_api_url=server_api_url(self.servers_hub_api_url, server.id),  # its own view of the API
            hub_url_base=settings.hub_prefix,
            admin_access=settings.admin_access,
            user_options=server.user_options,
            user_id=server.user_id,
            user_admin=bool(user and user.admin),
            user_groups=groups,
            display_name=server.display_name,
            public_url=(settings.public_url.rstrip("/") + user_url(settings.base_url, server.user_name, server.name))
            if settings.public_url else "",
        )

    async def new_secret(self, server: Server) -> str:
        """The server's own hub token for this start."""
        await self.store.delete_tokens(server_id=server.id)  # a previous start's token, if any survived
        server_scopes = [scopes.access_scope(server.user_name, server.name),
                         f"users:activity!user={server.user_name}"]
        _, secret = await self.store.create_token(
            "user", server.user_id, note=f"Server at {user_url(self.settings.base_url, server.user_name, server.name)}",
            scopes=server_scopes, server_id=server.id)
        return secret

    async def new_route_secret(self, server: Server) -> str:
        """What the proxy presents to a plugin's server: access to that one server, nothing else."""
        _, secret = await self.store.create_token(
            "user", server.user_id, note=f"Proxy to {user_url(self.settings.base_url, server.user_name, server.name)}",
            scopes=[scopes.access_scope(server.user_name, server.name)], server_id=server.id)
        return secret

    def make(self, spec: ServerSpec, state: Mapping[str, Any] | None = None) -> Spawner:
        """A spawner for ``spec``, from its saved ``state`` when it is recovered."""
        spawner = self.spawner_class(self.options, spec, state)
        spawner.user._auth_state_reader = self.auth_state_reader  # for user.get_auth_state()
        return spawner

    async def for_form(self, user: User, server_name: str) -> Spawner:
        """A spawner that is not started: for its options form and options_from_form."""
        server = await self.store.get_server(user.id, server_name)
        groups = tuple((await self.store.groups_of_users([user.id])).get(user.id, []))
        if server is None:
            server = Server(id=0, user_id=user.id, user_name=user.name, name=server_name)
        spec = self.spec(server, "", user=user, groups=groups)
        return self.make(spec)

    async def start(self, spawner: Spawner) -> str:
        """Prepare (with the user's auth_state) and start ``spawner``; its URL."""
        await spawner.prepare(await spawn_hooks.read_auth_state(self.auth_state_reader, spawner.spec.user))
        return await spawner.start()


def servers_hub_api_url(settings: Settings, hub_api_url: str) -> str:
    """JUPYTERHUB_API_URL for servers: hub_connect_url / hub_connect_ip when set (servers on other hosts)."""
    connect = settings.spawner_hub_connect_url or settings.hub_connect_url
    if connect:
        parts = urlsplit(connect)
        return f"{parts.scheme or 'http'}://{parts.netloc}{settings.api_prefix.rstrip('/')}"
    if settings.hub_connect_ip:
        parts = urlsplit(hub_api_url)
        host = f"[{settings.hub_connect_ip}]" if ":" in settings.hub_connect_ip else settings.hub_connect_ip
        return f"{parts.scheme}://{host}:{parts.port}{parts.path}"
    return hub_api_url
