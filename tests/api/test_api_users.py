"""/hub/api/users...: list, create, read, modify, delete, activity, admin-access, over real HTTP."""

from __future__ import annotations

import time

import pytest

from gateway.vocab.serialize import iso
from tests.helpers.api import call, expect, running, service_token_with, snapshot, token_with

NOT_FOUND = "No access to resources or resources not found"
CREDENTIALS = "Missing or invalid credentials."


def missing(*scopes: str) -> str:
    return f"Action is not authorized with current scopes; requires any of [{', '.join(scopes)}]"


@pytest.fixture
async def hub(start_hub):
    return await start_hub(allow_named_servers=True)


# ---------------------------------------------------------------- GET /users


async def test_list_users_models_and_scopes(hub):
    admin = await hub.new_token("root", admin=True)
    await hub.new_user("alice")
    r = await expect(hub, "GET", "/users", 200, token=admin)
    assert [u["name"] for u in r.body] == ["root", "alice"]
    assert set(r.body[1]) == {"kind", "name", "admin", "roles", "groups", "server", "pending", "created",
                              "last_activity", "user_info", "servers", "auth_state"}
    assert r.body[1]["roles"] == ["user"] and r.body[0]["roles"] == ["user", "admin"]
    assert r.body[1]["auth_state"] is None and r.body[1]["servers"] == {}
    alice = await hub.new_token("alice")
    await expect(hub, "GET", "/users", 403, missing("list:users"), token=alice)
    await expect(hub, "GET", "/users", 403, CREDENTIALS)
    await expect(hub, "GET", "/users", 403, CREDENTIALS, token="not-a-token")
    # list:users alone reveals names only (list:users -> read:users:name)
    lister = await token_with(hub, "lister", ["list:users"])
    r = await expect(hub, "GET", "/users", 200, token=lister)
    assert r.body[1] == {"kind": "user", "name": "alice", "admin": False, "user_info": None}


async def test_list_users_post_filtered(hub):
    for name in ("alice", "bob", "carol"):
        await hub.new_user(name)
    g = (await hub.store.create_groups(["team"], [(await hub.store.get_user("carol")).id]))[0]
    assert g.name == "team"
    token = await token_with(hub, "dave", ["list:users!user=alice", "list:users!group=team"])
    r = await expect(hub, "GET", "/users", 200, token=token)
    assert sorted(u["name"] for u in r.body) == ["alice", "carol"]
    r = await expect(hub, "GET", "/users", 200, token=token, headers={"Accept": "application/jupyterhub-pagination+json"})
    assert r.body["_pagination"]["total"] == 2
    # a !server= filter on list:users must not widen to everyone: bare 403
    bad = await token_with(hub, "erin", ["list:users!server=alice/"])
    await expect(hub, "GET", "/users", 403, None, token=bad)


async def test_list_users_pagination_sort_and_filters(hub):
    admin = await hub.new_token("root", admin=True)
    for name in ("bo", "al", "cy", "Dee"):
        await hub.new_user(name.lower())
    r = await expect(hub, "GET", "/users?limit=2&offset=1", 200, token=admin)
    assert [u["name"] for u in r.body] == ["bo", "al"]
    paged = {"Accept": "application/jupyterhub-pagination+json"}
    r = await expect(hub, "GET", "/users?limit=2&sort=name&x=1", 200, token=admin, headers=paged)
    assert [u["name"] for u in r.body["items"]] == ["al", "bo"]
    page = r.body["_pagination"]
    assert (page["offset"], page["limit"], page["total"]) == (0, 2, 5)
    assert page["next"]["offset"] == 2 and "x=1" in page["next"]["url"] and "offset=2" in page["next"]["url"]
    r = await expect(hub, "GET", "/users?offset=4", 200, token=admin, headers=paged)
    assert r.body["_pagination"]["next"] is None and len(r.body["items"]) == 1
    r = await expect(hub, "GET", "/users?sort=-name", 200, token=admin)
    assert [u["name"] for u in r.body] == ["root", "dee", "cy", "bo", "al"]
    await call(hub, "POST", "/users/cy/activity", token=admin, json_body={"last_activity": iso(time.time() - 60)})
    r = await expect(hub, "GET", "/users?sort=-last_activity&limit=1", 200, token=admin)
    assert r.body[0]["name"] == "cy"
    r = await expect(hub, "GET", "/users?sort=last_activity", 200, token=admin)
    assert r.body[-1]["name"] == "cy"  # ascending: NULLs first
    r = await expect(hub, "GET", "/users?name_filter=O", 200, token=admin)
    assert sorted(u["name"] for u in r.body) == ["bo", "root"]  # case-insensitive substring
    r = await expect(hub, "GET", "/users?name_filter=" + "x" * 300, 200, token=admin)
    assert r.body == []
    r = await expect(hub, "GET", "/users?limit=0", 200, token=admin)
    assert len(r.body) == 1  # clamped to at least 1
    r = await expect(hub, "GET", f"/users?offset={10**30}", 200, token=admin)
    assert r.body == []
    await expect(hub, "GET", "/users?limit=x", 400, "Invalid argument type, offset and limit must be integers",
                 token=admin)
    await expect(hub, "GET", "/users?sort=bogus", 400, "sort must be 'id', 'name', or 'last_activity', not 'bogus'",
                 token=admin)
    await expect(hub, "GET", "/users?state=bogus", 400, "Unrecognized state filter: 'bogus'", token=admin)


async def test_list_users_default_and_max_limits(start_hub):
    hub = await start_hub(api_page_default_limit=2, api_page_max_limit=3)
    admin = await hub.new_token("root", admin=True)
    await hub.store.create_users([f"u{i}" for i in range(5)])
    assert len((await expect(hub, "GET", "/users", 200, token=admin)).body) == 3  # no header: the max
    r = await expect(hub, "GET", "/users", 200, token=admin, headers={"Accept": "application/jupyterhub-pagination+json"})
    assert len(r.body["items"]) == 2 and r.body["_pagination"]["total"] == 6
    r = await expect(hub, "GET", "/users", 200, token=admin,
                     headers={"Accept": "application/jupyterhub-pagination+json;q=1"})
    assert isinstance(r.body, list)  # parameters are not recognised, as in JupyterHub
    assert len((await expect(hub, "GET", "/users?limit=100", 200, token=admin)).body) == 3


async def test_list_users_state_filters_and_servers(hub):
    admin = await hub.new_token("root", admin=True)
    await running(hub, "alice")
    bob = await hub.new_user("bob")
    await hub.store.create_server(bob.id, "nb")  # stopped named server
    carol = await hub.new_user("carol")
    starting = await hub.store.create_server(carol.id, "")
    await hub.store.update_server(starting.id, started=time.time())  # started, no URL yet: active, not ready
    r = await expect(hub, "GET", "/users?state=active", 200, token=admin)
    assert [u["name"] for u in r.body] == ["alice", "carol"]
    r = await expect(hub, "GET", "/users?state=ready", 200, token=admin,
                     headers={"Accept": "application/jupyterhub-pagination+json"})
    assert [u["name"] for u in r.body["items"]] == ["alice"] and r.body["_pagination"]["total"] == 1
    r = await expect(hub, "GET", "/users?state=inactive", 200, token=admin)
    assert sorted(u["name"] for u in r.body) == ["bob", "root"]
    r = await expect(hub, "GET", "/users/alice", 200, token=admin)
    assert r.body["server"] == "/user/alice/" and set(r.body["servers"]) == {""}
    server = r.body["servers"][""]
    assert server["ready"] is True and server["stopped"] is False and server["state"]["pid"] > 0
    assert server["url"] == "/user/alice/" and server["progress_url"] == "/hub/api/users/alice/server/progress"
    r = await expect(hub, "GET", "/users/bob", 200, token=admin)
    assert r.body["servers"] == {} and r.body["server"] is None
    for flag in ("include_stopped_servers", "include_stopped_servers=1", "include_stopped_servers="):
        r = await expect(hub, "GET", f"/users/bob?{flag}", 200, token=admin)
        assert r.body["servers"]["nb"]["stopped"] is True and r.body["servers"]["nb"]["full_name"] == "bob/nb"
    r = await expect(hub, "GET", "/users?include_stopped_servers=0", 200, token=admin)
    assert {u["name"]: u["servers"] for u in r.body}["bob"] == {}
    # the owner reads its own servers but never their state (admin:server_state)
    alice = await hub.new_token("alice")
    r = await expect(hub, "GET", "/users/alice", 200, token=alice)
    assert "state" not in r.body["servers"][""]


async def test_get_user_fields_per_scope(hub):
    await running(hub, "alice")
    await running(hub, "alice", "nb")
    checks = {
        ("read:users:name!user=alice",): {"kind", "name", "admin", "user_info"},
        ("read:users:activity!user=alice",): {"kind", "name", "last_activity"},
        ("read:users:groups!user=alice",): {"kind", "name", "groups"},
        ("read:roles:users!user=alice",): {"kind", "name", "roles", "admin"},
        ("read:servers!user=alice",): {"kind", "name", "servers", "admin", "user_info"},
        # auth_state alone does not pass the endpoint's check: the identify scopes make it a 404
        ("admin:auth_state!user=alice", "read:users:activity!user=alice"):
            {"kind", "name", "auth_state", "last_activity"},
    }
    for i, (held, keys) in enumerate(checks.items()):
        token = await token_with(hub, f"reader{i}", held)
        r = await expect(hub, "GET", "/users/alice", 200, token=token)
        assert set(r.body) == keys, (held, r.body)
    # a server filter shows that server only, and no user fields beyond what the server scope gives
    token = await token_with(hub, "srv", ["read:servers!server=alice/nb", "read:users:name!user=alice"])
    r = await expect(hub, "GET", "/users/alice", 200, token=token)
    assert set(r.body["servers"]) == {"nb"}


async def test_get_user_403_404(hub):
    alice = await hub.new_token("alice")
    await hub.new_user("bob")
    await expect(hub, "GET", "/users/alice", 200, token=alice)
    await expect(hub, "GET", "/users/bob", 404, NOT_FOUND, token=alice)
    await expect(hub, "GET", "/users/nosuch", 404, NOT_FOUND, token=alice)
    admin = await hub.new_token("root", admin=True)
    await expect(hub, "GET", "/users/nosuch", 404, None, token=admin)
    # a user always holds read:users:name on itself (identify scopes), so another user is a 404 ...
    hubreader = await token_with(hub, "hubreader", ["read:hub"])
    await expect(hub, "GET", "/users/bob", 404, NOT_FOUND, token=hubreader)
    # ... while a service holding no user scope at all gets the 403
    svc_less = await service_token_with(hub, "hubreader-svc", ["read:hub"])
    await expect(hub, "GET", "/users/bob", 403, missing("read:users", "read:users:name", "read:servers",
                                                        "read:users:groups", "read:users:activity",
                                                        "read:roles:users"), token=svc_less)
    await expect(hub, "HEAD", "/users/bob", 405, token=admin)


# ---------------------------------------------------------------- POST /users


async def test_create_users(hub):
    admin = await hub.new_token("root", admin=True)
    r = await expect(hub, "POST", "/users", 201, token=admin, json_body={"usernames": ["Alice", "bob", "bob"]})
    assert [u["name"] for u in r.body] == ["alice", "bob"] and r.body[0]["roles"] == ["user"]
    r = await expect(hub, "POST", "/users", 201, token=admin, json_body={"usernames": ["bob", "carol"], "admin": True})
    assert [(u["name"], u["admin"], u["roles"]) for u in r.body] == [("carol", True, ["user", "admin"])]
    await expect(hub, "POST", "/users", 409, "All 2 users already exist", token=admin,
                 json_body={"usernames": ["alice", "BOB"]})
    before = snapshot(hub)
    bad = [
        ({}, "Must specify at least one user to create"),
        ({"usernames": []}, "Must specify at least one user to create"),
        ({"usernames": "alice"}, "usernames must be a list of strings"),
        ({"usernames": [1]}, "usernames must be a list of strings"),
        ({"usernames": ["x/y"]}, "Invalid username: x/y"),
        ({"usernames": ["ok1", " lead", ""]}, "Invalid usernames:  lead, "),
        ({"usernames": ["ok1"], "admin": "yes"}, "user.admin must be <class 'bool'>, not: <class 'str'>"),
        ({"usernames": ["ok1"], "bogus": 1}, "Invalid JSON keys: {'bogus': 1}"),
        ([{"usernames": ["ok1"]}], "Must specify at least one user to create"),
        ({"usernames": ["x" * 10_000]}, "Invalid username: " + "x" * 80 + "..."),
    ]
    for body, message in bad:
        await expect(hub, "POST", "/users", 400, message, token=admin, json_body=body)
    await expect(hub, "POST", "/users", 400, "Invalid JSON in body of request", token=admin, data="{nope",
                 headers={"Content-Type": "application/json"})
    assert snapshot(hub) == before


async def test_create_users_scopes(hub):
    alice = await hub.new_token("alice")
    await expect(hub, "POST", "/users", 403, missing("admin:users"), token=alice, json_body={"usernames": ["x"]})
    # admin:users without being an admin: may create users, never admins (CVE-2024-41942)
    manager = await token_with(hub, "manager", ["admin:users"])
    await expect(hub, "POST", "/users", 403, "Only admins can grant admin permissions", token=manager,
                 json_body={"usernames": ["x"], "admin": True})
    await expect(hub, "POST", "/users", 201, token=manager, json_body={"usernames": ["x"]})
    filtered = await token_with(hub, "filtered", ["admin:users!user=x"])
    await expect(hub, "POST", "/users", 403, missing("admin:users"), token=filtered, json_body={"usernames": ["y"]})
    assert await hub.store.get_user("y") is None


async def test_create_users_with_username_map(start_hub):
    hub = await start_hub(username_map={"boss": "chief"})
    admin = await hub.new_token("root", admin=True)
    r = await expect(hub, "POST", "/users", 201, token=admin, json_body={"usernames": ["BOSS"]})
    assert r.body[0]["name"] == "chief"


# ---------------------------------------------------------------- POST /users/{name}


async def test_create_one_user(hub):
    admin = await hub.new_token("root", admin=True)
    r = await expect(hub, "POST", "/users/erin", 201, token=admin)
    assert r.body["name"] == "erin" and r.body["admin"] is False
    r = await expect(hub, "POST", "/users/Frank", 201, token=admin, json_body={"admin": True})
    assert r.body["name"] == "Frank" and r.body["roles"] == ["user", "admin"]  # not normalised, as JupyterHub
    await expect(hub, "POST", "/users/erin", 409, "User erin already exists", token=admin)
    before = snapshot(hub)
    await expect(hub, "POST", "/users/a%2Fb", 400, "Failed to create user: a/b", token=admin)
    await expect(hub, "POST", "/users/%20lead", 400, "Failed to create user:  lead", token=admin)
    await expect(hub, "POST", "/users/...", 400, "Failed to create user: ...", token=admin)
    await expect(hub, "POST", "/users/" + "y" * 300, 400, "Failed to create user: " + "y" * 80 + "...", token=admin)
    await expect(hub, "POST", "/users/gina", 400, "user.admin must be <class 'bool'>, not: <class 'int'>",
                 token=admin, json_body={"admin": 1})
    await expect(hub, "POST", "/users/gina", 400, "Invalid JSON keys: {'x': 1}", token=admin, json_body={"x": 1})
    await expect(hub, "POST", "/users/gina", 400, "Invalid JSON data: [1]", token=admin, json_body=[1])
    assert snapshot(hub) == before
    manager = await token_with(hub, "manager", ["admin:users"])
    alice = await hub.new_token("alice")
    scoped = await token_with(hub, "scoped", ["admin:users!user=zed"])
    before = snapshot(hub)
    await expect(hub, "POST", "/users/gina", 403, "Only admins can grant admin permissions", token=manager,
                 json_body={"admin": True})
    await expect(hub, "POST", "/users/gina", 403, missing("admin:users"), token=alice)
    await expect(hub, "POST", "/users/gina", 404, NOT_FOUND, token=scoped)
    assert snapshot(hub) == before
    await expect(hub, "POST", "/users/zed", 201, token=scoped)


# ---------------------------------------------------------------- PATCH /users/{name}


async def test_patch_user(start_hub):
    hub = await start_hub(admin_users=frozenset({"boss"}))
    admin = await hub.new_token("root", admin=True)
    await hub.new_user("alice")
    await hub.new_user("bob")
    r = await expect(hub, "PATCH", "/users/alice", 200, token=admin, json_body={"admin": True})
    assert r.body["admin"] is True and r.body["roles"] == ["user", "admin"] and r.body["auth_state"] is None
    r = await expect(hub, "PATCH", "/users/alice", 200, token=admin, json_body={"admin": False, "name": "Alicia"})
    assert (r.body["name"], r.body["admin"], r.body["roles"]) == ("alicia", False, ["user"])
    await expect(hub, "GET", "/users/alice", 404, token=admin)
    r = await expect(hub, "PATCH", "/users/alicia", 200, token=admin, json_body={})
    assert r.body["name"] == "alicia"
    before = snapshot(hub)
    bad = [
        (None, 400, "Invalid JSON data: None"),
        ([], 400, "Invalid JSON data: []"),
        ({"bogus": 1}, 400, "Invalid JSON keys: {'bogus': 1}"),
        ({"admin": "true"}, 400, "user.admin must be <class 'bool'>, not: <class 'str'>"),
        ({"name": 5}, 400, "user.name must be <class 'str'>, not: <class 'int'>"),
        ({"name": "bob"}, 400, "User bob already exists, username must be unique"),
        ({"name": "a/b"}, 400, "Invalid username: a/b"),
        ({"name": ""}, 400, "Invalid username: "),
        ({"name": "z" * 10_000}, 400, "Invalid username: " + "z" * 80 + "..."),
        ({"groups": ["g"]}, 400, "user.groups cannot be changed here; use the groups API and load_roles"),
        ({"roles": ["admin"]}, 400, "user.roles cannot be changed here; use the groups API and load_roles"),
        ({"auth_state": {}}, 400, "user.auth_state cannot be set: auth state is not enabled"),
    ]
    for body, status, message in bad:
        await expect(hub, "PATCH", "/users/alicia", status, message, token=admin, json_body=body)
    await expect(hub, "PATCH", "/users/nosuch", 404, None, token=admin, json_body={"admin": True})
    assert snapshot(hub) == before


async def test_patch_user_privileges(start_hub):
    """CVE-2024-41942: admin:users must not lead to admin rights, and a user never renames itself."""
    hub = await start_hub(admin_users=frozenset({"boss"}))
    await hub.store.delete_user((await hub.store.get_user("boss")).id)  # renamed away, say
    await hub.new_user("alice")
    await hub.new_user("root", admin=True)
    manager = await token_with(hub, "manager", ["admin:users"])
    alice = await hub.new_token("alice")
    other_only = await token_with(hub, "other-only", ["admin:users!user=root"])
    before = snapshot(hub)
    await expect(hub, "PATCH", "/users/alice", 403, "Only admins can grant admin permissions", token=manager,
                 json_body={"admin": True})
    await expect(hub, "PATCH", "/users/manager", 403, "Only admins can grant admin permissions", token=manager,
                 json_body={"admin": True})
    await expect(hub, "PATCH", "/users/root", 403, "Only admins can modify other admins", token=manager,
                 json_body={"name": "demoted"})
    await expect(hub, "PATCH", "/users/manager", 403, "Only admins can rename themselves", token=manager,
                 json_body={"name": "other"})
    await expect(hub, "PATCH", "/users/alice", 403, "Only admins can grant admin permissions", token=manager,
                 json_body={"name": "boss"})  # admin_users would make 'boss' an admin at the next start
    for body in ({"admin": True}, {"name": "admin"}, {"name": "new"}):
        await expect(hub, "PATCH", "/users/alice", 403, missing("admin:users"), token=alice, json_body=body)
    await expect(hub, "PATCH", "/users/alice", 404, NOT_FOUND, token=other_only, json_body={"name": "x"})
    assert snapshot(hub) == before
    r = await expect(hub, "PATCH", "/users/alice", 200, token=manager, json_body={"name": "alice2"})
    assert r.body["admin"] is False


# ---------------------------------------------------------------- DELETE /users/{name}


async def test_delete_user(hub):
    admin = await hub.new_token("root", admin=True)
    await hub.new_user("alice")
    alice = await hub.new_token("alice")
    await running(hub, "alice")
    await expect(hub, "DELETE", "/users/alice", 403, missing("delete:users"), token=alice)
    deleter = await token_with(hub, "deleter", ["delete:users!user=bob"])
    await expect(hub, "DELETE", "/users/alice", 404, NOT_FOUND, token=deleter)
    await expect(hub, "DELETE", "/users/root", 400, "Cannot delete yourself!", token=admin)
    await expect(hub, "DELETE", "/users/nosuch", 404, None, token=admin)
    r = await call(hub, "DELETE", "/users/alice", token=admin)
    assert r.status == 204 and r.text == ""
    await expect(hub, "GET", "/users/alice", 404, token=admin)
    await expect(hub, "GET", "/user", 403, token=alice)  # its tokens went with it
    assert await hub.store.find_token(alice) is None


# ---------------------------------------------------------------- activity


async def test_activity(hub):
    alice_user = await hub.new_user("alice")
    await running(hub, "alice", "nb")
    alice = await hub.new_token("alice")
    admin = await hub.new_token("root", admin=True)
    t1 = iso(time.time() + 30)  # after the start, which counts as activity; within the hour allowed ahead
    r = await expect(hub, "POST", "/users/alice/activity", 200, token=alice,
                     json_body={"last_activity": t1, "servers": {"nb": {"last_activity": t1}}})
    assert r.text == ""
    r = await expect(hub, "GET", "/users/alice", 200, token=admin)
    assert r.body["last_activity"] == t1 and r.body["servers"]["nb"]["last_activity"] == t1
    older = iso(time.time() - 7200)
    await expect(hub, "POST", "/users/alice/activity", 200, token=alice, json_body={"last_activity": older})
    assert (await expect(hub, "GET", "/users/alice", 200, token=admin)).body["last_activity"] == t1  # forward only
    before = snapshot(hub)
    bad = [
        ([], "body must be a json dict"),
        ({}, "body must contain at least one of `last_activity` or `servers`"),
        ({"last_activity": "notadate"}, "Not a valid timestamp: 'notadate'"),
        ({"last_activity": 17}, "Not a valid timestamp: 17"),
        ({"last_activity": "2099-01-01T00:00:00Z"},
         "Rejecting activity from more than an hour in the future: 2099-01-01T00:00:00Z"),
        ({"servers": []}, "body must contain at least one of `last_activity` or `servers`"),  # falsy, as JupyterHub
        ({"servers": [1]}, "servers must be a dict of the form {server_name: {last_activity: timestamp}}"),
        ({"servers": {"nb": t1}}, "servers must be a dict of the form {server_name: {last_activity: timestamp}}"),
        ({"servers": {"nb": {}}}, "servers must be a dict of the form {server_name: {last_activity: timestamp}}"),
        ({"servers": {"nosuch": {"last_activity": t1}}}, "No such server 'nosuch' for user alice"),
        ({"last_activity": "notadate", "servers": {"nb": {"last_activity": iso(time.time())}}},
         "Not a valid timestamp: 'notadate'"),
        ({"last_activity": t1, "bogus": 1}, "Invalid JSON keys: ['bogus']"),
    ]
    for body, message in bad:
        await expect(hub, "POST", "/users/alice/activity", 400, message, token=alice, json_body=body)
    assert snapshot(hub) == before
    await hub.new_user("bob")
    await expect(hub, "POST", "/users/bob/activity", 404, NOT_FOUND, token=alice, json_body={"last_activity": t1})
    await expect(hub, "POST", "/users/nosuch/activity", 404, "No such user: 'nosuch'", token=admin,
                 json_body={"last_activity": t1})
    reader = await token_with(hub, "reader", ["read:users"])
    await expect(hub, "POST", "/users/alice/activity", 403, missing("users:activity"), token=reader,
                 json_body={"last_activity": t1})
    assert alice_user.name == "alice"


async def test_admin_access_endpoint_disabled(hub):
    admin = await hub.new_token("root", admin=True)
    await hub.new_user("alice")
    await expect(hub, "POST", "/users/alice/admin-access", 403, "admin access to user servers disabled", token=admin)
    alice = await hub.new_token("alice")
    await expect(hub, "POST", "/users/root/admin-access", 404, NOT_FOUND, token=alice)
    reader = await service_token_with(hub, "reader", ["read:users"])
    await expect(hub, "POST", "/users/alice/admin-access", 403, missing("servers"), token=reader)


async def test_admin_access_endpoint_enabled(start_hub):
    on = await start_hub(admin_access=True)
    admin = await on.new_token("root", admin=True)
    await on.new_user("alice")
    await expect(on, "POST", "/users/alice/admin-access", 200, token=admin)
    await expect(on, "POST", "/users/nosuch/admin-access", 404, None, token=admin)


async def test_admin_role_from_load_roles_makes_admins(start_hub):
    """As JupyterHub: every user and service in the admin role (load_roles) has the admin flag, so it may
    grant admin rights; with an exact list, an admin left out of it loses the flag."""
    roles = ({"name": "admin", "services": ["keeper"], "users": ["chief"]},)
    hub = await start_hub(services=({"name": "keeper", "api_token": "keeper-token-0123456789"},
                                    {"name": "old-admin", "api_token": "old-admin-token-0123456789", "admin": True}),
                          load_roles=roles)
    r = await expect(hub, "POST", "/users/promoted", 201, token="keeper-token-0123456789", json_body={"admin": True})
    assert r.body["admin"] is True
    r = await expect(hub, "GET", "/services/keeper", 200, token="keeper-token-0123456789")
    assert r.body["admin"] is True and r.body["roles"] == ["admin"]
    chief = await hub.new_token("chief")
    r = await expect(hub, "GET", "/user", 200, token=chief)
    assert r.body["admin"] is True and "admin" in r.body["roles"]
    # 'old-admin' sets admin: True but the admin role lists its services exactly, without it
    r = await expect(hub, "GET", "/services/old-admin", 200, token="keeper-token-0123456789")
    assert r.body["admin"] is False and r.body["roles"] == []
    await expect(hub, "POST", "/users/other", 403, missing("admin:users"),
                 token="old-admin-token-0123456789", json_body={"admin": True})
