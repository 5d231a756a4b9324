"""POST /hub/api/batchspawner: where batchspawner's job wrapper reports the port its server listens on.

batchspawner 1.3 adds this handler to JupyterHub's API when imported; gateway serves it itself.
The wrapper (``batchspawner-singleuser``) posts ``{"port": N}`` with the server's own API token;
only that token may set keys on that server's spawner, whose start() then sees the port and returns.
"""

from __future__ import annotations

from aiohttp import web

from gateway import keys
from gateway.routes.apiutil import json_body, mount_api
from gateway.auth import authenticated, bearer_token, current_identity
from gateway.errors import ApiError, json_response

routes = web.RouteTableDef()
REPORTABLE = {"port", "ip"}  # what the job wrapper sends; nothing else may be set from outside


@routes.post("/batchspawner")
@authenticated
async def batchspawner_report(request: web.Request) -> web.Response:
    identity = current_identity(request)
    token = bearer_token(request) or ""
    context = request.config_dict[keys.SERVERS].plugin_context
    adapter = None
    if context is not None and identity.user is not None and identity.via == "token" and token:
        adapter = context.by_api_token(identity.user.name, token)
    if adapter is None:
        raise ApiError(403, "Only a batch server's own API token may report its port.")
    data = await json_body(request)
    if not isinstance(data, dict):
        raise ApiError(400, "Expected a JSON object such as {\"port\": 8888}")
    unknown = set(data) - REPORTABLE
    if unknown:
        raise ApiError(400, f"Cannot set {', '.join(sorted(unknown))}; only port and ip may be reported")
    port = data.get("port")
    if "port" in data and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
        raise ApiError(400, f"port must be an integer from 1 to 65535, got {port!r}")
    if "ip" in data and not isinstance(data["ip"], str):
        raise ApiError(400, "ip must be a string")
    adapter.set_reported(data)
    return json_response({"message": "BatchSpawner data configured"}, 200)


def setup(app: web.Application) -> None:
    mount_api(app, routes)
