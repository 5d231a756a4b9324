"""Properties of the whole API: every route declares its scope check, the route list, the JSON error shape."""

from __future__ import annotations

import json
import time
import uuid

import aiohttp
from aiohttp import web

from gateway import keys
from gateway.app import create_app
from tests.helpers.api import assert_error_shape, call, expect, snapshot

# (method, path relative to /hub/api) that this API serves; servers, shares and OAuth live elsewhere.
ENDPOINTS = {
    ("GET", "/"), ("GET", "/info"), ("GET", "/user"), ("GET", "/health"),
    ("GET", "/users"), ("POST", "/users"),
    ("GET", "/users/{user_name}"), ("POST", "/users/{user_name}"), ("PATCH", "/users/{user_name}"),
    ("DELETE", "/users/{user_name}"),
    ("POST", "/users/{user_name}/activity"), ("POST", "/users/{user_name}/admin-access"),
    ("GET", "/users/{user_name}/tokens"), ("POST", "/users/{user_name}/tokens"),
    ("GET", "/users/{user_name}/tokens/{token_id}"), ("DELETE", "/users/{user_name}/tokens/{token_id}"),
    ("GET", "/authorizations/token/{token}"), ("POST", "/authorizations/token"),
    ("GET", "/groups"), ("POST", "/groups"),
    ("GET", "/groups/{group_name}"), ("POST", "/groups/{group_name}"), ("DELETE", "/groups/{group_name}"),
    ("POST", "/groups/{group_name}/users"), ("DELETE", "/groups/{group_name}/users"),
    ("PUT", "/groups/{group_name}/properties"),
    ("GET", "/services"), ("GET", "/services/{service_name}"), ("POST", "/services/{service_name}"),
    ("DELETE", "/services/{service_name}"),
    ("POST", "/shutdown"), ("GET", "/proxy"), ("POST", "/proxy"), ("PATCH", "/proxy"),
}


def unguarded_api_routes(app: web.Application, api_prefix: str) -> list[str]:
    """Routes under the API prefix whose handler carries no ``__required_scopes__`` declaration."""
    bare = api_prefix.rstrip("/")
    found = []
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if not (path.startswith(api_prefix) or path == bare):
            continue
        if getattr(route.handler, "__required_scopes__", None) is None:
            found.append(f"{route.method} {path}")
    return found


def api_routes(app: web.Application, api_prefix: str) -> set[tuple[str, str]]:
    bare = api_prefix.rstrip("/")
    return {(r.method, r.resource.canonical[len(bare):] or "/") for r in app.router.routes()
            if r.resource is not None and (r.resource.canonical.startswith(api_prefix) or r.resource.canonical == bare)}


def test_every_api_route_declares_its_scope_check(make_settings):
    for base_url in ("/", "/a%40b/"):
        settings = make_settings(base_url=base_url)
        app = create_app(settings)
        # routes are registered in route form (decoded, as aiohttp matches): /a@b/hub/api/...
        assert unguarded_api_routes(app, settings.api_route) == []
        served = api_routes(app, settings.api_route)
        # each server's own view of the API (gateway.identity.server_view) serves the same routes
        mirror = "/_server/{gateway_server_id}"
        mirrored = {(m, p[len(mirror):] or "/") for m, p in served if p.startswith(mirror)}
        served -= {(m, p) for m, p in served if p.startswith(mirror)}
        not_for_servers = {("GET", "/health"), ("HEAD", "/health"), ("GET", "/metrics"),
                           ("GET", "/oauth2/authorize"), ("POST", "/oauth2/authorize")}  # browsers, monitoring
        assert mirrored <= served and served - mirrored <= not_for_servers, served - mirrored
        assert ENDPOINTS <= served, ENDPOINTS - served
        assert {m for m, _ in served} <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
        assert {p for m, p in served if m == "HEAD"} <= {"/health", "/"}  # elsewhere HEAD is a 405, as JupyterHub


def test_meta_test_catches_an_unguarded_route(make_settings):
    settings = make_settings()
    app = create_app(settings)

    async def forgotten(request):
        return web.Response()

    app.router.add_get(settings.api_prefix + "forgotten", forgotten, allow_head=False)
    assert unguarded_api_routes(app, settings.api_prefix) == ["GET /hub/api/forgotten"]


async def test_error_shapes(start_hub):
    """One JSON shape for 400/403/404/405/409/413 (500 is pinned in test_foundation)."""
    hub = await start_hub(max_body_size=1024)
    admin = await hub.new_token("root", admin=True)
    await expect(hub, "POST", "/users", 400, "Invalid JSON in body of request", token=admin, data=b"\xff\xfe",
                 headers={"Content-Type": "application/json"})
    await expect(hub, "GET", "/users", 403, "Missing or invalid credentials.")
    await expect(hub, "GET", "/users/nosuch", 404, None, token=admin)
    await expect(hub, "GET", "/no/such/thing", 404, None)
    await expect(hub, "PUT", "/users", 405, token=admin)
    await expect(hub, "POST", "/groups/g", 201, token=admin)
    await expect(hub, "POST", "/groups/g", 409, "Group g already exists", token=admin)
    r = await expect(hub, "POST", "/groups/g/users", 413, token=admin, json_body={"users": ["x" * 2000]})
    assert "too large" in r.body["message"]
    # a chunked body (no Content-Length) is cut off at the limit too
    async def chunks():
        yield b'{"users": ["'
        for _ in range(100):
            yield b"y" * 100
        yield b'"]}'
    r = await call(hub, "POST", "/groups/g/users", token=admin, data=chunks(),
                   headers={"Content-Type": "application/json"})
    assert r.status == 413


async def test_options_and_head(hub):
    for path in ("/users", "/users/alice", "/groups/x/properties", "/proxy"):
        r = await hub.api("OPTIONS", path)
        assert r.status == 200 and r.text == ""
    await expect(hub, "HEAD", "/users", 405)


async def test_oversized_url_is_refused_and_hub_keeps_serving(hub):
    admin = await hub.new_token("root", admin=True)
    async with aiohttp.ClientSession() as session:
        async with session.get(hub.api_url + "/users/" + "n" * 10_000, headers={"Authorization": f"token {admin}"}) as r:
            assert r.status in (400, 414)  # refused by the HTTP parser before routing
    r = await expect(hub, "GET", "/users", 200, token=admin)
    assert json.dumps(r.body)
    assert_error_shape((await call(hub, "GET", "/users/nosuch", token=admin)))


async def test_cookie_calls_need_xsrf_on_scoped_endpoints(hub):
    """CVE-2020-36191: a browser session changes nothing through the API without the XSRF token."""
    user = await hub.new_user("root", admin=True)
    authorizer = hub.app[keys.AUTHORIZER]
    session_id = uuid.uuid4().hex
    await hub.store.create_session(session_id, user.id, time.time() + 3600)
    cookie = {"Cookie": f"gateway-login={authorizer.session_cookie_value(session_id)}"}
    xsrf = {"X-XSRFToken": authorizer.xsrf_token(session_id, hub.settings.hub_prefix)}
    before = snapshot(hub)
    for method, path, body in (("POST", "/groups/g", None), ("POST", "/users", {"usernames": ["x"]}),
                               ("PATCH", "/users/root", {"name": "boss"}), ("DELETE", "/users/root", None),
                               ("POST", "/shutdown", None)):
        await expect(hub, method, path, 403, f"'_xsrf' argument missing from {method}", json_body=body, headers=cookie)
        await expect(hub, method, path, 403, "'_xsrf' argument invalid", json_body=body,
                     headers={**cookie, "X-XSRFToken": "x"})
    await expect(hub, "GET", "/users", 403, "'_xsrf' argument missing from GET", headers={**cookie, "Sec-Fetch-Mode": "cors"})
    assert snapshot(hub) == before
    await expect(hub, "GET", "/users", 200, headers=cookie)  # a plain navigation
    await expect(hub, "POST", "/groups/g", 201, headers={**cookie, **xsrf})
    await expect(hub, "GET", "/users", 200, headers={**cookie, **xsrf, "Sec-Fetch-Mode": "cors"})
