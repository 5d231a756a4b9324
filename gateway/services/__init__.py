"""Domain services beside servers: managed services (``c.JupyterHub.services``) and the OAuth provider.

No HTTP route module is imported from here.
"""
