"""Settings: a jupyterhub_config.py (plus command-line overrides) mapped to one frozen object.

Vocabulary:
- *key*: a dotted config name as users write it, e.g. ``JupyterHub.bind_url``.
- *section*: the part before the dot. Subclass sections (``LocalProcessSpawner``,
  ``DummyAuthenticator`` ...) are read after their base section, so they override it,
  as traitlets does for JupyterHub.
- *URL form* / *route form* of ``base_url``: the URL form is the prefix as configured (and as
  every link, redirect and cookie path carries it), e.g. ``/a%40b/``; the route form is its
  percent-decoded twin, ``/a@b/``, which is what aiohttp matches routes and ``request.path``
  against. They differ only when base_url holds percent-escapes (JupyterHub keeps base_url verbatim).
- *problem*: a wrong type or value. Every problem is collected and reported before
  anything binds; the CLI exits with status 2.

The file is loaded with traitlets' Python config loader, exactly as JupyterHub loads it,
so ``c = get_config()`` and ``c.JupyterHub.x = ...`` work unchanged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from gateway.spawners import hooks as spawn_hooks
from gateway.vocab.config_values import (as_base_url, as_bind_url, as_bool, as_db_url, as_dict, as_env_dict, as_int,
                                         as_log_level, as_name_set, as_named_server_limit, as_number,
                                         as_optional_bool, as_roles, as_secret, as_services, as_str, as_str_dict,
                                         as_str_tuple, route_form)
from gateway.spawners.base import DEFAULT_ENV_KEEP

log = logging.getLogger("gateway.config")

# Sections read for each group of settings, base first: later ones override earlier ones.
HUB_SECTIONS = ("JupyterHub",)
AUTH_SECTIONS = (
    "Authenticator",
    "LocalAuthenticator",
    "PAMAuthenticator",
    "DummyAuthenticator",
    "SharedPasswordAuthenticator",
    "PasswordAuthenticator",
)
SPAWNER_SECTIONS = ("Spawner", "LocalProcessSpawner", "SimpleLocalProcessSpawner", "ProcessSpawner")
GATEWAY_SECTIONS = ("Gateway",)

# Keys that JupyterHub has but that mean nothing in a one-process gateway: one info line, no warning.
IRRELEVANT_KEYS = {
    "JupyterHub.hub_bind_url": "the hub and the proxy share one port",
    "JupyterHub.proxy_class": "the proxy is built in",
    "JupyterHub.cleanup_proxy": "the proxy is built in",
    "JupyterHub.cookie_host_prefix_enabled": "gateway sets cookie flags itself",
}
# Spawner keys the local spawner does not implement, fine at JupyterHub's default (which changes nothing)
SPAWNER_KEYS_AT_DEFAULT: dict[str, tuple[Any, ...]] = {
    "consecutive_failure_limit": (0,), "popen_kwargs": ({},), "ip": ("127.0.0.1",), "port": (0,),
    "oauth_roles": ([],), "oauth_client_allowed_scopes": ([],), "server_token_scopes": ([],),
    "ssl_alt_names": ([],), "ssl_alt_names_include_local": (True,),
}
IRRELEVANT_SECTIONS = {"ConfigurableHTTPProxy": "the proxy is built in", "Proxy": "the proxy is built in"}

AUTHENTICATOR_ALIASES = {
    "password": "password",
    "pam": "pam",
    "default": "pam",
    "dummy": "dummy",
    "shared-password": "shared-password",
    "jupyterhub.auth.PAMAuthenticator": "pam",
    "jupyterhub.auth.DummyAuthenticator": "dummy",
    "jupyterhub.authenticators.shared.SharedPasswordAuthenticator": "shared-password",
    "PAMAuthenticator": "pam",
    "DummyAuthenticator": "dummy",
    "SharedPasswordAuthenticator": "shared-password",
}
SPAWNER_ALIASES = {
    "localprocess": "localprocess",
    "default": "localprocess",
    "simple": "simple",
    "jupyterhub.spawner.LocalProcessSpawner": "localprocess",
    "jupyterhub.spawner.SimpleLocalProcessSpawner": "simple",
    "LocalProcessSpawner": "localprocess",
    "SimpleLocalProcessSpawner": "simple",
}

class ConfigError(Exception):
    """Raised with every problem found; ``problems`` holds one message per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class PluginRef:
    """authenticator_class naming a JupyterHub Authenticator plugin: an entry-point name
    (group ``jupyterhub.authenticators``), a dotted import path, or a class object."""

    spec: Any


def _builtin_authenticator(value: Any) -> str | None:
    if isinstance(value, type):
        dotted = f"{value.__module__}.{value.__qualname__}"
        return AUTHENTICATOR_ALIASES.get(dotted) if dotted.startswith("jupyterhub.") else None
    return AUTHENTICATOR_ALIASES.get(str(value))


def as_authenticator_class(value: Any) -> str | PluginRef:
    """A built-in kind ('password', 'pam', ...), or a PluginRef that ``authenticators.plugin`` loads at start."""
    builtin = _builtin_authenticator(value)
    if builtin is not None:
        return builtin
    if isinstance(value, type):
        return PluginRef(value)
    value = as_str(value).strip()
    if not value or not re.fullmatch(r"[A-Za-z_][\w-]*(\.[A-Za-z_]\w*)*", value):
        raise ValueError(f"expected a built-in name, an entry-point name or a dotted class path, got {value!r}")
    return PluginRef(value)


def as_spawner_class(value: Any) -> Any:
    """A built-in spawner's name (a str), else the plugin class (loading jupyterhub only then)."""
    if isinstance(value, str) and value in SPAWNER_ALIASES:
        return SPAWNER_ALIASES[value]
    if isinstance(value, type) and f"{value.__module__}.{value.__qualname__}" in SPAWNER_ALIASES:
        return SPAWNER_ALIASES[f"{value.__module__}.{value.__qualname__}"]
    if not isinstance(value, (str, type)):
        raise ValueError(f"expected a class, an import path or an entry-point name, got {value!r}")
    try:
        from gateway.spawners.plugin import load_spawner_class
    except ImportError as exc:
        raise ValueError(f"{value!r} is a JupyterHub spawner plugin, which needs the jupyterhub package: "
                         f"{exc}") from None
    return load_spawner_class(value)


# ---------------------------------------------------------------- the key table


@dataclass(frozen=True)
class Key:
    """One supported config key: where it goes in Settings and one line of help. Its default is the Settings
    field's: written once, there."""

    section: str  # "JupyterHub", "Authenticator", "Spawner" or "Gateway"
    name: str
    attr: str
    coerce: Callable[[Any], Any]
    help: str

    @property
    def default(self) -> Any:
        return FIELD_DEFAULTS[self.attr]


K = Key
KEYS: tuple[Key, ...] = (
    K("JupyterHub", "bind_url", "bind_url", as_bind_url,
      "URL to listen on; its path is the base_url."),
    K("JupyterHub", "ip", "ip", as_str, "Legacy: IP to listen on (overrides bind_url's host)."),
    K("JupyterHub", "port", "port", as_int(0), "Legacy: port to listen on (overrides bind_url's port)."),
    K("JupyterHub", "base_url", "base_url", as_base_url, "URL prefix of every hub, user and service URL."),
    K("JupyterHub", "public_url", "public_url", as_str, "Public URL of the gateway, when it sits behind TLS."),
    K("JupyterHub", "ssl_cert", "ssl_cert", as_str,
      "TLS certificate (PEM, with its chain) for bind_url: gateway then serves https itself."),
    K("JupyterHub", "ssl_key", "ssl_key", as_str, "The private key (PEM) of ssl_cert."),
    K("JupyterHub", "hub_ip", "hub_ip", as_str,
      "With ssl_cert: where servers and services reach the hub API over plain http (else they share bind_url)."),
    K("JupyterHub", "hub_port", "hub_port", as_int(1), "With ssl_cert: the port of that plain-http listener."),
    K("JupyterHub", "db_url", "db_url", as_db_url, "State database (sqlite:///path)."),
    K("JupyterHub", "cookie_secret_file", "cookie_secret_file", as_str,
      "File holding the cookie secret (hex); created with mode 0600 when missing."),
    K("JupyterHub", "cookie_secret", "cookie_secret", as_secret, "Cookie secret as hex (prefer the file)."),
    K("JupyterHub", "cookie_max_age_days", "cookie_max_age_days", as_number(0),
      "Lifetime of login sessions, in days."),
    K("JupyterHub", "api_tokens", "api_tokens", as_str_dict,
      "Deprecated: {token: username}; the users are created and the tokens registered at start."),
    K("JupyterHub", "services", "services", as_services, "Services: list of dicts with JupyterHub's fields."),
    K("JupyterHub", "admin_access", "admin_access", as_bool,
      "Whether admin users and admin services may reach other users' servers."),
    K("JupyterHub", "admin_users", "hub_admin_users", as_name_set,
      "Deprecated alias of Authenticator.admin_users."),
    K("JupyterHub", "allow_named_servers", "allow_named_servers", as_bool,
      "Allow users to have more than one server."),
    K("JupyterHub", "named_server_limit_per_user", "named_server_limit_per_user", as_named_server_limit,
      "Maximum named servers per user, stopped ones included (0: no limit)."),
    K("JupyterHub", "default_server_name", "default_server_name", as_str,
      "Server name that /hub/user-redirect uses when named servers are on."),
    K("JupyterHub", "load_roles", "load_roles", as_roles,
      "Roles to create or update at start, with their exact members."),
    K("JupyterHub", "load_groups", "load_groups", as_dict,
      "Groups to create at start: {name: [users]} or {name: {'users': [...], 'properties': {...}}}."),
    K("JupyterHub", "custom_scopes", "custom_scopes", as_dict, "Custom scopes: {'custom:x': {...}}."),
    K("JupyterHub", "extra_user_scopes", "extra_user_scopes", as_str_tuple,
      "Scopes added to the default 'user' role."),
    K("JupyterHub", "authenticator_class", "authenticator_class", as_authenticator_class,
      "password (built in), pam, dummy or shared-password."),
    K("JupyterHub", "spawner_class", "spawner_class", as_spawner_class,
      "localprocess (runs as the system user when root), simple, or a JupyterHub spawner plugin: "
      "a jupyterhub.spawners entry point, an import path or a class."),
    K("JupyterHub", "hub_connect_url", "hub_connect_url", as_str,
      "URL servers on other hosts reach the hub at, e.g. http://login-node:8000 (JUPYTERHUB_API_URL)."),
    K("JupyterHub", "hub_connect_ip", "hub_connect_ip", as_str,
      "Host servers on other hosts reach the hub at (hub_connect_url wins)."),
    K("JupyterHub", "api_page_default_limit", "api_page_default_limit", as_int(1),
      "Default page size of paginated API lists."),
    K("JupyterHub", "api_page_max_limit", "api_page_max_limit", as_int(1), "Maximum page size."),
    K("JupyterHub", "token_expires_in_max_seconds", "token_expires_in_max_seconds", as_int(0),
      "Longest lifetime of a requested token (0: no limit)."),
    K("JupyterHub", "oauth_token_expires_in", "oauth_token_expires_in", as_int(0),
      "Lifetime of OAuth tokens in seconds (0: cookie_max_age_days)."),
    K("JupyterHub", "concurrent_spawn_limit", "concurrent_spawn_limit", as_int(0),
      "Most servers starting at once (0: no limit); more get 429."),
    K("JupyterHub", "active_server_limit", "active_server_limit", as_int(0),
      "Most servers running or starting at once (0: no limit); more get 429."),
    K("JupyterHub", "cleanup_servers", "cleanup_servers", as_bool,
      "Stop all user servers when the gateway stops (default: they keep running)."),
    K("JupyterHub", "shutdown_on_logout", "shutdown_on_logout", as_bool,
      "Stop a user's servers when they log out."),
    K("JupyterHub", "default_url", "default_url", as_str, "Where /hub/ sends a logged-in user."),
    K("JupyterHub", "redirect_to_server", "redirect_to_server", as_bool,
      "Send users to their server after login (else to /hub/home)."),
    K("JupyterHub", "authenticate_prometheus", "authenticate_prometheus", as_bool,
      "Require the read:metrics scope for /hub/metrics."),
    K("JupyterHub", "activity_resolution", "activity_resolution", as_int(0),
      "Seconds between recorded activity updates of one user or token."),
    K("JupyterHub", "last_activity_interval", "last_activity_interval", as_int(1),
      "Seconds between writes of proxied activity to the store."),
    K("JupyterHub", "active_user_window", "active_user_window", as_int(1),
      "A user active within this many seconds counts as active in metrics."),
    K("JupyterHub", "cull_idle_timeout", "cull_idle_timeout", as_int(0),
      "Stop servers idle for this many seconds (0: built-in culling off)."),
    K("JupyterHub", "cull_interval", "cull_interval", as_int(1), "Seconds between idle-culling passes."),
    K("JupyterHub", "cull_max_age", "cull_max_age", as_int(0),
      "Stop servers older than this many seconds, idle or not (0: no limit)."),
    K("JupyterHub", "cull_users", "cull_users", as_bool, "Also delete users that are idle and serverless."),
    K("JupyterHub", "log_level", "log_level", as_log_level, "Log level."),
    K("Authenticator", "admin_users", "admin_users", as_name_set, "Users made admins at start."),
    K("Authenticator", "allowed_users", "allowed_users", as_name_set,
      "Users allowed to log in (created at start)."),
    K("Authenticator", "blocked_users", "blocked_users", as_name_set, "Users never allowed to log in."),
    K("Authenticator", "allow_all", "allow_all", as_optional_bool,
      "Allow every user the authenticator accepts (dummy: on unless allowed_users)."),
    K("Authenticator", "allow_existing_users", "allow_existing_users", as_optional_bool,
      "Allow users that exist in the store (default: True when allowed_users is set)."),
    K("Authenticator", "username_pattern", "username_pattern", as_str, "Regular expression names must match."),
    K("Authenticator", "username_map", "username_map", as_str_dict, "Map of login names to user names."),
    K("Authenticator", "shared_password", "shared_password", as_str,
      "shared-password authenticator: the password every user logs in with."),
    K("Authenticator", "user_password", "shared_password", as_str,
      "shared-password authenticator: JupyterHub 5.3's name for shared_password."),
    K("Authenticator", "admin_password", "admin_password", as_str,
      "shared-password authenticator: the password admins log in with."),
    K("Authenticator", "password", "dummy_password", as_str, "dummy authenticator: deprecated shared password."),
    K("Authenticator", "service", "pam_service", as_str, "pam authenticator: PAM service name."),
    K("Authenticator", "allowed_groups", "pam_allowed_groups", as_name_set,
      "pam authenticator: members of these Unix groups may log in (LocalAuthenticator.allowed_groups)."),
    K("Authenticator", "admin_groups", "pam_admin_groups", as_name_set,
      "pam authenticator: members of these Unix groups are admins, others not unless in admin_users."),
    K("Spawner", "cmd", "spawner_cmd", as_str_tuple,
      "Command of the single-user server (default: jupyter-server)."),
    K("Spawner", "args", "spawner_args", as_str_tuple, "Extra arguments for the single-user server."),
    K("Spawner", "environment", "spawner_environment", as_env_dict, "Extra environment variables."),
    K("Spawner", "env_keep", "spawner_env_keep", as_str_tuple,
      "Environment variables passed on from the gateway."),
    K("Spawner", "start_timeout", "spawner_start_timeout", as_number(0.1),
      "Seconds a server may take to start."),
    K("Spawner", "http_timeout", "spawner_http_timeout", as_number(0.1),
      "Seconds a started process may take to answer HTTP."),
    K("Spawner", "default_url", "spawner_default_url", as_str, "Path the server opens at, e.g. /lab."),
    K("Spawner", "notebook_dir", "spawner_notebook_dir", as_str,
      "Working folder of the server ({username} is replaced; default: home or a per-user folder)."),
    K("Spawner", "home_dir_template", "spawner_home_dir_template", as_str,
      "simple spawner: per-user folder template, e.g. /tmp/{username}."),
    K("Spawner", "debug", "spawner_debug", as_bool, "Servers log at debug level (JUPYTERHUB_DEBUG=1)."),
    K("Spawner", "disable_user_config", "spawner_disable_user_config", as_bool,
      "Servers ignore the user's own Jupyter config files (JUPYTERHUB_DISABLE_USER_CONFIG=1)."),
    K("Spawner", "shell_cmd", "spawner_shell_cmd", as_str_tuple,
      "Run the server through this shell command, e.g. ['bash', '-l', '-c'] for a login shell's environment."),
    K("Spawner", "poll_interval", "spawner_poll_interval", as_number(0.1),
      "Seconds between checks that running servers are alive."),
    K("Spawner", "pre_spawn_hook", "spawner_pre_spawn_hook", spawn_hooks.as_hook,
      "Function of the spawner, called before each start (may be async)."),
    K("Spawner", "post_stop_hook", "spawner_post_stop_hook", spawn_hooks.as_hook,
      "Function of the spawner, called after each stop."),
    K("Spawner", "auth_state_hook", "spawner_auth_state_hook", spawn_hooks.as_hook,
      "Function of (spawner, auth_state), called before pre_spawn_hook."),
    K("Spawner", "apply_user_options", "spawner_apply_user_options", spawn_hooks.as_callable_or_dict,
      "Function of (spawner, user_options), or {option: spawner attribute}."),
    K("Spawner", "group_overrides", "spawner_group_overrides", spawn_hooks.as_callable_or_dict,
      "{key: {'groups': [...], 'spawner_override': {...}}} applied to members before a start."),
    K("Spawner", "options_form", "spawner_options_form", spawn_hooks.as_options_form,
      "HTML form fields (or a function of the spawner) shown on the spawn page."),
    K("Spawner", "options_from_form", "spawner_options_from_form", spawn_hooks.as_options_from_form,
      "Function turning the posted form (dict of lists) into user_options, or 'simple' / 'passthrough'."),
    K("Spawner", "mem_limit", "spawner_mem_limit", spawn_hooks.as_byte_spec,
      "Memory limit ('2G'); the local spawner passes it on as MEM_LIMIT, plugins enforce it."),
    K("Spawner", "mem_guarantee", "spawner_mem_guarantee", spawn_hooks.as_byte_spec, "Memory guarantee ('1G')."),
    K("Spawner", "cpu_limit", "spawner_cpu_limit", spawn_hooks.as_cpu, "CPU limit (cores)."),
    K("Spawner", "cpu_guarantee", "spawner_cpu_guarantee", spawn_hooks.as_cpu, "CPU guarantee (cores)."),
    K("Spawner", "hub_connect_url", "spawner_hub_connect_url", as_str,
      "URL this spawner's servers reach the hub at (overrides JupyterHub.hub_connect_url)."),
    K("Gateway", "max_body_size", "max_body_size", as_int(1),
      "Largest request body accepted by the hub API and pages, in bytes."),
    K("Gateway", "proxy_max_body_size", "proxy_max_body_size", as_int(1),
      "Largest request body forwarded to a user server, in bytes."),
    K("Gateway", "data_dir", "data_dir", as_str,
      "Folder for per-user folders and server logs (default: next to the database)."),
    K("Gateway", "create_first_admin", "create_first_admin", as_bool,
      "password authenticator: when no user has a password, make an admin user with a random password "
      "printed once to the log."),
    K("Gateway", "shutdown_timeout", "shutdown_timeout", as_number(0),
      "Seconds in-flight requests get to finish on SIGTERM before they are cancelled."),
    K("Gateway", "plugin_stop_timeout", "plugin_stop_timeout", as_number(0.1),
      "Seconds a spawner plugin's stop() may take; after that gateway forgets the server and logs a warning."),
    K("Gateway", "uvloop", "uvloop", as_bool,
      "Run on uvloop's event loop when it is installed (Linux): less CPU per proxied request."),
    K("Gateway", "front_doors", "front_doors", as_bool,
      "Serve plain token-authenticated proxied requests on the lean front-door path (less CPU per "
      "request); False sends every request through aiohttp's handler (e.g. for on_response_prepare "
      "signals, which the lean path does not run)."),
    K("Gateway", "authenticate_in_thread", "authenticate_in_thread", as_optional_bool,
      "Run an authenticator plugin's authenticate() in a worker thread, so its blocking calls do not hold up "
      "the proxy; default: for ldapauthenticator (whose ldap3 calls block), not for other plugins."),
)
KEYS_BY_NAME: dict[tuple[str, str], Key] = {(k.section, k.name): k for k in KEYS}
SECTION_GROUPS = {
    "JupyterHub": HUB_SECTIONS,
    "Authenticator": AUTH_SECTIONS,
    "Spawner": SPAWNER_SECTIONS,
    "Gateway": GATEWAY_SECTIONS,
}


@dataclass(frozen=True)
class Settings:
    """Everything the gateway reads from config, typed and validated. Built by ``load_settings``."""

    bind_url: str = "http://127.0.0.1:8000"
    ip: str = ""
    port: int = 0
    ssl_cert: str = ""
    ssl_key: str = ""
    hub_ip: str = "127.0.0.1"
    hub_port: int = 8081
    base_url: str = "/"
    public_url: str = ""
    db_url: str = "sqlite:///gateway.sqlite"
    cookie_secret_file: str = "gateway_cookie_secret"
    cookie_secret: bytes = b""
    cookie_max_age_days: float = 14.0
    api_tokens: Mapping[str, str] = field(default_factory=dict)
    services: tuple[Mapping[str, Any], ...] = ()
    admin_access: bool = False
    hub_admin_users: frozenset[str] = frozenset()
    allow_named_servers: bool = False
    named_server_limit_per_user: int = 0
    default_server_name: str = ""
    load_roles: tuple[Mapping[str, Any], ...] = ()
    load_groups: Mapping[str, Any] = field(default_factory=dict)
    custom_scopes: Mapping[str, Any] = field(default_factory=dict)
    extra_user_scopes: tuple[str, ...] = ()
    authenticator_class: str = "password"  # a built-in kind, or "plugin" (see authenticator_plugin)
    authenticator_plugin: Any = None  # PluginRef.spec when authenticator_class is "plugin"
    plugin_config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # every section, for traitlets
    spawner_class: str = "localprocess"
    api_page_default_limit: int = 50
    api_page_max_limit: int = 200
    token_expires_in_max_seconds: int = 0
    oauth_token_expires_in: int = 0
    concurrent_spawn_limit: int = 100
    active_server_limit: int = 0
    cleanup_servers: bool = False
    shutdown_on_logout: bool = False
    default_url: str = ""
    redirect_to_server: bool = True
    authenticate_prometheus: bool = True
    activity_resolution: int = 30
    last_activity_interval: int = 300
    active_user_window: int = 1800
    cull_idle_timeout: int = 0
    cull_interval: int = 300
    cull_max_age: int = 0
    cull_users: bool = False
    log_level: str = "INFO"
    admin_users: frozenset[str] = frozenset()
    allowed_users: frozenset[str] = frozenset()
    blocked_users: frozenset[str] = frozenset()
    allow_all: bool | None = None
    allow_existing_users: bool | None = None
    username_pattern: str = ""
    username_map: Mapping[str, str] = field(default_factory=dict)
    shared_password: str = ""
    admin_password: str = ""
    dummy_password: str = ""
    pam_service: str = "login"
    pam_allowed_groups: frozenset[str] = frozenset()
    pam_admin_groups: frozenset[str] = frozenset()
    spawner_cmd: tuple[str, ...] = ()
    spawner_args: tuple[str, ...] = ()
    spawner_environment: Mapping[str, Any] = field(default_factory=dict)
    spawner_env_keep: tuple[str, ...] = DEFAULT_ENV_KEEP
    spawner_start_timeout: float = 60.0
    spawner_http_timeout: float = 30.0
    spawner_default_url: str = ""
    spawner_notebook_dir: str = ""
    spawner_debug: bool = False
    spawner_disable_user_config: bool = False
    spawner_shell_cmd: tuple[str, ...] = ()
    spawner_home_dir_template: str = ""
    spawner_poll_interval: float = 30.0
    spawner_pre_spawn_hook: Any = None
    spawner_post_stop_hook: Any = None
    spawner_auth_state_hook: Any = None
    spawner_apply_user_options: Any = None
    spawner_group_overrides: Any = None
    spawner_options_form: Any = ""
    spawner_options_from_form: Any = "passthrough"
    spawner_mem_limit: int | None = None
    spawner_mem_guarantee: int | None = None
    spawner_cpu_limit: float | None = None
    spawner_cpu_guarantee: float | None = None
    spawner_hub_connect_url: str = ""
    hub_connect_url: str = ""
    hub_connect_ip: str = ""
    spawner_plugin: Any = None  # the JupyterHub spawner class when spawner_class == "plugin"
    max_body_size: int = 1024 * 1024
    proxy_max_body_size: int = 512 * 1024 * 1024
    data_dir: str = ""
    create_first_admin: bool = True
    shutdown_timeout: float = 10.0
    uvloop: bool = True
    front_doors: bool = True
    authenticate_in_thread: bool | None = None
    plugin_stop_timeout: float = 60.0
    config_file: str = ""

    # ---- derived values (pure functions of the fields above)
    @property
    def listen_host(self) -> str:
        return self.ip or urlsplit(self.bind_url).hostname or "0.0.0.0"

    @property
    def listen_port(self) -> int:
        return self.port or urlsplit(self.bind_url).port or 8000

    @property
    def tls(self) -> bool:
        """gateway serves https itself (ssl_cert and ssl_key); servers then reach the API on hub_ip:hub_port."""
        return bool(self.ssl_cert and self.ssl_key)

    @property
    def hub_prefix(self) -> str:
        return self.base_url + "hub/"

    @property
    def api_prefix(self) -> str:
        return self.base_url + "hub/api/"

    # Route forms (see the module docstring): for registering routes and comparing with request.path.
    @property
    def base_route(self) -> str:
        return route_form(self.base_url)

    @property
    def hub_route(self) -> str:
        return self.base_route + "hub/"

    @property
    def api_route(self) -> str:
        return self.base_route + "hub/api/"

    @property
    def db_path(self) -> str:
        return self.db_url[len("sqlite:///"):] if self.db_url.startswith("sqlite:///") else ":memory:"

    @property
    def state_dir(self) -> str:
        """Where per-user folders and logs live: data_dir, else the database's folder."""
        if self.data_dir:
            return self.data_dir
        return os.path.dirname(os.path.abspath(self.db_path)) if self.db_path != ":memory:" else os.getcwd()

    @property
    def all_admin_users(self) -> frozenset[str]:
        """Authenticator.admin_users, falling back to the deprecated JupyterHub.admin_users."""
        return self.admin_users or self.hub_admin_users

    @property
    def effective_allow_all(self) -> bool:
        if self.allow_all is not None:
            return self.allow_all
        # JupyterHub's DummyAuthenticator allows everyone unless allowed_users is set.
        return self.authenticator_class == "dummy" and not self.allowed_users

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


# Each key's default, from its Settings field (a fresh copy of mutable ones). Every key names a field.
FIELD_DEFAULTS: dict[str, Any] = {
    f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    for f in dataclasses.fields(Settings)
}
assert {k.attr for k in KEYS} <= set(FIELD_DEFAULTS)


# ---------------------------------------------------------------- loading


def _load_file(path: str) -> Mapping[str, Mapping[str, Any]]:
    from traitlets.config.loader import ConfigFileNotFound, PyFileConfigLoader

    directory, name = os.path.split(os.path.abspath(path))
    try:
        config = PyFileConfigLoader(name, path=directory).load_config()
    except ConfigFileNotFound:
        raise ConfigError([f"Failed to find specified config file: {path}"]) from None
    except Exception as e:  # the user's Python raised: report it like any other problem
        raise ConfigError([f"Error loading config file {path}: {type(e).__name__}: {e}"]) from None
    return {section: dict(values) for section, values in config.items() if isinstance(values, Mapping)}


def _merge(*configs: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for config in configs:
        for section, values in config.items():
            merged.setdefault(section, {}).update(values)
    return merged


def _map_config(raw: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, Any], list[str], list[str]]:
    """Raw sections -> (Settings field values, problems, warnings)."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    warnings: list[str] = []
    plugin, plugin_keys, plugin_sections = _spawner_plugin(raw, values, problems)
    known_sections = {s for group in SECTION_GROUPS.values() for s in group}
    # With a plugin authenticator, other sections and Authenticator keys are the plugin's (read by
    # traitlets when it is built); authenticators.plugin warns about the ones no class reads.
    auth_plugin = _names_plugin(raw)
    for section, entries in raw.items():
        if section in IRRELEVANT_SECTIONS:
            warnings.append(f"Ignoring {section}.* ({IRRELEVANT_SECTIONS[section]})")
            continue
        if section in plugin_sections and section not in known_sections:
            problems += [f"{section}.{name}: {plugin.__name__} has no such config key" for name in entries
                         if name not in plugin_keys]
        elif section not in known_sections and not auth_plugin:
            for name in entries:
                warnings.append(f"Unsupported config key {section}.{name} is ignored")
    for group, sections in SECTION_GROUPS.items():
        for section in sections:  # base first, subclasses override
            for name, value in raw.get(section, {}).items():
                dotted = f"{section}.{name}"
                key = KEYS_BY_NAME.get((group, name))
                if key is None and group == "Spawner":
                    # a spawner key gateway does not read: the plugin's (traitlets hands it over), else refused
                    if plugin is None:
                        plain = list(value) if isinstance(value, (list, tuple)) else value
                        if any(type(plain) is type(d) and plain == d for d in SPAWNER_KEYS_AT_DEFAULT.get(name, ())):
                            continue
                        problems.append(f"{dotted}: gateway's local spawner cannot honour this key")
                    elif name not in plugin_keys:
                        problems.append(f"{dotted}: {plugin.__name__} has no such config key")
                    continue
                if key is None:
                    if f"{group}.{name}" in IRRELEVANT_KEYS:
                        warnings.append(f"Ignoring {dotted} ({IRRELEVANT_KEYS[f'{group}.{name}']})")
                    elif auth_plugin and group == "Authenticator":
                        pass  # the plugin's
                    else:
                        warnings.append(f"Unsupported config key {dotted} is ignored")
                    continue
                if key.attr == "spawner_class" or plugin is not None and group == "Spawner" and name in plugin_keys:
                    continue  # read by _spawner_plugin / validated by the plugin's own traits
                try:
                    values[key.attr] = key.coerce(value)
                except ValueError as e:
                    problems.append(f"{dotted}: {e}")
    if plugin is not None:
        for attr, name in (("spawner_start_timeout", "start_timeout"), ("spawner_http_timeout", "http_timeout"),
                           ("spawner_poll_interval", "poll_interval")):
            with contextlib.suppress(Exception):
                values[attr] = float(plugin.class_traits()[name].default_value)
            for section in plugin_sections:
                if name in raw.get(section, {}):
                    with contextlib.suppress(ValueError, TypeError):
                        values[attr] = float(raw[section][name])
    if not (values.get("ssl_cert") and values.get("ssl_key")):
        warnings += [f"Ignoring JupyterHub.{name} (without ssl_cert the hub and the proxy share bind_url's port)"
                     for name in ("hub_ip", "hub_port") if name in raw.get("JupyterHub", {})]
    ref = values.get("authenticator_class")
    if isinstance(ref, PluginRef):
        values["authenticator_class"] = "plugin"
        values["authenticator_plugin"] = ref.spec
        values["plugin_config"] = {section: dict(entries) for section, entries in raw.items()}
    return values, problems, warnings


def _names_plugin(raw: Mapping[str, Mapping[str, Any]]) -> bool:
    value = raw.get("JupyterHub", {}).get("authenticator_class")
    try:
        return value is not None and isinstance(as_authenticator_class(value), PluginRef)
    except ValueError:
        return False


def _spawner_plugin(raw: Mapping[str, Mapping[str, Any]], values: dict[str, Any],
                    problems: list[str]) -> tuple[Any, set[str], list[str]]:
    """Resolve JupyterHub.spawner_class: a built-in name, or (plugin class, its config keys, its sections)."""
    if "spawner_class" not in raw.get("JupyterHub", {}):
        return None, set(), []
    try:
        resolved = as_spawner_class(raw["JupyterHub"]["spawner_class"])
    except ValueError as e:
        problems.append(f"JupyterHub.spawner_class: {e}")
        return None, set(), []
    if isinstance(resolved, str):
        values["spawner_class"] = resolved
        return None, set(), []
    from gateway.spawners.plugin import config_sections

    values["spawner_class"], values["spawner_plugin"] = "plugin", resolved
    values["plugin_config"] = {section: dict(entries) for section, entries in raw.items()}
    return resolved, set(resolved.class_trait_names(config=True)), config_sections(resolved)


def _check_consistency(settings: Settings) -> list[str]:
    problems = []
    if settings.api_page_default_limit > settings.api_page_max_limit:
        problems.append("JupyterHub.api_page_default_limit must not exceed JupyterHub.api_page_max_limit")
    if settings.username_pattern:
        try:
            re.compile(settings.username_pattern)
        except re.error as e:
            problems.append(f"Authenticator.username_pattern: not a valid regular expression: {e}")
    if settings.authenticator_class == "shared-password" and not (settings.shared_password or settings.admin_password):
        problems.append("SharedPasswordAuthenticator.user_password (or admin_password) must be set for "
                        "authenticator_class 'shared-password'")
    for password, name in ((settings.shared_password, "shared_password"), (settings.admin_password, "admin_password")):
        if password and len(password) < 8:
            problems.append(f"SharedPasswordAuthenticator.{name} must be at least 8 characters")
    if bool(settings.ssl_cert) != bool(settings.ssl_key):
        problems.append("JupyterHub.ssl_cert and JupyterHub.ssl_key go together: set both to serve https, or neither")
    if settings.spawner_disable_user_config and settings.spawner_class in ("localprocess", "simple") and \
            os.path.basename(settings.spawner_cmd[0] if settings.spawner_cmd else "") != "jupyterhub-singleuser":
        problems.append("Spawner.disable_user_config = True is carried out by jupyterhub-singleuser (plain "
                        "jupyter-server reads ~/.jupyter regardless): set c.Spawner.cmd = ['jupyterhub-singleuser']")
    if settings.hub_port > 65535:
        problems.append(f"JupyterHub.hub_port: {settings.hub_port} is not a TCP port (1 to 65535)")
    if settings.tls and settings.listen_port == settings.hub_port:
        problems.append(f"JupyterHub.hub_port {settings.hub_port} is also bind_url's port: with ssl_cert the hub "
                        "API needs its own plain-http port")
    for token, user in settings.api_tokens.items():
        if not 8 <= len(token) <= 64:
            problems.append(f"JupyterHub.api_tokens: the token for {user!r} must be 8 to 64 characters long")
    for spec in settings.services:
        token = spec.get("api_token")
        if token is not None and (not isinstance(token, str) or not 8 <= len(token) <= 64):
            problems.append(f"JupyterHub.services: api_token of {spec['name']!r} must be a string of 8 to 64 characters")
    return problems


def load_settings(
    config_file: str | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    warn: Callable[[str], None] | None = None,
) -> Settings:
    """Read ``config_file`` (if given) and command-line ``overrides``; raise ConfigError listing every problem."""
    raw_file = _load_file(config_file) if config_file else {}
    raw = _merge(raw_file, overrides or {})
    values, problems, warnings = _map_config(raw)
    for message in warnings:
        (warn or log.warning)(message)
    if problems:
        raise ConfigError(problems)
    settings = Settings(**values, config_file=os.path.abspath(config_file) if config_file else "")
    problems = _check_consistency(settings)
    if problems:
        raise ConfigError(problems)
    return settings


def parse_overrides(args: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``--Section.key=value`` arguments as traitlets parses them for JupyterHub."""
    from traitlets.config.loader import KVArgParseConfigLoader

    args = list(args)
    if not args:
        return {}
    try:
        config = KVArgParseConfigLoader(args).load_config()
    except SystemExit:
        raise ConfigError([f"Could not parse command-line options: {' '.join(args)}"]) from None
    return {section: dict(values) for section, values in config.items() if isinstance(values, Mapping)}


def _render_default(key: Key) -> str:
    default = key.default
    if isinstance(default, frozenset):
        return repr(set(default)) if default else "set()"
    if isinstance(default, tuple):
        return repr(list(default))
    if isinstance(default, bytes):
        return "''"
    return repr(default)


def generate_config() -> str:
    """A commented config file listing every supported key with its default and one line of help."""
    lines = [
        "# Configuration file for gateway: a jupyterhub_config.py that JupyterHub users already know.",
        "# Every supported key is listed with its default. Uncomment and edit what you need.",
        "",
        "c = get_config()  # noqa",
        "",
    ]
    section = None
    for key in KEYS:
        if key.section != section:
            section = key.section
            lines += ["#" + "-" * 78, f"# {section}", "#" + "-" * 78, ""]
        lines.append(f"## {key.help}")
        lines.append(f"# c.{key.section}.{key.name} = {_render_default(key)}")
        lines.append("")
    return "\n".join(lines)


def hub_api_url(settings: Settings) -> str:
    """Where local servers and services reach the hub's REST API (loopback when listening on all addresses):
    bind_url's port, or with TLS the plain-http listener on hub_ip:hub_port (a server on this machine
    reaches https://127.0.0.1 under a certificate made out to the public name, which would not verify)."""
    host, port = (settings.hub_ip, settings.hub_port) if settings.tls else (settings.listen_host, settings.listen_port)
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}{settings.api_prefix.rstrip('/')}"
