"""/hub/api/users/{name}/tokens... and the deprecated /authorizations/token endpoints, over real HTTP."""

from __future__ import annotations

import time
import uuid

import pytest

from gateway import keys
from gateway.authenticators.builtin import set_user_password
from tests.helpers.api import call, expect, service_token_with, snapshot

NOT_FOUND = "No access to resources or resources not found"


def missing(*scopes: str) -> str:
    return f"Action is not authorized with current scopes; requires any of [{', '.join(scopes)}]"


@pytest.fixture
async def hub_with_authenticator(start_hub):
    """The built-in password authenticator, alice's password set as an admin would."""
    hub = await start_hub()
    alice = await hub.new_user("alice")
    await set_user_password(hub.store, alice, "wonderland")
    return hub


async def test_create_and_use_token(hub):
    alice = await hub.new_token("alice")
    r = await expect(hub, "POST", "/users/alice/tokens", 201, token=alice, json_body={"note": "mine"})
    assert r.headers["Cache-Control"] == "no-store"
    new = r.body["token"]
    assert len(new) >= 32 and r.body["note"] == "mine" and r.body["user"] == "alice"
    assert r.body["kind"] == "api_token" and r.body["roles"] == [] and r.body["oauth_client"] == "JupyterHub"
    assert r.body["expires_at"] is None and r.body["id"].startswith("a") and r.body["session_id"] is None
    assert "tokens!user=alice" in r.body["scopes"]  # inherit: the owner's own expanded scopes
    who = await expect(hub, "GET", "/user", 200, token=new)
    assert who.body["name"] == "alice" and who.body["token_id"] == r.body["id"]
    r = await expect(hub, "POST", "/users/alice/tokens", 201, token=alice)
    assert r.body["note"] == "Requested via api"
    admin = await hub.new_token("root", admin=True)
    r = await expect(hub, "POST", "/users/alice/tokens", 201, token=admin, json_body={})
    assert r.body["note"] == "Requested via api by user root"
    svc = await service_token_with(hub, "minter", ["tokens"])
    r = await expect(hub, "POST", "/users/alice/tokens", 201, token=svc)
    assert r.body["note"] == "Requested via api by service minter"
    # listing never shows a secret
    r = await expect(hub, "GET", "/users/alice/tokens", 200, token=alice)
    assert len(r.body["api_tokens"]) == 5
    assert all("token" not in t for t in r.body["api_tokens"]) and new not in r.text


async def test_token_scopes_and_roles(hub):
    alice = await hub.new_token("alice")
    r = await expect(hub, "POST", "/users/alice/tokens", 201, token=alice,
                     json_body={"scopes": ["read:users!user=alice"]})
    assert r.body["scopes"] == ["read:users!user=alice", "read:users:activity!user=alice",
                                "read:users:groups!user=alice", "read:users:name!user=alice"]
    r = await expect(hub, "POST", "/users/alice/tokens", 201, token=alice, json_body={"roles": ["server"]})
    assert "users:activity!user=alice" in r.body["scopes"]
    before = snapshot(hub)
    bad = [
        ({"scopes": ["read:hub"]}, "Not assigning requested scopes read:hub not held by User alice"),
        ({"scopes": ["nosuch"]}, "\"Scope 'nosuch' for token does not exist\""),
        ({"scopes": ["read:users"], "roles": ["user"]}, "Can only assign one of scopes or roles when creating tokens."),
        ({"roles": ["nosuchrole"]}, "No such role: nosuchrole"),
        ({"roles": ["admin"]}, None),  # admin scopes are not alice's
        ({"scopes": "read:users"}, "token scopes must be null or a list of strings, not 'read:users'"),
        ({"roles": [1]}, "token roles must be null or a list of strings, not [1]"),
        ({"expires_in": 0}, "expires_in must be a positive integer or null, not 0"),
        ({"expires_in": -5}, "expires_in must be a positive integer or null, not -5"),
        ({"expires_in": 3600.0}, "token expires_in must be null or integer, not 3600.0"),
        ({"expires_in": "3600"}, "token expires_in must be null or integer, not '3600'"),
        ({"expires_in": True}, "token expires_in must be null or integer, not True"),
        ({"expires_in": 10**20}, "expires_in must be a positive integer or null, not 100000000000000000000"),
        ({"note": 5}, "token note must be null or a string of at most 1000 characters"),
        ({"bogus": 1}, "Invalid JSON keys: ['bogus']"),
        ([1, 2], "Body must be a JSON dict or empty"),
        ("text", "Body must be a JSON dict or empty"),
    ]
    for body, message in bad:
        r = await expect(hub, "POST", "/users/alice/tokens", 400, token=alice, json_body=body)
        if message is not None:
            assert r.body["message"] == message, (body, r.body)
        else:
            assert r.body["message"].startswith("Not assigning requested scopes ")
    assert snapshot(hub) == before


async def test_token_model_scopes_are_jupyterhubs_expansion(start_hub):
    """An admin's token for read:users reports read:users and its subscopes, nothing filtered beside them;
    a service without roles holds no scopes at all (whoami answers, but reports "scopes": [])."""
    hub = await start_hub(services=({"name": "bare", "api_token": "bare-service-token-0123"},))
    admin = await hub.new_token("admin", admin=True)
    expected = ["read:users", "read:users:activity", "read:users:groups", "read:users:name"]
    r = await expect(hub, "POST", "/users/admin/tokens", 201, token=admin, json_body={"scopes": ["read:users"]})
    assert r.body["scopes"] == expected
    r = await expect(hub, "GET", f"/users/admin/tokens/{r.body['id']}", 200, token=admin)
    assert r.body["scopes"] == expected
    who = await expect(hub, "GET", "/user", 200, token="bare-service-token-0123")
    assert who.body["name"] == "bare" and who.body["scopes"] == []
    await expect(hub, "GET", "/services/bare", 403, token="bare-service-token-0123")


async def test_token_expiry_and_max(start_hub):
    hub = await start_hub(token_expires_in_max_seconds=600)
    alice = await hub.new_token("alice")
    r = await expect(hub, "POST", "/users/alice/tokens", 201, token=alice)
    assert r.body["expires_at"] is not None  # unspecified: the maximum
    r = await expect(hub, "POST", "/users/alice/tokens", 201, token=alice, json_body={"expires_in": 60})
    expires = await hub.store.get_token(int(r.body["id"][1:]))
    assert 50 < expires.expires_at - time.time() <= 60
    await expect(hub, "POST", "/users/alice/tokens", 400, "token expires_in: 601 must not exceed 600", token=alice,
                 json_body={"expires_in": 601})


async def test_create_token_permissions(hub):
    alice = await hub.new_token("alice")
    await hub.new_user("bob")
    before = snapshot(hub)
    await expect(hub, "POST", "/users/bob/tokens", 403, "User bob not found or no permissions to generate tokens",
                 token=alice)
    await expect(hub, "POST", "/users/nosuch/tokens", 403,
                 "User nosuch not found or no permissions to generate tokens", token=alice)
    await expect(hub, "POST", "/users/alice/tokens", 403, None)  # no credential, no body auth
    await expect(hub, "POST", "/users/alice/tokens", 403, None, json_body={"auth": {"username": "alice",
                                                                                   "password": "x"}})
    assert snapshot(hub) == before


async def test_body_auth(hub_with_authenticator):
    hub = hub_with_authenticator
    await hub.new_user("bob")
    before = snapshot(hub)
    for auth in ({"username": "alice", "password": "nope"}, {"username": "alice"}, "alice:wonderland",
                 {"username": "ghost", "password": "wonderland"}):
        await expect(hub, "POST", "/users/alice/tokens", 403, None, json_body={"auth": auth})
    await expect(hub, "POST", "/users/bob/tokens", 403, "User bob not found or no permissions to generate tokens",
                 json_body={"auth": {"username": "alice", "password": "wonderland"}})
    assert snapshot(hub) == before
    r = await expect(hub, "POST", "/users/alice/tokens", 201,
                     json_body={"auth": {"username": "alice", "password": "wonderland"}, "note": "bootstrap"})
    assert (await expect(hub, "GET", "/user", 200, token=r.body["token"])).body["name"] == "alice"


async def test_cookie_requests_need_xsrf(hub):
    """Security cases X7-X9: a browser session may create tokens only with the XSRF token and JSON."""
    user = await hub.new_user("alice")
    authorizer = hub.app[keys.AUTHORIZER]
    session_id = uuid.uuid4().hex
    await hub.store.create_session(session_id, user.id, time.time() + 3600)
    cookie = {"Cookie": f"gateway-login={authorizer.session_cookie_value(session_id)}"}
    xsrf = authorizer.xsrf_token(session_id, hub.settings.hub_prefix)
    before = snapshot(hub)
    await expect(hub, "POST", "/users/alice/tokens", 403, "'_xsrf' argument missing from POST",
                 json_body={}, headers=cookie)
    await expect(hub, "POST", "/users/alice/tokens", 403, "'_xsrf' argument invalid",
                 json_body={}, headers={**cookie, "X-XSRFToken": "forged"})
    await expect(hub, "POST", f"/users/alice/tokens?_xsrf={xsrf}", 403, None, data="{}",
                 headers={**cookie, "Content-Type": "text/plain"})
    assert snapshot(hub) == before
    await expect(hub, "POST", f"/users/alice/tokens?_xsrf={xsrf}", 201, json_body={}, headers=cookie)
    await expect(hub, "POST", "/users/alice/tokens", 201, json_body={}, headers={**cookie, "X-XSRFToken": xsrf})
    # a fetch() GET with the cookie needs it too; a plain navigation does not
    await expect(hub, "GET", "/users/alice/tokens", 403, headers={**cookie, "Sec-Fetch-Mode": "cors"})
    await expect(hub, "GET", "/users/alice/tokens", 200, headers=cookie)


async def test_get_and_delete_one_token(hub):
    alice = await hub.new_token("alice")
    admin = await hub.new_token("root", admin=True)
    bob = await hub.new_token("bob")
    r = await expect(hub, "POST", "/users/alice/tokens", 201, token=alice, json_body={"note": "doomed"})
    token_id, plaintext = r.body["id"], r.body["token"]
    r = await expect(hub, "GET", f"/users/alice/tokens/{token_id}", 200, token=alice)
    assert r.body["note"] == "doomed" and "token" not in r.body
    bob_id = (await expect(hub, "GET", "/user", 200, token=bob)).body["token_id"]
    for bad in ("b1", "ax", "a", "a99999", bob_id, "a" + "9" * 40):
        shown = bad if len(bad) <= 80 else bad[:80] + "..."
        await expect(hub, "GET", f"/users/alice/tokens/{bad}", 404, f"No such token {shown} for user alice",
                     token=alice)
        await expect(hub, "DELETE", f"/users/alice/tokens/{bad}", 404, f"No such token {shown} for user alice",
                     token=alice)
    await expect(hub, "GET", f"/users/nosuch/tokens/{token_id}", 404, "No such user: nosuch", token=admin)
    await expect(hub, "GET", f"/users/alice/tokens/{token_id}", 404, NOT_FOUND, token=bob)
    await expect(hub, "DELETE", f"/users/alice/tokens/{token_id}", 404, NOT_FOUND, token=bob)
    reader = await service_token_with(hub, "reader", ["read:tokens"])
    await expect(hub, "GET", f"/users/alice/tokens/{token_id}", 200, token=reader)
    await expect(hub, "DELETE", f"/users/alice/tokens/{token_id}", 403, missing("tokens"), token=reader)
    nothing = await service_token_with(hub, "nothing", [])
    await expect(hub, "GET", f"/users/alice/tokens/{token_id}", 403, missing("read:tokens"), token=nothing)
    await expect(hub, "GET", "/users/alice/tokens", 403, missing("read:tokens"), token=nothing)
    assert (await call(hub, "GET", "/user", token=plaintext)).status == 200
    r = await call(hub, "DELETE", f"/users/alice/tokens/{token_id}", token=alice)
    assert r.status == 204 and r.text == ""
    await expect(hub, "GET", "/user", 403, token=plaintext)  # revoked at once
    await expect(hub, "GET", f"/users/alice/tokens/{token_id}", 404, token=alice)


async def test_list_tokens(hub):
    admin = await hub.new_token("root", admin=True)
    user = await hub.new_user("alice")
    await hub.store.create_token("user", user.id, note="expired", expires_at=time.time() - 10)
    await hub.store.create_token("user", user.id, note="live")
    r = await expect(hub, "GET", "/users/alice/tokens", 200, token=admin)
    assert [t["note"] for t in r.body["api_tokens"]] == ["live"]
    assert len(await hub.store.list_tokens("user", user.id)) == 1  # the expired one is gone
    await expect(hub, "GET", "/users/nosuch/tokens", 404, "No such user: nosuch", token=admin)
    alice = await hub.new_token("alice")
    await hub.new_user("bob")
    await expect(hub, "GET", "/users/bob/tokens", 404, NOT_FOUND, token=alice)


async def test_oauth_client_tokens_revoked_together(hub):
    user = await hub.new_user("alice")
    alice = await hub.new_token("alice")
    first, _ = await hub.store.create_token("user", user.id, client_id="service-x", note="oauth 1")
    await hub.store.create_token("user", user.id, client_id="service-x", note="oauth 2")
    r = await expect(hub, "GET", f"/users/alice/tokens/{first.api_id}", 200, token=alice)
    assert r.body["oauth_client"] == "service-x"
    await expect(hub, "DELETE", f"/users/alice/tokens/{first.api_id}", 204, token=alice)
    notes = [t.note for t in await hub.store.list_tokens("user", user.id)]
    assert "oauth 1" not in notes and "oauth 2" not in notes and len(notes) == 1


async def test_token_model_follows_owner(hub):
    await hub.new_user("erin", admin=True)
    erin = await hub.new_token("erin")
    r = await expect(hub, "POST", "/users/erin/tokens", 201, token=erin, json_body={"scopes": ["admin:users"]})
    assert "admin:users" in r.body["scopes"]
    user = await hub.store.get_user("erin")
    await hub.store.update_user(user.id, admin=False)
    r = await expect(hub, "GET", f"/users/erin/tokens/{r.body['id']}", 200, token=erin)
    assert "admin:users" not in r.body["scopes"]  # demoted owner: the token shrank with it


async def test_authorizations_token(hub):
    alice = await hub.new_token("alice")
    bob = await hub.new_token("bob")
    r = await expect(hub, "GET", f"/authorizations/token/{bob}", 200, token=alice)
    assert r.body["name"] == "bob" and r.body["kind"] == "user"
    assert set(r.body) == {"kind", "name", "admin", "user_info", "groups"}
    r = await expect(hub, "GET", f"/authorizations/token/{alice}", 200, token=alice)
    assert r.body["name"] == "alice" and "servers" in r.body
    await expect(hub, "GET", "/authorizations/token/nosuchtoken", 404, None, token=alice)
    await expect(hub, "GET", f"/authorizations/token/{bob}", 403, "Missing or invalid credentials.")
    svc = await service_token_with(hub, "svc", [])
    r = await expect(hub, "GET", f"/authorizations/token/{svc}", 200, token=alice)
    assert r.body == {"kind": "service", "name": "svc", "admin": False}
    await expect(hub, "POST", "/authorizations/token", 404,
                 "Deprecated endpoint /hub/api/authorizations/token is removed in JupyterHub 2.0."
                 " Use /hub/api/users/:user/tokens instead.", token=alice)
