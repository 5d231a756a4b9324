"""A service built on ``jupyterhub.services.auth.HubOAuth``, the way JupyterHub's documentation
shows it: tornado, ``HubOAuthenticated`` + ``@authenticated`` on the page, ``HubOAuthCallbackHandler``
at ``oauth_callback``. Everything comes from the environment the hub gives a managed service.

  GET  <prefix>        the logged-in hub user's model as JSON (browser: OAuth login through the hub)
  POST <prefix>        the same, for a form post (checks HubOAuth's own XSRF token)
"""

from __future__ import annotations

import json
import os
from urllib.parse import urlsplit

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.web import Application, RequestHandler, authenticated


class WhoAmI(HubOAuthenticated, RequestHandler):
    @authenticated
    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(self.get_current_user(), sort_keys=True))

    @authenticated
    def post(self) -> None:
        self.get()


def main() -> None:
    prefix = os.environ["JUPYTERHUB_SERVICE_PREFIX"]
    app = Application(
        [(prefix, WhoAmI), (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler)],
        cookie_secret=os.urandom(32),
    )
    url = urlsplit(os.environ["JUPYTERHUB_SERVICE_URL"])
    HTTPServer(app).listen(url.port, url.hostname)
    IOLoop.current().start()


if __name__ == "__main__":
    main()
