"""Servers: the lifecycle of every single-user server, in one place (never in handlers).

``manager.ServerManager`` starts, stops, watches and recovers servers; ``making`` makes each start's
spawner (options, class, spec, tokens); ``entries`` holds the per-server record and its progress events.
"""

from gateway.servers.entries import Entry, describe, encode_event, last_ready_event
from gateway.servers.making import SpawnerMaker, servers_hub_api_url
from gateway.servers.manager import NAMED_SERVERS_DISABLED, SLOW_SPAWN_TIMEOUT, SLOW_STOP_TIMEOUT, ServerManager

__all__ = ["NAMED_SERVERS_DISABLED", "SLOW_SPAWN_TIMEOUT", "SLOW_STOP_TIMEOUT", "Entry", "ServerManager",
           "SpawnerMaker", "describe", "encode_event", "last_ready_event", "servers_hub_api_url"]
