"""Process lifecycle of a serving gateway: one gateway per database, and reloading config on SIGHUP.

- *database lock*: ``<db>.lock`` held with ``flock`` for the serving process's lifetime, so a
  second gateway on the same database refuses to start (two writers would fight over the
  servers they both think they manage). The kernel drops the lock when the process dies, even
  by SIGKILL. ``gateway token`` and ``gateway upgrade-db`` do not take it: they work while the
  gateway runs. The file descriptor is close-on-exec, so spawned servers never inherit it.
- *reload*: SIGHUP re-reads the config file and applies what can change in a running process
  (see ``RELOADABLE``; ``gateway.app.reload_settings`` applies them); every other changed key is named in
  a warning and needs a restart.

Reloaded without a restart (``RELOADABLE``): log level; users, admins, allowed/blocked users,
services, api_tokens, load_groups, load_roles and custom scopes (through ``bootstrap.sync_config``);
spawner options for future starts; limits (spawn, active servers, named servers, page sizes,
token expiry); idle culling; ``authenticate_prometheus``; ``cleanup_servers``.
Needs a restart (``NEEDS_RESTART``): the listening address, ``base_url``, ``public_url``, the
database, the cookie secret and cookie age, the authenticator and its passwords, the spawner class
and poll interval, ``data_dir``, ``activity_resolution``, ``admin_access``, ``max_body_size``,
``shutdown_timeout``.
"""

from __future__ import annotations

import fcntl
import logging
import os
from dataclasses import fields

from gateway.config import Settings

log = logging.getLogger("gateway")

NEEDS_RESTART = frozenset({
    "bind_url", "ip", "port", "ssl_cert", "ssl_key", "hub_ip", "hub_port", "base_url", "public_url", "db_url", "cookie_secret_file", "cookie_secret",
    "cookie_max_age_days", "authenticator_class", "authenticator_plugin", "plugin_config", "spawner_class",
    "data_dir", "activity_resolution",
    "admin_access", "shared_password", "admin_password", "dummy_password", "pam_service",
    "pam_allowed_groups", "pam_admin_groups", "authenticate_in_thread",
    "spawner_poll_interval", "max_body_size", "shutdown_timeout", "uvloop",
    "front_doors",
})
RELOADABLE = frozenset(f.name for f in fields(Settings)) - NEEDS_RESTART - {"config_file"}


class AlreadyRunning(Exception):
    """Another gateway process holds the database lock."""


def lock_path(db_path: str) -> str:
    return db_path + ".lock"


def acquire_database_lock(db_path: str) -> int | None:
    """Take ``<db>.lock`` for this process's lifetime; return its fd (None for an in-memory database)."""
    if db_path == ":memory:":
        return None
    path = lock_path(db_path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_pid(fd)
        os.close(fd)
        who = f" (pid {holder})" if holder else ""
        raise AlreadyRunning(
            f"Another gateway{who} is already running on the database {db_path}; "
            f"stop it first (it holds {path})") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _read_pid(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def release_database_lock(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # closing the only descriptor releases the flock


def changed_fields(old: Settings, new: Settings) -> set[str]:
    return {f.name for f in fields(Settings) if getattr(old, f.name) != getattr(new, f.name)}
