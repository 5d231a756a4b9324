"""A stand-in for the tokens REST API (POST/DELETE /hub/api/users/{name}/tokens), which is not on this
branch yet: the token page and the XSRF rules for cookie-authenticated token requests are exercised
against it. It follows the documented contract over the real store, behind the real ``requires_scope``,
and adds nothing once the real API is mounted. Delete this module when the tokens API lands.
"""

from __future__ import annotations


def add_stand_in_tokens_api(app) -> bool:
    """Until the tokens API lands: POST/DELETE /hub/api/users/{name}/tokens to the documented contract
    (POST {note, expires_in, scopes} -> 201 {token, id, ...}; DELETE /tokens/{id} -> 204), over the real
    store and behind the real ``requires_scope`` (cookie + XSRF + JSON rules). Returns False (and adds
    nothing) when the app already has the real API."""
    import time

    from aiohttp import web

    from gateway import keys
    from gateway.auth import requires_scope
    from gateway.errors import json_response

    path = app[keys.SETTINGS].api_prefix + "users/{user_name}/tokens"
    if any(r.canonical == path for r in app.router.resources()):
        return False

    @requires_scope("tokens")
    async def create(request: web.Request) -> web.Response:
        body = await request.json()
        user = await request.app[keys.STORE].get_user(request.match_info["user_name"])
        expires_at = time.time() + body["expires_in"] if body.get("expires_in") else None
        token, plaintext = await request.app[keys.STORE].create_token(
            "user", user.id, note=body.get("note", ""), scopes=body.get("scopes") or ("inherit",),
            expires_at=expires_at)
        return json_response({"token": plaintext, "id": token.api_id, "note": token.note,
                              "expires_at": None}, 201)

    @requires_scope("tokens")
    async def delete(request: web.Request) -> web.Response:
        await request.app[keys.STORE].delete_token(int(request.match_info["token_id"][1:]))
        return web.Response(status=204)

    app.router.add_post(path, create)
    app.router.add_delete(path + "/{token_id}", delete)
    return True
