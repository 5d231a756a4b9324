"""Prometheus metrics: JupyterHub's families (so existing dashboards work) plus the proxy's own.

Vocabulary:
- *family*: one metric name with its labels, e.g. ``jupyterhub_request_duration_seconds``.
- *registry*: each app has its own ``CollectorRegistry`` (never prometheus_client's global one),
  so several gateways can run in one process (the tests do).
- *scrape-time gauges*: ``jupyterhub_total_users``, ``jupyterhub_active_users{period}`` and
  ``jupyterhub_running_servers`` are computed when ``/hub/metrics`` is read, from the store and
  the ServerManager, instead of being kept up to date on every change.
- *handler label*: the matched route's canonical path template (``/hub/api/users/{user_name}``),
  never the raw path, so the number of series stays bounded whatever clients send.

Hot-path methods (``proxy_request``, ``websocket_opened`` ...) touch pre-resolved children
only: a dict lookup and an increment, no I/O, no allocation of label tuples.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from gateway.servers import ServerManager
    from gateway.store import Store

# JupyterHub's buckets: spawns can take minutes; stops use Prometheus' defaults.
SPAWN_BUCKETS = (0.5, 1, 2.5, 5, 10, 15, 30, 60, 120, 180, 300, 600, float("inf"))
STOP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, float("inf"))
ACTIVE_PERIODS = (("24h", 86400), ("7d", 7 * 86400), ("30d", 30 * 86400))
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # handler label for requests no route matched (404, 405 on unknown paths)
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
METRICS_SCOPE = "read:metrics"
FORBIDDEN_MESSAGE = f"Access to metrics requires scope '{METRICS_SCOPE}'"


class Metrics:
    """Every metric of one gateway, in its own registry. Created by ``setup(app)``."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.created = time.monotonic()
        self.request_duration = Histogram(
            "jupyterhub_request_duration_seconds", "Request duration for all HTTP requests",
            ["method", "handler", "code"], registry=registry)
        self.spawn_duration = Histogram(
            "jupyterhub_server_spawn_duration_seconds", "Time taken for server spawning operation",
            ["status", "reason"], buckets=SPAWN_BUCKETS, registry=registry)
        self.stop_duration = Histogram(
            "jupyterhub_server_stop_seconds", "Time taken for server stopping operation",
            ["status"], buckets=STOP_BUCKETS, registry=registry)
        self.startup_duration = Histogram(
            "jupyterhub_hub_startup_duration_seconds", "Time taken for Hub to start", registry=registry)
        self.running_servers = Gauge(
            "jupyterhub_running_servers", "The number of user servers currently running", registry=registry)
        self.total_users = Gauge("jupyterhub_total_users", "Total number of users", registry=registry)
        self.active_users = Gauge(
            "jupyterhub_active_users", "Number of users who were active in the given time period",
            ["period"], registry=registry)
        self.proxy_requests = Counter(
            "gateway_proxy_requests", "Requests proxied to user servers and services, by status class",
            ["status"], registry=registry)
        self.proxy_bytes = Counter(
            "gateway_proxy_bytes", "Body bytes proxied (in: client to backend, out: backend to client)",
            ["direction"], registry=registry)
        self.open_websockets = Gauge(
            "gateway_proxy_open_websockets", "Websocket connections open through the proxy", registry=registry)
        self.backend_errors = Counter(
            "gateway_proxy_backend_errors", "Proxied requests whose backend could not be reached or failed",
            registry=registry)
        # Pre-resolved children: the hot paths never call labels().
        self._status_class = [self.proxy_requests.labels(c) for c in STATUS_CLASSES]
        self._bytes_in = self.proxy_bytes.labels("in")
        self._bytes_out = self.proxy_bytes.labels("out")
        self._request_children: dict[str, dict[str, dict[int, Any]]] = {}
        for status in ("success", "failure", "cancelled"):
            self.spawn_duration.labels(status, "")
        self._stop_success = self.stop_duration.labels("success")
        self._active = [(self.active_users.labels(label), seconds) for label, seconds in ACTIVE_PERIODS]

    # ------------------------------------------------------------ called by the ServerManager

    def observe_spawn(self, status: str, seconds: float) -> None:
        self.spawn_duration.labels(status, "").observe(seconds)

    def observe_stop(self, seconds: float) -> None:
        self._stop_success.observe(seconds)

    # ------------------------------------------------------------ called by the proxy (hot path)

    def proxy_request(self, status: int, bytes_in: int, bytes_out: int) -> None:
        index = status // 100 - 1
        self._status_class[index if 0 <= index < 5 else 4].inc()
        if bytes_in:
            self._bytes_in.inc(bytes_in)
        if bytes_out:
            self._bytes_out.inc(bytes_out)

    def websocket_opened(self) -> None:
        self.open_websockets.inc()

    def websocket_closed(self) -> None:
        self.open_websockets.dec()

    def backend_error(self) -> None:
        self.backend_errors.inc()

    # ------------------------------------------------------------ hub requests

    def observe_request(self, method: str, handler: str, code: int, seconds: float) -> None:
        # Nested dicts rather than a tuple key: no allocation per request once a series exists.
        if method not in METHODS:
            method = "other"  # attacker-chosen methods must not create series
        by_handler = self._request_children.get(method)
        if by_handler is None:
            by_handler = self._request_children[method] = {}
        by_code = by_handler.get(handler)
        if by_code is None:
            by_code = by_handler[handler] = {}
        child = by_code.get(code)
        if child is None:
            child = by_code[code] = self.request_duration.labels(method, handler, str(code))
        child.observe(seconds)

    def observe_startup(self) -> None:
        self.startup_duration.observe(time.monotonic() - self.created)

    # ------------------------------------------------------------ scrape

    async def refresh(self, store: Store, servers: ServerManager | None) -> None:
        """Set the scrape-time gauges from the store and the ServerManager (None: not running)."""
        self.total_users.set(await store.count_users())
        now = time.time()
        for child, seconds in self._active:
            child.set(await store.count_active_users(now - seconds))
        if servers is not None:
            self.running_servers.set(servers.running_count())
        else:
            self.running_servers.set(len(await store.running_servers()))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def handler_label(request: web.Request) -> str:
    """The canonical route template of the request, bounded whatever the path was."""
    match_info = request.match_info
    resource = match_info.route.resource if match_info is not None else None
    return resource.canonical if resource is not None else UNMATCHED


def make_timing_middleware(metrics: Metrics):
    """Observe hub requests' duration (a middleware of the hub's sub-apps; the proxy counts its own)."""
    perf_counter = time.perf_counter

    @web.middleware
    async def request_timer(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
        start = perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as e:  # redirects raised by handlers pass through the error middleware
            status = e.status
            raise
        finally:
            metrics.observe_request(request.method, handler_label(request), status, perf_counter() - start)

    return request_timer
