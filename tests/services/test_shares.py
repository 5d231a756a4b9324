"""Sharing a server: the REST API (JupyterHub 5's models and messages), share codes and the accept page,
and the proxy honouring a share (and its revocation) at once."""

from __future__ import annotations

import asyncio
import time

from tests.helpers.pages import Browser, add_user, form_xsrf

PASSWORD = "correct horse battery"
# how JupyterHub's docs let users share: their own servers, with users and groups they can name
SHARING = ({"name": "user", "scopes": ["self", "shares!user", "read:users:name", "read:groups:name"]},)


async def sharing_hub(start_hub, **overrides):
    overrides.setdefault("load_roles", SHARING)
    hub = await start_hub(allow_named_servers=True, **overrides)
    tokens = {name: await hub.new_token(name) for name in ("alice", "bob", "carol")}
    admin = await hub.new_token("root", admin=True)
    assert (await hub.api("POST", "/groups/team", token=admin, json_body={"users": ["carol"]})).status == 201
    assert (await hub.api("POST", "/users/alice/server", token=tokens["alice"])).status == 201
    assert (await hub.api("POST", "/users/alice/servers/nb", token=tokens["alice"])).status == 201
    return hub, tokens, admin


async def reach(hub, token: str, path: str = "/user/alice/api/status") -> int:
    async with hub.session.get(hub.url + path, headers={"Authorization": f"token {token}"},
                               allow_redirects=False) as r:
        await r.read()
        return r.status


async def test_users_cannot_share_by_default(start_hub):
    hub = await start_hub(load_roles=())
    alice, bob = await hub.new_token("alice"), await hub.new_token("bob")
    assert (await hub.api("POST", "/users/alice/server", token=alice)).status == 201
    r = await hub.api("POST", "/shares/alice/", token=alice, json_body={"user": "bob"})
    assert r.status == 403 and r.body["message"] == "Action is not authorized with current scopes; requires any of [shares]"
    # an admin without admin_access cannot either: `shares` implies access:servers, which such admins lack
    admin = await hub.new_token("root", admin=True)
    assert (await hub.api("POST", "/shares/alice/", token=admin, json_body={"user": "bob"})).status == 403
    assert (await hub.api("GET", "/shares/alice", token=admin)).status == 200  # but may read and revoke
    assert await reach(hub, bob) == 403


async def test_admin_access_admins_may_share(start_hub):
    hub = await start_hub(admin_access=True)
    alice, bob = await hub.new_token("alice"), await hub.new_token("bob")
    admin = await hub.new_token("root", admin=True)
    assert (await hub.api("POST", "/users/alice/server", token=alice)).status == 201
    r = await hub.api("POST", "/shares/alice/", token=admin, json_body={"user": "bob"})
    assert r.status == 200
    assert await reach(hub, bob) == 200


async def test_share_opens_the_server_at_once_and_revocation_closes_it(start_hub):
    hub, t, admin = await sharing_hub(start_hub)
    assert await reach(hub, t["bob"]) == 403
    r = await hub.api("POST", "/shares/alice/", token=t["alice"], json_body={"user": "bob"})
    assert r.status == 200, r.body
    share = r.body
    assert share["scopes"] == ["access:servers!server=alice/"] and share["kind"] == "user"
    assert share["user"] == {"name": "bob"} and share["group"] is None and share["created_at"].endswith("Z")
    assert share["server"] == {"user": {"name": "alice"}, "name": "", "url": "/user/alice/", "full_url": None,
                               "ready": True}
    assert await reach(hub, t["bob"]) == 200
    assert await reach(hub, t["bob"], "/user/alice/nb/api/status") == 403  # one server, not the other
    assert await reach(hub, t["carol"]) == 403
    # both sides can see it, always in the paginated shape
    for path, token in (("/users/bob/shared", t["bob"]), ("/shares/alice", t["alice"]), ("/shares/alice/", t["alice"])):
        r = await hub.api("GET", path, token=token)
        assert r.status == 200 and [s["user"] for s in r.body["items"]] == [{"name": "bob"}], path
        assert r.body["_pagination"]["total"] == 1
    r = await hub.api("GET", "/users/bob/shared/alice/", token=t["bob"])
    assert r.status == 200 and r.body["server"]["name"] == ""
    assert (await hub.api("GET", "/users/bob/shared", token=t["carol"])).status == 404
    # granting again adds nothing; the recipient may revoke their own access
    assert (await hub.api("POST", "/shares/alice/", token=t["alice"], json_body={"user": "bob"})).body["scopes"] == \
        ["access:servers!server=alice/"]
    assert (await hub.api("DELETE", "/users/bob/shared/alice/", token=t["bob"])).status == 204
    assert await reach(hub, t["bob"]) == 403
    r = await hub.api("GET", "/users/bob/shared/alice/", token=t["bob"])
    assert r.status == 404 and r.body["message"] == "No such share for user bob on alice/"


async def test_group_share_patch_and_delete(start_hub):
    hub, t, admin = await sharing_hub(start_hub)
    r = await hub.api("POST", "/shares/alice/nb", token=t["alice"], json_body={"group": "team"})
    assert r.status == 200 and r.body["kind"] == "group" and r.body["group"] == {"name": "team"}
    assert await reach(hub, t["carol"], "/user/alice/nb/api/status") == 200
    r = await hub.api("GET", "/groups/team/shared", token=admin)
    assert r.status == 200 and len(r.body["items"]) == 1
    assert (await hub.api("GET", "/users/carol/shared", token=t["carol"])).body["items"][0]["group"] == {"name": "team"}
    r = await hub.api("GET", "/groups/team/shared/alice/nb", token=admin)
    assert r.status == 200 and r.body["scopes"] == ["access:servers!server=alice/nb"]
    # revoking a scope the share does not hold changes nothing; revoking its only scope deletes it
    r = await hub.api("PATCH", "/shares/alice/nb", token=t["alice"],
                      json_body={"group": "team", "scopes": ["read:servers!server=alice/nb"]})
    assert r.status == 200 and r.body["scopes"] == ["access:servers!server=alice/nb"]
    r = await hub.api("PATCH", "/shares/alice/nb", token=t["alice"], json_body={"group": "team"})
    assert r.status == 200 and r.body == {}
    assert await reach(hub, t["carol"], "/user/alice/nb/api/status") == 403
    assert (await hub.api("PATCH", "/shares/alice/nb", token=t["alice"], json_body={"user": "nobody"})).body == {}
    # DELETE removes every share of the server
    for body in ({"user": "bob"}, {"group": "team"}):
        assert (await hub.api("POST", "/shares/alice/nb", token=t["alice"], json_body=body)).status == 200
    assert (await hub.api("DELETE", "/shares/alice/nb", token=t["alice"])).status == 204
    assert (await hub.api("GET", "/shares/alice/nb", token=t["alice"])).body["items"] == []
    assert await reach(hub, t["bob"], "/user/alice/nb/api/status") == 403


async def test_share_requests_are_validated(start_hub):
    hub, t, admin = await sharing_hub(start_hub)
    alice = t["alice"]

    async def post(body, path="/shares/alice/"):
        return await hub.api("POST", path, token=alice, json_body=body)

    assert "Specify exactly one of `user` or `group`" in (await post({})).body["message"]
    assert "not both" in (await post({"user": "bob", "group": "team"})).body["message"]
    assert "Extra inputs are not permitted" in (await post({"user": "bob", "expires_in": 60})).body["message"]
    r = await post({"user": "bob", "scopes": ["access:servers!server=alice/nb"]})
    assert r.status == 400 and r.body["message"] == \
        "!server=alice/nb not allowed on sharing access:servers!server=alice/nb, only !server=alice/"
    assert (await post({"user": "bob", "scopes": ["no:such"]})).status == 400
    r = await post({"user": "bob", "scopes": ["admin:servers"]})
    assert r.status == 403 and r.body["message"] == "Do not have permission to grant share with scope admin:servers!server=alice/"
    r = await post({"user": "nobody"})
    assert r.status == 400 and r.body["message"] == "No such user: nobody"
    assert (await post({"group": "nogroup"})).body["message"] == "No such group: nogroup"
    r = await post({"user": "bob"}, path="/shares/alice/nope")
    assert r.status == 404 and r.body["message"] == "No such server: alice/nope"
    assert (await post({"user": "bob"}, path="/shares/alice")).status == 405
    r = await hub.api("POST", "/shares/alice/", token=t["bob"], json_body={"user": "bob"})
    assert r.status == 404  # bob's `shares` covers only his own servers
    # a share of read:servers as well: filtered to the server
    r = await post({"user": "bob", "scopes": ["access:servers", "read:servers!server=alice/"]})
    assert r.status == 200 and r.body["scopes"] == ["access:servers!server=alice/", "read:servers!server=alice/"]


async def test_share_codes_and_accept_page(start_hub):
    hub, t, admin = await sharing_hub(start_hub)
    r = await hub.api("POST", "/share-codes/alice/", token=t["alice"], json_body={"expires_in": 3600})
    assert r.status == 200
    made = r.body
    assert made["id"].startswith("sc_") and made["exchange_count"] == 0 and made["full_accept_url"] is None
    assert made["accept_url"] == f"/hub/accept-share?code={made['code']}"
    assert made["scopes"] == ["access:servers!server=alice/"]
    listed = (await hub.api("GET", "/share-codes/alice", token=t["alice"])).body["items"]
    assert [c["id"] for c in listed] == [made["id"]] and "code" not in listed[0]
    assert (await hub.api("POST", "/share-codes/alice/", token=t["alice"], json_body={"expires_in": 10})).status == 400

    await add_user(hub, "bob", PASSWORD)
    await add_user(hub, "alice", PASSWORD)
    bob, owner = Browser(hub.url), Browser(hub.url)
    try:
        await bob.login("bob", PASSWORD)
        status, page, _ = await bob.get(made["accept_url"])
        assert status == 200 and "alice" in page and "access:servers!server=alice/" in page
        status, _, _ = await bob.post("/hub/accept-share", data={"code": made["code"]})
        assert status == 403  # no XSRF token
        status, _, headers = await bob.post("/hub/accept-share", data={"code": made["code"], "_xsrf": form_xsrf(page)})
        assert status == 302 and headers["Location"] == "/user/alice/"
        assert await reach(hub, t["bob"]) == 200
        assert (await bob.get("/hub/accept-share?code=wrong"))[0] == 404
        await owner.login("alice", PASSWORD)
        assert (await owner.get(made["accept_url"]))[0] == 403  # "You can't share with yourself!"
    finally:
        await bob.close()
        await owner.close()
    listed = (await hub.api("GET", "/share-codes/alice/", token=t["alice"])).body["items"]
    assert listed[0]["exchange_count"] == 1 and listed[0]["last_exchanged_at"] is not None
    # deleting: by code, by id, all
    r = await hub.api("DELETE", "/share-codes/alice/?code=wrong", token=t["alice"])
    assert r.status == 404 and r.body["message"] == "No matching code found"
    r = await hub.api("DELETE", "/share-codes/alice/?id=sc_x", token=t["alice"])
    assert r.status == 404 and r.body["message"] == "No code found matching id=sc_x"
    assert (await hub.api("DELETE", f"/share-codes/alice/?id={made['id']}", token=t["alice"])).status == 204
    assert (await hub.api("GET", "/share-codes/alice/", token=t["alice"])).body["items"] == []
    # an expired code is neither listed nor accepted
    r = await hub.api("POST", "/share-codes/alice/nb", token=t["alice"], json_body={})
    code = r.body["code"]
    async with hub.store.transaction() as db:
        await db.execute("UPDATE share_codes SET expires_at = ?", (time.time() - 1,))
    assert (await hub.api("GET", "/share-codes/alice/nb", token=t["alice"])).body["items"] == []
    bob = Browser(hub.url)
    try:
        await bob.login("bob", PASSWORD)
        assert (await bob.get(f"/hub/accept-share?code={code}"))[0] == 404
    finally:
        await bob.close()
    assert (await hub.api("DELETE", "/share-codes/alice/nb", token=t["alice"])).status == 204


async def test_deleting_a_server_deletes_its_shares(start_hub):
    hub, t, admin = await sharing_hub(start_hub)
    assert (await hub.api("POST", "/shares/alice/nb", token=t["alice"], json_body={"user": "bob"})).status == 200
    assert await reach(hub, t["bob"], "/user/alice/nb/api/status") == 200
    r = await hub.api("DELETE", "/users/alice/servers/nb", token=t["alice"], json_body={"remove": True})
    assert r.status in (202, 204)
    for _ in range(100):  # bounded: the stop finishes in the background
        if (await hub.api("GET", "/users/bob/shared", token=t["bob"])).body["items"] == []:
            break
        await hub.api("GET", "/users/alice", token=t["alice"])
        await asyncio.sleep(0.1)
    assert (await hub.api("GET", "/users/bob/shared", token=t["bob"])).body["items"] == []
    # a new server of the same name is not shared
    assert (await hub.api("POST", "/users/alice/servers/nb", token=t["alice"])).status == 201
    assert await reach(hub, t["bob"], "/user/alice/nb/api/status") == 403


async def test_sharing_by_name_needs_read_name_scopes(start_hub):
    hub, t, admin = await sharing_hub(start_hub, load_roles=({"name": "user", "scopes": ["self", "shares!user"]},))
    r = await hub.api("POST", "/shares/alice/", token=t["alice"], json_body={"user": "bob"})
    assert r.status == 403 and r.body["message"] == "Need scope 'read:users:name' to share with users by name"
    r = await hub.api("POST", "/shares/alice/", token=t["alice"], json_body={"group": "team"})
    assert r.status == 403 and r.body["message"] == "Need scope 'read:groups:name' to share with groups by name"
