"""The REST API under /hub/api (JupyterHub's contract): one module per resource, with request parsing
(``apiutil``) and shared lookups (``common``).

Nothing below the routes imports a route module.
"""
