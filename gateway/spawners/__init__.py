"""Spawners: the interface (``base``), the local process spawner (``local``) and process helpers (``procs``).

Knows no HTTP request and no store: the ServerManager (``gateway.servers``) drives them.
"""
