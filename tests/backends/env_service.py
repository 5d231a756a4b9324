"""A tiny managed service for tests: listens where ``$JUPYTERHUB_SERVICE_URL`` says and answers, under
``$JUPYTERHUB_SERVICE_PREFIX``:

  GET  env      its whole environment (a test service: the token is shown on purpose), plus _cwd and _pid
  ANY  echo...  method, raw path and request headers, as it received them through the gateway
  GET  cookie   sets a cookie on its own path and one it may not set (the gateway's login cookie)

Run by the gateway as ``python tests/backends/env_service.py``.
"""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

from aiohttp import web


async def env(request: web.Request) -> web.Response:
    return web.json_response({**os.environ, "_cwd": os.getcwd(), "_pid": str(os.getpid())})


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response({"method": request.method, "path": request.raw_path,
                              "headers": list(request.headers.items()), "body": body.decode("latin-1")})


async def cookie(request: web.Request) -> web.Response:
    prefix = os.environ["JUPYTERHUB_SERVICE_PREFIX"]
    response = web.Response(text="cookies")
    response.headers.add("Set-Cookie", f"svc=1; Path={prefix}")
    response.headers.add("Set-Cookie", f"_xsrf=svc-xsrf; Path={prefix}")
    response.headers.add("Set-Cookie", "gateway-login=stolen; Path=/")
    return response


def main() -> None:
    url = urlsplit(os.environ["JUPYTERHUB_SERVICE_URL"])
    prefix = unquote(os.environ["JUPYTERHUB_SERVICE_PREFIX"])  # aiohttp matches decoded paths
    app = web.Application()
    app.router.add_get(prefix + "env", env)
    app.router.add_get(prefix + "cookie", cookie)
    app.router.add_route("*", prefix + "echo{tail:.*}", echo)
    web.run_app(app, host=url.hostname, port=url.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
