"""Metrics over real HTTP: /hub/metrics scope checks, JupyterHub's families, the proxy's families."""

from __future__ import annotations

import html
import time

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from gateway import keys
from tests.helpers.paths import FAKE_SERVER

FAKE = FAKE_SERVER
FORBIDDEN = "Access to metrics requires scope &#x27;read:metrics&#x27;"


async def scrape(hub, token: str | None = None, path: str = "/hub/metrics") -> dict[str, dict[tuple, float]]:
    """{sample name: {sorted label items: value}} from a scrape parsed by Prometheus' own text parser."""
    headers = {"Authorization": f"token {token}"} if token else {}
    async with hub.session.get(hub.url + path, headers=headers) as r:
        assert r.status == 200, await r.text()
        assert r.headers["Content-Type"] == "text/plain; version=1.0.0; charset=utf-8"
        text = await r.text()
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples, name: str, **labels) -> float:
    return samples[name][tuple(sorted(labels.items()))]


async def test_metrics_need_read_metrics_scope(hub):
    admin = await hub.new_token("root", admin=True)
    user = await hub.new_token("alice")
    # a token limited to read:metrics, of a user granted it through a role (as a Prometheus service would be)
    bob = await hub.new_user("bob")
    role = await hub.store.upsert_role("prometheus", "scrape metrics", ["read:metrics"])
    await hub.store.grant_role(role.id, user_id=bob.id)
    reader = await hub.new_token("bob", scopes=["read:metrics"])
    assert (await hub.api("GET", "/info", token=reader)).status == 403
    for path in ("/hub/metrics", "/hub/api/metrics"):
        for token in (None, user, "0" * 64):
            headers = {"Authorization": f"token {token}"} if token else {}
            async with hub.session.get(hub.url + path, headers=headers) as r:
                assert r.status == 403, (path, token)
                assert r.headers["Content-Type"].startswith("text/html")  # HTML even under /hub/api
                assert html.unescape(FORBIDDEN) in html.unescape(await r.text())
        for token in (admin, reader):
            samples = await scrape(hub, token, path)
            assert "jupyterhub_total_users" in samples


async def test_metrics_with_login_cookie(hub):
    from gateway.identity.caches import SESSION_COOKIE

    root = await hub.new_user("root", admin=True)
    session = await hub.store.create_session("s-metrics", root.id, time.time() + 3600)
    cookie = hub.app[keys.AUTHORIZER].session_cookie_value(session.id)
    async with aiohttp.ClientSession(cookies={SESSION_COOKIE: cookie}) as s:
        async with s.get(hub.url + "/hub/metrics") as r:
            assert r.status == 200
            assert "jupyterhub_running_servers" in await r.text()


async def test_authenticate_prometheus_false(start_hub):
    hub = await start_hub(authenticate_prometheus=False)
    samples = await scrape(hub)
    assert value(samples, "jupyterhub_total_users") == 0


async def test_user_gauges_computed_at_scrape(hub):
    admin = await hub.new_token("root", admin=True)
    now = time.time()
    users = {name: await hub.new_user(name) for name in ("u1", "u2", "u3", "u4")}
    await hub.store.touch_users({users["u1"].id: now - 60, users["u2"].id: now - 3 * 86400,
                                 users["u3"].id: now - 20 * 86400, users["u4"].id: now - 90 * 86400})
    samples = await scrape(hub, admin)
    assert value(samples, "jupyterhub_total_users") == 5  # and root
    assert value(samples, "jupyterhub_active_users", period="24h") == 1
    assert value(samples, "jupyterhub_active_users", period="7d") == 2
    assert value(samples, "jupyterhub_active_users", period="30d") == 3
    assert value(samples, "jupyterhub_running_servers") == 0
    assert value(samples, "jupyterhub_hub_startup_duration_seconds_count") == 1


async def test_request_duration_labels_are_route_templates(hub):
    admin = await hub.new_token("root", admin=True)
    for name in ("x1", "x2", "x3", "a%2Fb", "y" * 200):
        await hub.api("GET", f"/users/{name}/server", token=admin)
    await hub.api("GET", "/no/such/thing/42", token=admin)
    async with hub.session.request("BREW", hub.url + "/hub/api/info") as r:
        assert r.status in (400, 405)
    samples = await scrape(hub, admin)
    durations = samples["jupyterhub_request_duration_seconds_count"]
    handlers = {dict(labels)["handler"] for labels in durations}
    assert "/hub/api/users/{user_name}/server" in handlers
    assert "unmatched" in handlers
    assert not any("x1" in h or "yyy" in h or "42" in h for h in handlers)  # no raw paths
    assert value(samples, "jupyterhub_request_duration_seconds_count", code="404", method="GET",
                 handler="/hub/api/users/{user_name}/server") == 5
    assert {dict(labels)["method"] for labels in durations} <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE",
                                                                "OPTIONS", "other"}


async def test_proxied_paths_not_timed_by_hub(hub):
    admin = await hub.new_token("root", admin=True)
    for _ in range(3):
        async with hub.session.get(hub.url + "/user/nobody/api/status") as r:
            await r.read()
    samples = await scrape(hub, admin)
    handlers = {dict(labels)["handler"] for labels in samples.get("jupyterhub_request_duration_seconds_count", {})}
    assert not any(h.startswith("/user/") for h in handlers)
    unmatched = [v for labels, v in samples.get("jupyterhub_request_duration_seconds_count", {}).items()
                 if dict(labels)["handler"] == "unmatched"]
    assert sum(unmatched) == 0


async def test_proxy_families_from_the_proxy_api(hub):
    admin = await hub.new_token("root", admin=True)
    metrics = hub.app[keys.METRICS]
    metrics.proxy_request(200, 10, 1000)
    metrics.proxy_request(204, 0, 0)
    metrics.proxy_request(302, 0, 5)
    metrics.proxy_request(404, 7, 20)
    metrics.proxy_request(503, 0, 30)
    metrics.backend_error()
    metrics.websocket_opened()
    metrics.websocket_opened()
    metrics.websocket_closed()
    samples = await scrape(hub, admin)
    assert value(samples, "gateway_proxy_requests_total", status="2xx") == 2
    assert value(samples, "gateway_proxy_requests_total", status="3xx") == 1
    assert value(samples, "gateway_proxy_requests_total", status="4xx") == 1
    assert value(samples, "gateway_proxy_requests_total", status="5xx") == 1
    assert value(samples, "gateway_proxy_bytes_total", direction="in") == 17
    assert value(samples, "gateway_proxy_bytes_total", direction="out") == 1055
    assert value(samples, "gateway_proxy_open_websockets") == 1
    assert value(samples, "gateway_proxy_backend_errors_total") == 1


async def test_spawn_and_stop_observed(start_hub):
    hub = await start_hub(spawner_cmd=FAKE, spawner_start_timeout=20.0)
    admin = await hub.new_token("root", admin=True)
    token = await hub.new_token("alice")
    assert (await hub.api("POST", "/users/alice/server", token=token)).status == 201
    samples = await scrape(hub, admin)
    assert value(samples, "jupyterhub_running_servers") == 1
    assert value(samples, "jupyterhub_server_spawn_duration_seconds_count", status="success", reason="") == 1
    assert (await hub.api("DELETE", "/users/alice/server", token=token)).status == 204
    samples = await scrape(hub, admin)
    assert value(samples, "jupyterhub_running_servers") == 0
    assert value(samples, "jupyterhub_server_stop_seconds_count", status="success") == 1


async def test_each_app_has_its_own_registry(start_hub, tmp_path):
    one = await start_hub(authenticate_prometheus=False, db_url=f"sqlite:///{tmp_path / 'one.sqlite'}")
    two = await start_hub(authenticate_prometheus=False, db_url=f"sqlite:///{tmp_path / 'two.sqlite'}")
    one.app[keys.METRICS].backend_error()
    assert value(await scrape(one), "gateway_proxy_backend_errors_total") == 1
    assert value(await scrape(two), "gateway_proxy_backend_errors_total") == 0
