"""API tokens of users: list, create (shown once), read, revoke; and the deprecated /authorizations endpoints.

A token's model reports its *effective* scopes: its own scopes intersected with what its owner
holds now (so a demoted owner's tokens shrink at once), as JupyterHub's ``get_scopes_for`` does.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web

from gateway import keys
from gateway.auth import authenticated, current_identity, requires_scope
from gateway.errors import MISSING_CREDENTIALS, ApiError, json_response
from gateway.routes.apiutil import json_body, mount_api
from gateway.routes.common import UserModels, shown, user_or_404
from gateway.vocab import scopes
from gateway.vocab.models import Identity, Token, User
from gateway.vocab.serialize import service_model, token_model

log = logging.getLogger("gateway.api.tokens")
routes = web.RouteTableDef()

TOKEN_KEYS = frozenset({"note", "expires_in", "scopes", "roles", "auth"})
LATEST_EXPIRY = 253402300799.0  # 9999-12-31T23:59:59Z: the last instant a timestamp can show
NOTE_MAX_LENGTH = 1000
# What the identify scopes (read:users:name, read:users:groups on the owner) reveal.
IDENTIFY_USER_FIELDS = frozenset({"kind", "name", "admin", "user_info", "groups"})


async def effective_scopes(request: web.Request, token: Token) -> frozenset[str]:
    """What the token may do now (``inherit``: exactly the owner's scopes)."""
    authorizer = request.config_dict[keys.AUTHORIZER]
    store = request.config_dict[keys.STORE]
    if token.owner_kind == "user":
        owner = await store.get_user_by_id(token.owner_id)
        owner_name = owner.name if owner else token.owner_name
        held = await authorizer.owner_scopes("user", token.owner_id, owner_name)
        if "inherit" in token.scopes or owner is None:
            return held.expanded
        identity = await authorizer.identity_for("user", user=owner, token=token)
    else:
        service = await store.get_service_by_id(token.owner_id)
        if service is None:
            return frozenset()
        held = await authorizer.owner_scopes("service", service.id, service.name)
        if "inherit" in token.scopes:
            return held.expanded
        identity = await authorizer.identity_for("service", service=service, token=token)
    return identity.scopes.expanded


async def model_of(request: web.Request, token: Token) -> dict[str, Any]:
    client = "JupyterHub" if token.client_id == "jupyterhub" else token.client_id
    return token_model(token, effective_scopes=await effective_scopes(request, token), oauth_client=client)


def parse_token_id(user: User, token_id: str) -> int:
    not_found = f"No such token {shown(token_id)} for user {shown(user.name)}"
    if not token_id.startswith("a") or not token_id[1:].isdigit() or len(token_id) > 20:
        raise ApiError(404, not_found)
    return int(token_id[1:])


async def users_token_or_404(request: web.Request) -> tuple[User, Token]:
    name = request.match_info["user_name"]
    user = await user_or_404(request, name, f"No such user: {shown(name)}")
    token_id = request.match_info["token_id"]
    token = await request.config_dict[keys.STORE].get_token(parse_token_id(user, token_id))
    if token is None or token.owner_kind != "user" or token.owner_id != user.id:
        raise ApiError(404, f"No such token {shown(token_id)} for user {shown(user.name)}")
    return user, token


@routes.get("/users/{user_name}/tokens")
@requires_scope("read:tokens")
async def list_tokens(request: web.Request) -> web.Response:
    store = request.config_dict[keys.STORE]
    name = request.match_info["user_name"]
    user = await user_or_404(request, name, f"No such user: {shown(name)}")
    await store.delete_tokens(user_id=user.id, expired_before=time.time())  # as JupyterHub: expired ones go
    tokens = await store.list_tokens("user", user.id)
    return json_response({"api_tokens": [await model_of(request, t) for t in tokens]})


@routes.get("/users/{user_name}/tokens/{token_id}")
@requires_scope("read:tokens")
async def get_token(request: web.Request) -> web.Response:
    _, token = await users_token_or_404(request)
    if token.expired(time.time()):
        raise ApiError(404, f"No such token {shown(request.match_info['token_id'])} for user {shown(token.owner_name)}")
    return json_response(await model_of(request, token))


@routes.delete("/users/{user_name}/tokens/{token_id}")
@requires_scope("tokens")
async def delete_token(request: web.Request) -> web.Response:
    store = request.config_dict[keys.STORE]
    user, token = await users_token_or_404(request)
    if token.client_id != "jupyterhub":
        # Revoking one OAuth token revokes everything that client was issued for this user.
        count = await store.delete_tokens(user_id=user.id, client_id=token.client_id)
        log.info("Deleted %d tokens of %s issued by %s", count, shown(user.name), token.client_id)
    else:
        await store.delete_token(token.id)
        log.info("Deleted token %s of %s", token.api_id, shown(user.name))
    return web.Response(status=204, content_type="text/plain")


# ---------------------------------------------------------------- creation


async def requester_from_body(request: web.Request, body: dict[str, Any]) -> Identity:
    """``{"auth": {"username", "password"}}`` checked by the authenticator; any failure is a bare 403."""
    authenticator = request.config_dict.get(keys.AUTHENTICATOR)
    auth = body.get("auth")
    if authenticator is None or not isinstance(auth, dict):
        raise ApiError(403)
    username, password = auth.get("username"), auth.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise ApiError(403)
    try:
        # login(): the same throttle as the login page, so this is no way around it (429 with Retry-After)
        extra = {"request": request} if authenticator.kind == "plugin" else {}  # plugins get a handler for it
        user = await authenticator.login(username, password, address=request.remote, **extra)
    except ApiError:
        raise
    except Exception:
        log.exception("Error authenticating a token request for %s", shown(username))
        raise ApiError(403) from None
    if user is None:
        raise ApiError(403)
    return await request.config_dict[keys.AUTHORIZER].identity_for("user", user=user, via="none")


def check_token_body(body: dict[str, Any], max_seconds: int) -> tuple[str | None, int | None]:
    unknown = set(body) - TOKEN_KEYS
    if unknown:
        raise ApiError(400, f"Invalid JSON keys: {shown(sorted(unknown))}")
    for key in ("roles", "scopes"):
        value = body.get(key)
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            raise ApiError(400, f"token {key} must be null or a list of strings, not {shown(repr(value))}")
    note = body.get("note")
    if note is not None and (not isinstance(note, str) or len(note) > NOTE_MAX_LENGTH):
        raise ApiError(400, f"token note must be null or a string of at most {NOTE_MAX_LENGTH} characters")
    expires_in = body.get("expires_in")
    if expires_in is not None and (isinstance(expires_in, bool) or not isinstance(expires_in, int)):
        raise ApiError(400, f"token expires_in must be null or integer, not {shown(repr(expires_in))}")
    if max_seconds:
        if expires_in is None:
            expires_in = max_seconds  # unspecified: the longest allowed
        elif expires_in > max_seconds:
            raise ApiError(400, f"token expires_in: {expires_in} must not exceed {max_seconds}")
    if expires_in is not None and (expires_in < 1 or time.time() + expires_in > LATEST_EXPIRY):
        raise ApiError(400, f"expires_in must be a positive integer or null, not {shown(expires_in)}")
    return note, expires_in


async def requested_scopes(request: web.Request, body: dict[str, Any], owner: User) -> list[str]:
    """The raw scopes to store: ``scopes``, or the scopes of ``roles``, or the token role's; checked against the owner."""
    store = request.config_dict[keys.STORE]
    authorizer = request.config_dict[keys.AUTHORIZER]
    if body.get("scopes") is not None and body.get("roles") is not None:
        raise ApiError(400, "Can only assign one of scopes or roles when creating tokens.")
    if body.get("scopes") is not None:
        raw = list(body["scopes"])
    elif body.get("roles") is not None:
        raw = []
        for role_name in body["roles"]:
            role = await store.get_role(role_name)
            if role is None:
                raise ApiError(400, f"No such role: {shown(role_name)}")
            raw.extend(role.scopes)
    else:
        role = await store.get_role("token")
        raw = list(role.scopes) if role else ["inherit"]
    held = await authorizer.owner_scopes("user", owner.id, owner.name)
    names = {s.partition("!")[2].partition("=")[2].partition("/")[0] for s in raw if "=" in s}
    known = {n: await authorizer.groups_of(n) for n in names | {owner.name}}
    try:
        scopes.check_token_request(raw, owner_scopes=held.expanded, owner_kind="user", owner_name=owner.name,
                                   groups_of=lambda n: known.get(n, frozenset()))
    except scopes.ScopeNotFound as e:
        raise ApiError(400, shown(e.api_message)) from None
    except scopes.ScopesNotHeld as e:
        raise ApiError(400, str(e)) from None
    return raw


@routes.post("/users/{user_name}/tokens")
@authenticated
async def create_token(request: web.Request) -> web.Response:
    settings = request.config_dict[keys.SETTINGS]
    store = request.config_dict[keys.STORE]
    name = request.match_info["user_name"]
    body = await json_body(request)
    body = {} if body is None else body
    if not isinstance(body, dict):
        raise ApiError(400, "Body must be a JSON dict or empty")
    requester = current_identity(request)
    if requester.anonymous:
        requester = await requester_from_body(request, body)  # no XSRF needed: the body is the credential
    user = await store.get_user(name)
    groups = await request.config_dict[keys.AUTHORIZER].groups_of(name) if user else frozenset()
    if user is None or not requester.scopes.has("tokens", user=name, user_groups=groups):
        raise ApiError(403, f"{(requester.kind or 'user').title()} {shown(name)} not found "
                            "or no permissions to generate tokens")
    note, expires_in = check_token_body(body, settings.token_expires_in_max_seconds)
    if not note:
        note = "Requested via api"
        if not (requester.kind == "user" and requester.user and requester.user.id == user.id):
            note += f" by {requester.kind} {requester.name}"
    raw = await requested_scopes(request, body, user)
    expires_at = time.time() + expires_in if expires_in is not None else None
    token, plaintext = await store.create_token("user", user.id, note=note, scopes=raw, expires_at=expires_at)
    log.info("%s %s created token %s for %s", (requester.kind or "").title(), shown(requester.name),
             token.api_id, shown(user.name))
    model = await model_of(request, token)
    model["token"] = plaintext
    return json_response(model, 201, headers={"Cache-Control": "no-store"})


# ---------------------------------------------------------------- deprecated


@routes.get("/authorizations/token/{token}")
@authenticated
async def identify_token(request: web.Request) -> web.Response:
    """Deprecated (JupyterHub 2.0): the owner of a token, for any token-authenticated caller."""
    identity = current_identity(request)
    if identity.anonymous or identity.via != "token":
        raise ApiError(403, MISSING_CREDENTIALS if identity.anonymous else None)
    log.warning("/authorizations/token/:token is deprecated; use /hub/api/user")
    store = request.config_dict[keys.STORE]
    token = await store.find_token(request.match_info["token"])
    if token is None or token.expired(time.time()):
        raise ApiError(404)
    activity = request.config_dict.get(keys.ACTIVITY)
    base_url = request.config_dict[keys.SETTINGS].base_url
    if token.owner_kind == "user":
        owner = await store.get_user_by_id(token.owner_id)
        if owner is None:
            raise ApiError(404)
        if activity is not None:
            activity.note_token(token, owner)
        # Holding a token is enough to identify its owner (JupyterHub adds the identify scopes).
        builder = UserModels(request, extra_fields=IDENTIFY_USER_FIELDS)
        return json_response(await builder.one(owner))
    service = await store.get_service_by_id(token.owner_id)
    if service is None:
        raise ApiError(404)
    if activity is not None:
        activity.note_token(token, None)
    fields = identity.scopes.fields_for_service(service.name) | {"kind", "name", "admin"}
    roles = await store.role_names_of_service(service.id)
    return json_response(service_model(service, fields=fields, base_url=base_url, roles=roles))


@routes.post("/authorizations/token")
@authenticated
async def request_token_removed(request: web.Request) -> web.Response:
    raise ApiError(404, "Deprecated endpoint /hub/api/authorizations/token is removed in JupyterHub 2.0."
                        " Use /hub/api/users/:user/tokens instead.")


def setup(app: web.Application) -> None:
    mount_api(app, routes)
