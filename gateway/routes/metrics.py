"""GET /hub/metrics and /hub/api/metrics: the Prometheus exposition of ``gateway.ops.metrics``."""

from __future__ import annotations

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from gateway import keys
from gateway.errors import plain_html_error
from gateway.ops.metrics import FORBIDDEN_MESSAGE, METRICS_SCOPE


def may_read_metrics(request: web.Request) -> bool:
    if not request.config_dict[keys.SETTINGS].authenticate_prometheus:
        return True
    identity = request.get(keys.IDENTITY)
    return identity is not None and not identity.anonymous and identity.scopes.has(METRICS_SCOPE)


async def metrics_page(request: web.Request) -> web.StreamResponse:
    """GET /hub/metrics and /hub/api/metrics: Prometheus text, or 403 HTML as JupyterHub answers."""
    if not may_read_metrics(request):
        renderer = request.config_dict.get(keys.ERROR_PAGE, plain_html_error)
        return await renderer(request, 403, FORBIDDEN_MESSAGE)
    metrics = request.config_dict[keys.METRICS]
    await metrics.refresh(request.config_dict[keys.STORE], request.config_dict.get(keys.SERVERS))
    return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})


# Checked by the meta-test on API routes; the handler checks the scope itself because
# JupyterHub answers HTML (not the API's JSON) here, and authenticate_prometheus may waive it.
metrics_page.__required_scopes__ = (METRICS_SCOPE,)  # type: ignore[attr-defined]


async def record_startup(app: web.Application) -> None:
    app[keys.METRICS].observe_startup()


def setup(app: web.Application) -> None:
    for part in (app[keys.HUB_APP], app[keys.API_APP]):  # /hub/metrics and /hub/api/metrics
        part.router.add_get("/metrics", metrics_page, allow_head=False)
