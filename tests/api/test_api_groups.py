"""/hub/api/groups...: list, create, read, delete, membership, properties, over real HTTP."""

from __future__ import annotations

from tests.helpers.api import expect, service_token_with, snapshot, token_with

NOT_FOUND = "No access to resources or resources not found"


def missing(*scopes: str) -> str:
    return f"Action is not authorized with current scopes; requires any of [{', '.join(scopes)}]"


async def test_create_and_list_groups(hub):
    admin = await hub.new_token("root", admin=True)
    await hub.store.create_users(["alice", "bob"])
    r = await expect(hub, "POST", "/groups", 201, token=admin, json_body={"groups": ["g1", "g2"], "users": ["Alice"]})
    assert r.body == [{"kind": "group", "name": "g1", "users": ["alice"], "roles": [], "properties": {}},
                      {"kind": "group", "name": "g2", "users": ["alice"], "roles": [], "properties": {}}]
    r = await expect(hub, "GET", "/groups", 200, token=admin)
    assert [g["name"] for g in r.body] == ["g1", "g2"]
    r = await expect(hub, "GET", "/groups?limit=1&offset=1", 200, token=admin,
                     headers={"Accept": "application/jupyterhub-pagination+json"})
    assert [g["name"] for g in r.body["items"]] == ["g2"] and r.body["_pagination"]["total"] == 2
    assert r.body["_pagination"]["next"] is None
    await expect(hub, "POST", "/groups", 409, "Group g1 already exists", token=admin, json_body={"groups": ["g3", "g1"]})
    before = snapshot(hub)
    bad = [
        ({}, "Must specify at least one group to create"),
        ([], "Must specify at least one group to create"),
        ({"groups": "g9"}, "groups must be a list of strings"),
        ({"groups": ["g9"], "users": ["nosuch"]}, "No such user: nosuch"),
        ({"groups": ["g9"], "users": "alice"}, "group.users must be <class 'list'>, not: <class 'str'>"),
        ({"groups": ["g9"], "users": [3]}, "users must be a list of strings"),
        ({"groups": ["g9"], "bogus": True}, "Invalid JSON keys: {'bogus': True}"),
        ({"groups": ["a/b"]}, "Invalid group name: a/b"),
        ({"groups": [""]}, "Invalid group name: "),
        ({"groups": ["q" * 10_000]}, "Invalid group name: " + "q" * 80 + "..."),
    ]
    for body, message in bad:
        await expect(hub, "POST", "/groups", 400, message, token=admin, json_body=body)
    assert snapshot(hub) == before  # the g3 of the 409 was not kept either


async def test_list_groups_scopes(hub):
    admin = await hub.new_token("root", admin=True)
    await expect(hub, "POST", "/groups", 201, token=admin, json_body={"groups": ["g1", "g2", "g3"]})
    filtered = await token_with(hub, "alice", ["list:groups!group=g2", "list:groups!group=g3"])
    r = await expect(hub, "GET", "/groups", 200, token=filtered)
    assert r.body == [{"kind": "group", "name": "g2"}, {"kind": "group", "name": "g3"}]  # list implies names only
    wrong = await token_with(hub, "bob", ["list:groups!user=bob"])
    await expect(hub, "GET", "/groups", 403, None, token=wrong)
    plain = await hub.new_token("carol")
    await expect(hub, "GET", "/groups", 403, missing("list:groups"), token=plain)
    await expect(hub, "POST", "/groups", 403, missing("admin:groups"), token=plain, json_body={"groups": ["x"]})


async def test_one_group(hub):
    admin = await hub.new_token("root", admin=True)
    await hub.store.create_users(["alice", "bob"])
    r = await expect(hub, "POST", "/groups/team", 201, token=admin, json_body={"users": ["bob"]})
    assert r.body["users"] == ["bob"]
    r = await expect(hub, "POST", "/groups/empty", 201, token=admin)
    assert r.body["users"] == []
    await expect(hub, "POST", "/groups/team", 409, "Group team already exists", token=admin)
    r = await expect(hub, "GET", "/groups/team", 200, token=admin)
    assert r.body == {"kind": "group", "name": "team", "users": ["bob"], "roles": [], "properties": {}}
    await expect(hub, "GET", "/groups/nosuch", 404, "No such group: nosuch", token=admin)
    before = snapshot(hub)
    await expect(hub, "POST", "/groups/new", 400, "No such user: nosuch", token=admin, json_body={"users": ["nosuch"]})
    await expect(hub, "POST", "/groups/new", 400, "Invalid JSON data: ['bob']", token=admin, json_body=["bob"])
    await expect(hub, "POST", "/groups/new", 400, "Invalid JSON keys: {'x': 1}", token=admin, json_body={"x": 1})
    await expect(hub, "POST", "/groups/a%2Fb", 400, "Invalid group name: a/b", token=admin)
    await expect(hub, "POST", "/groups/%20x", 400, "Invalid group name:  x", token=admin)
    assert snapshot(hub) == before  # the refusals wrote nothing
    reader = await token_with(hub, "reader", ["read:groups!group=team"])
    await expect(hub, "GET", "/groups/empty", 404, NOT_FOUND, token=reader)
    names = await token_with(hub, "names", ["read:groups:name!group=team"])
    r = await expect(hub, "GET", "/groups/team", 200, token=names)
    assert r.body == {"kind": "group", "name": "team"}
    r = await expect(hub, "GET", "/groups/team", 200, token=reader)
    assert r.body == {"kind": "group", "name": "team", "users": ["bob"], "properties": {}}
    await expect(hub, "DELETE", "/groups/team", 403, missing("delete:groups"), token=reader)
    svc = await service_token_with(hub, "svc", ["read:hub"])
    await expect(hub, "GET", "/groups/team", 403, missing("read:groups", "read:groups:name", "read:roles:groups"),
                 token=svc)
    await expect(hub, "POST", "/groups/other", 403, missing("admin:groups"), token=svc)
    creator = await token_with(hub, "creator", ["admin:groups!group=allowed"])
    await expect(hub, "POST", "/groups/other", 404, NOT_FOUND, token=creator)
    await expect(hub, "POST", "/groups/allowed", 201, token=creator)
    deleter = await token_with(hub, "deleter", ["delete:groups!group=empty"])
    await expect(hub, "DELETE", "/groups/team", 404, NOT_FOUND, token=deleter)
    assert (await hub.store.get_group("team")) is not None
    await expect(hub, "DELETE", "/groups/empty", 204, token=deleter)
    await expect(hub, "DELETE", "/groups/empty", 404, "No such group: empty", token=deleter)
    await expect(hub, "DELETE", "/groups/team", 204, token=admin)
    await expect(hub, "DELETE", "/groups/team", 404, "No such group: team", token=admin)


async def test_group_members(hub):
    admin = await hub.new_token("root", admin=True)
    await hub.store.create_users(["alice", "bob", "carol"])
    await expect(hub, "POST", "/groups/team", 201, token=admin)
    r = await expect(hub, "POST", "/groups/team/users", 200, token=admin, json_body={"users": ["Alice", "bob", "bob"]})
    assert r.body["users"] == ["alice", "bob"]
    r = await expect(hub, "POST", "/groups/team/users", 200, token=admin, json_body={"users": ["alice"]})
    assert r.body["users"] == ["alice", "bob"]
    r = await expect(hub, "DELETE", "/groups/team/users", 200, token=admin, json_body={"users": ["alice", "carol"]})
    assert r.body["users"] == ["bob"]
    r = await expect(hub, "GET", "/users/bob", 200, token=admin)
    assert r.body["groups"] == ["team"]
    before = snapshot(hub)
    for method, verb in (("POST", "add"), ("DELETE", "delete")):
        await expect(hub, method, "/groups/team/users", 400, f"Must specify users to {verb}", token=admin, json_body={})
        await expect(hub, method, "/groups/team/users", 400, "Invalid JSON data: None", token=admin)
        await expect(hub, method, "/groups/team/users", 400, "No such user: nosuch", token=admin,
                     json_body={"users": ["carol", "nosuch"]})
        await expect(hub, method, "/groups/team/users", 400, "Invalid JSON data: [1]", token=admin, json_body=[1])
        await expect(hub, method, "/groups/nosuch/users", 404, "No such group: nosuch", token=admin,
                     json_body={"users": ["bob"]})
    member = await token_with(hub, "lead", ["groups!group=team"])
    other = await token_with(hub, "stranger", ["groups!group=elsewhere"])
    nobody = await service_token_with(hub, "nobody", ["read:users"])
    before = snapshot(hub)
    await expect(hub, "POST", "/groups/team/users", 404, NOT_FOUND, token=other, json_body={"users": ["carol"]})
    await expect(hub, "POST", "/groups/team/users", 403, missing("groups"), token=nobody, json_body={"users": ["carol"]})
    assert snapshot(hub) == before
    r = await expect(hub, "POST", "/groups/team/users", 200, token=member, json_body={"users": ["carol"]})
    assert r.body["users"] == ["bob", "carol"]


async def test_group_properties(hub):
    admin = await hub.new_token("root", admin=True)
    plain = await service_token_with(hub, "plain", ["read:groups"])
    elsewhere = await token_with(hub, "elsewhere", ["groups!group=other"])
    await expect(hub, "POST", "/groups/team", 201, token=admin)
    r = await expect(hub, "PUT", "/groups/team/properties", 200, token=admin, json_body={"a": [1, {"b": None}]})
    assert r.body["properties"] == {"a": [1, {"b": None}]}
    r = await expect(hub, "PUT", "/groups/team/properties", 200, token=admin, json_body={"c": "d"})
    assert r.body["properties"] == {"c": "d"}  # replaced, not merged
    before = snapshot(hub)
    for body in ([1], "x", None, 5):
        await expect(hub, "PUT", "/groups/team/properties", 400, "Must specify properties", token=admin,
                     json_body=body)
    for raw in ("{bad", '{"x": NaN}', '{"x": 1e999}', "[" * 100_000 + "]" * 100_000):
        await expect(hub, "PUT", "/groups/team/properties", 400, "Invalid JSON in body of request", token=admin,
                     data=raw, headers={"Content-Type": "application/json"})
    await expect(hub, "PUT", "/groups/nosuch/properties", 404, "No such group: nosuch", token=admin, json_body={})
    await expect(hub, "PUT", "/groups/team/properties", 403, missing("groups"), token=plain, json_body={})
    await expect(hub, "PUT", "/groups/team/properties", 404, NOT_FOUND, token=elsewhere, json_body={})
    assert snapshot(hub) == before
