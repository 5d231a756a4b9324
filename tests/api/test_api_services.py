"""/hub/api/services...: list, read, add and remove at runtime, over real HTTP."""

from __future__ import annotations

from tests.helpers.api import expect, service_token_with, snapshot, token_with

NOT_FOUND = "No access to resources or resources not found"
SERVICES = (
    {"name": "svc-admin", "admin": True, "api_token": "svc-admin-token-0001"},
    {"name": "svc-plain", "url": "http://127.0.0.1:10101", "api_token": "svc-plain-token-0001", "info": {"a": 1}},
)


def missing(*scopes: str) -> str:
    return f"Action is not authorized with current scopes; requires any of [{', '.join(scopes)}]"


async def test_list_and_get_services(start_hub):
    hub = await start_hub(services=SERVICES)
    admin = await hub.new_token("root", admin=True)
    r = await expect(hub, "GET", "/services", 200, token=admin)
    assert list(r.body) == ["svc-admin", "svc-plain"]
    assert r.body["svc-plain"] == {"kind": "service", "name": "svc-plain", "admin": False, "roles": [],
                                   "url": "http://127.0.0.1:10101", "prefix": "/services/svc-plain/",
                                   "command": [], "pid": 0, "info": {"a": 1}, "display": True}
    assert r.body["svc-admin"]["roles"] == ["admin"] and r.body["svc-admin"]["prefix"] == ""
    assert "token" not in r.text and "svc-plain-token-0001" not in r.text
    r = await expect(hub, "GET", "/services/svc-plain", 200, token="svc-admin-token-0001")
    assert r.body["name"] == "svc-plain"
    await expect(hub, "GET", "/services/nosuch", 404, "No such service: nosuch", token=admin)
    # a service without roles holds no scopes (as in JupyterHub 6.1.1: only whoami answers it);
    # a user with a filtered list scope sees the listed ones
    for name in ("svc-plain", "svc-admin"):
        await expect(hub, "GET", f"/services/{name}", 403,
                     missing("read:services", "read:services:name", "read:roles:services"), token="svc-plain-token-0001")
    await expect(hub, "GET", "/services", 403, missing("list:services"), token="svc-plain-token-0001")
    lister = await token_with(hub, "alice", ["list:services!service=svc-plain"])
    r = await expect(hub, "GET", "/services", 200, token=lister)
    assert r.body == {"svc-plain": {"kind": "service", "name": "svc-plain", "admin": False}}
    plain = await hub.new_token("bob")
    await expect(hub, "GET", "/services/svc-plain", 403,
                 missing("read:services", "read:services:name", "read:roles:services"), token=plain)


async def test_add_and_remove_services(start_hub):
    hub = await start_hub(services=SERVICES)
    admin = await hub.new_token("root", admin=True)
    r = await expect(hub, "POST", "/services/ext", 201, token=admin,
                     json_body={"url": "http://127.0.0.1:10102", "api_token": "ext-token-000001", "info": {"x": 1},
                                "display": False})
    assert r.body["name"] == "ext" and r.body["prefix"] == "/services/ext/" and r.body["display"] is False
    who = await expect(hub, "GET", "/user", 200, token="ext-token-000001")
    assert who.body == {"kind": "service", "name": "ext", "admin": False, "token_id": who.body["token_id"],
                        "session_id": None, "scopes": []}
    r = await expect(hub, "POST", "/services/ext-admin", 201, token=admin, json_body={"admin": True})
    assert r.body["roles"] == ["admin"] and r.body["admin"] is True
    await expect(hub, "POST", "/services/ext", 409, "Service ext already exists", token=admin, json_body={"url": ""})
    before = snapshot(hub)
    bad = [
        (None, "Invalid service data"),
        ([], "Invalid service data"),
        ({"command": ["sleep", "1"]}, "Can not create managed service new at runtime"),
        ({"url": 5}, "service.url must be <class 'str'>, not: <class 'int'>"),
        ({"bogus": 1}, None),
        ({"url": "ftp://x"}, "Failed to create service new"),
        ({"oauth_client_id": "client-x"}, "Failed to create service new"),
        ({"api_token": "short"}, "Failed to create service new"),
        ({"api_token": "ext-token-000001"}, "Failed to create service new"),  # already some service's token
        ({"oauth_client_allowed_scopes": ["nosuch"]}, "Scope 'nosuch' for token does not exist"),
    ]
    for body, message in bad:
        r = await expect(hub, "POST", "/services/new", 400, token=admin, json_body=body)
        if message is not None:
            assert r.body["message"] == message, r.body
        else:
            assert r.body["message"].startswith("Invalid JSON keys: ")
    await expect(hub, "POST", "/services/a%2Fb", 400, "Failed to create service a/b", token=admin, json_body={"url": ""})
    # a caller cannot make a service mightier than itself
    creator = await token_with(hub, "creator", ["admin:services"])
    reader = await token_with(hub, "reader", ["read:services"])
    scoped = await token_with(hub, "scoped", ["admin:services!service=ext-admin"])
    before = snapshot(hub)
    r = await expect(hub, "POST", "/services/mighty", 400, token=creator, json_body={"admin": True})
    assert r.body["message"].startswith("Not assigning requested scopes ")
    r = await expect(hub, "POST", "/services/mighty", 400, token=creator,
                     json_body={"oauth_client_allowed_scopes": ["admin:users"]})
    assert snapshot(hub) == before
    await expect(hub, "DELETE", "/services/svc-plain", 405, "Service svc-plain is not modifiable at runtime",
                 token=admin)
    await expect(hub, "DELETE", "/services/nosuch", 404, "Service nosuch does not exist", token=admin)
    await expect(hub, "DELETE", "/services/ext", 403, missing("admin:services"), token=reader)
    await expect(hub, "POST", "/services/other", 403, missing("admin:services"), token=reader, json_body={"url": ""})
    await expect(hub, "DELETE", "/services/ext", 404, NOT_FOUND, token=scoped)
    await expect(hub, "POST", "/services/unlisted", 404, NOT_FOUND, token=scoped, json_body={"url": ""})
    assert snapshot(hub) == before
    r = await expect(hub, "DELETE", "/services/ext", 200, token=admin)
    assert r.text == ""
    await expect(hub, "GET", "/user", 403, token="ext-token-000001")  # its token went with it
    await expect(hub, "GET", "/services/ext", 404, token=admin)
    await expect(hub, "DELETE", "/services/ext-admin", 200, token=scoped)


async def test_service_tokens_see_what_roles_grant(start_hub):
    hub = await start_hub(services=SERVICES)
    token = await service_token_with(hub, "lister", ["list:services"])
    r = await expect(hub, "GET", "/services", 200, token=token)
    assert sorted(r.body) == ["lister", "svc-admin", "svc-plain"]
    assert all(set(m) == {"kind", "name", "admin"} for m in r.body.values())
