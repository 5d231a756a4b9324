"""The HTML pages under /hub/ (login, home, spawn, admin, accept-share), their kit, templates and static files.

Pages act through the same store and ServerManager as the REST API; they never import a REST route module.
"""
