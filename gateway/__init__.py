"""gateway: JupyterHub's hub and proxy in one aiohttp process."""

__version__ = "0.1.0"
# The JupyterHub REST API version whose contract we serve; clients such as
# jupyterhub-idle-culler compare against it.
JUPYTERHUB_API_VERSION = "6.1.1"
