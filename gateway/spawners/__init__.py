"""Spawners: the interface (``base``), the local process spawner (``local``) and its readiness
probe (``probe``), process helpers (``procs``), JupyterHub's hooks and options forms for every
spawner (``hooks``), and the adapter that runs JupyterHub spawner plugins unchanged (``plugin``,
the only module importing jupyterhub).

Knows no HTTP request and no store: the ServerManager (``gateway.servers``) drives them.
"""
