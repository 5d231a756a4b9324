"""Bad input on every endpoint that takes a body or a name: a clear 4xx, and nothing changed in the store."""

from __future__ import annotations

import pytest

from tests.helpers.api import call, expect, snapshot

LIMIT = 16 * 1024  # max_body_size for these tests: 10,000-character names fit, 17 kB does not

# Every endpoint that reads a JSON body, with names that exist where the path needs them.
BODY_ENDPOINTS = [
    ("POST", "/users"), ("POST", "/users/newbie"), ("PATCH", "/users/alice"), ("POST", "/users/alice/activity"),
    ("POST", "/users/alice/tokens"), ("POST", "/groups"), ("POST", "/groups/newgroup"),
    ("POST", "/groups/team/users"), ("DELETE", "/groups/team/users"), ("PUT", "/groups/team/properties"),
    ("POST", "/services/newsvc"), ("POST", "/shutdown"), ("PATCH", "/proxy"),
]


@pytest.fixture
async def world(start_hub):
    hub = await start_hub(max_body_size=LIMIT)
    hub.admin = await hub.new_token("root", admin=True)
    await hub.new_user("alice")
    await expect(hub, "POST", "/groups/team", 201, token=hub.admin, json_body={"users": ["alice"]})
    return hub


@pytest.mark.parametrize("method,path", BODY_ENDPOINTS)
async def test_bad_bodies(world, method, path):
    hub = world
    before = snapshot(hub)
    json_type = {"Content-Type": "application/json"}
    for raw in ("{not json", "[1, 2", '{"a": NaN}', "\ud800".encode("utf-8", "surrogatepass"), b"\x00\xff"):
        r = await call(hub, method, path, token=hub.admin, data=raw, headers=json_type)
        assert r.status == 400, (raw, r.text)
    for body in ([{"users": ["alice"]}], [], "a string", 42):
        r = await call(hub, method, path, token=hub.admin, json_body=body)
        assert r.status == 400, (body, r.text)
    r = await call(hub, method, path, token=hub.admin, json_body={"pad": "x" * LIMIT})
    assert r.status == 413, r.text
    r = await call(hub, method, path, token=hub.admin, data=b"{" + b" " * (50 * LIMIT), headers=json_type)
    assert r.status == 413, r.text
    assert snapshot(hub) == before
    assert (await call(hub, "GET", "/users/alice", token=hub.admin)).status == 200  # still serving


@pytest.mark.parametrize("method,path,body,status", [
    # names in the URL: '/' (encoded), the empty name, a long one, control characters
    ("POST", "/users/a%2Fb", None, 400),
    ("POST", "/users/a%2F..%2Froot", None, 400),
    ("POST", "/users/", None, 404),
    ("POST", "/users/%00x", None, 400),
    ("POST", "/users/" + "l" * 4000, None, 400),
    ("POST", "/groups/a%2Fb", None, 400),
    ("POST", "/groups/", None, 404),
    ("POST", "/groups/" + "l" * 4000, None, 400),
    ("POST", "/services/a%2Fb", {"url": ""}, 400),
    ("POST", "/services/", {"url": ""}, 404),
    ("POST", "/services/%0A", {"url": ""}, 400),
    ("DELETE", "/users/a%2Fb", None, 404),
    ("DELETE", "/groups/a%2Fb", None, 404),
    ("GET", "/users/%2F", None, 404),
    # names in bodies
    ("POST", "/users", {"usernames": ["a/b"]}, 400),
    ("POST", "/users", {"usernames": [""]}, 400),
    ("POST", "/users", {"usernames": ["n" * 10_000]}, 400),
    ("POST", "/users", {"usernames": ["ok", "tab\there"]}, 400),
    ("PATCH", "/users/alice", {"name": "a/b"}, 400),
    ("PATCH", "/users/alice", {"name": ""}, 400),
    ("PATCH", "/users/alice", {"name": "n" * 10_000}, 400),
    ("POST", "/groups", {"groups": ["a/b"]}, 400),
    ("POST", "/groups", {"groups": [""]}, 400),
    ("POST", "/groups", {"groups": ["n" * 10_000]}, 400),
    ("POST", "/groups/team/users", {"users": ["a/b"]}, 400),
    ("POST", "/groups/team/users", {"users": [""]}, 400),
    ("POST", "/groups/team/users", {"users": ["n" * 10_000]}, 400),
    ("POST", "/users/alice/activity", {"servers": {"a/b": {"last_activity": "2020-01-01T00:00:00Z"}}}, 400),
    ("POST", "/users/alice/activity", {"servers": {"": {"last_activity": "2020-01-01T00:00:00Z"}}}, 400),
    # wrong types where objects and lists belong
    ("POST", "/users", {"usernames": {"alice2": 1}}, 400),
    ("POST", "/groups", {"groups": {"g": 1}}, 400),
    ("POST", "/groups/team/users", {"users": {"alice": 1}}, 400),
    ("POST", "/users/alice/tokens", {"scopes": {"read:users": True}}, 400),
    ("POST", "/services/newsvc", {"info": []}, 400),
    ("PUT", "/groups/team/properties", [], 400),
])
async def test_bad_names_and_types(world, method, path, body, status):
    hub = world
    before = snapshot(hub)
    r = await call(hub, method, path, token=hub.admin, json_body=body)
    assert r.status == status, r.text
    assert len(r.text) < 1000  # a long name is never echoed whole
    assert snapshot(hub) == before
