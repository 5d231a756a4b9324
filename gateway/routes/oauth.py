"""``/hub/api/oauth2/authorize`` (a page: cookie login, consent) and ``/hub/api/oauth2/token`` (the
client's back channel), as HubOAuth and jupyterhub-singleuser call them. See :mod:`gateway.services.oauth`.

Authorize refuses with an error page, never a redirect, until the client and its redirect URI are
known good: the redirect URI must equal the registered one exactly (security promise 9, case R4).
After that, request errors go back to the client as ``?error=...&state=...`` (RFC 6749 §4.1.2.1).
"""

from __future__ import annotations

import base64
import binascii
import logging
from urllib.parse import unquote, urlencode, urlsplit

from aiohttp import web

from gateway import keys
from gateway.auth import public
from gateway.errors import ApiError
from gateway.pages.kit import describe_scopes, page, redirect, render
from gateway.routes.apiutil import mount_api
from gateway.services.oauth import OAuthClient, OAuthError, OAuthProvider
from gateway.wire.routing import origin_form

log = logging.getLogger("gateway.oauth")
routes = web.RouteTableDef()
MAX_STATE = 4096


def with_query(uri: str, params: dict[str, str]) -> str:
    return uri + ("&" if "?" in uri else "?") + urlencode(params)


async def checked_client(request: web.Request) -> tuple[OAuthClient, str]:
    """The client and redirect URI of an authorize request, or ApiError (shown on the page)."""
    query = request.query
    client = await request.config_dict[keys.OAUTH].client(query.get("client_id", ""))
    if client is None:
        raise ApiError(400, "Invalid client_id parameter value.")
    redirect_uri = query.get("redirect_uri") or client.redirect_uri
    if redirect_uri != client.redirect_uri:  # exact match: no prefix, no normalisation
        raise ApiError(400, "Mismatching redirect URI.")
    return client, redirect_uri


def request_error(query, client_redirect: str, error: str, description: str) -> web.Response:
    params = {"error": error, "error_description": description}
    if query.get("state"):
        params["state"] = query["state"][:MAX_STATE]
    return redirect(with_query(client_redirect, params))


def pkce_problem(query) -> str | None:
    challenge, method = query.get("code_challenge", ""), query.get("code_challenge_method", "")
    if not challenge:
        return "code_challenge_method without code_challenge" if method else None
    if method != "S256":
        return "Transform algorithm not supported; use code_challenge_method=S256"
    if not 43 <= len(challenge) <= 128:
        return "Invalid code_challenge"
    return None


async def authorize(request: web.Request, confirmed_scopes: list[str] | None) -> web.StreamResponse:
    """GET: consent page or straight back to the client; POST: the user confirmed (``scopes`` chosen)."""
    identity = request[keys.IDENTITY]
    provider: OAuthProvider = request.config_dict[keys.OAUTH]
    client, redirect_uri = await checked_client(request)
    query = request.query
    if query.get("response_type") != "code":
        return request_error(query, redirect_uri, "unsupported_response_type", "Only response_type=code is supported")
    problem = pkce_problem(query)
    if problem:
        return request_error(query, redirect_uri, "invalid_request", problem)
    authorizer = request.config_dict[keys.AUTHORIZER]
    groups = await authorizer.groups_of(client.user) if client.user else frozenset()
    if not provider.may_access(client, identity, groups):
        raise ApiError(403, f"You do not have permission to access {client.description}")
    requested = query["scope"].split()[:100] if "scope" in query else None
    known = {identity.name: identity.groups}
    for name in users_named([*(requested or ()), *client.allowed_scopes]) - set(known):
        known[name] = await authorizer.groups_of(name)
    granted = provider.grantable_scopes(client, identity, requested,
                                        groups_of=lambda name: known.get(name, frozenset()))
    if confirmed_scopes is None and await provider.needs_confirmation(client, identity.user, granted):
        response = render(request, "oauth.html", client=client, scopes=granted, action=origin_form(request.raw_path),
                          scope_lines=describe_scopes(s for s in granted if s != client.access_scope))
        target = urlsplit(redirect_uri)
        if target.scheme in ("http", "https") and target.netloc:
            # browsers apply form-action to the redirect that follows the post: allow the client's origin
            response.headers["Content-Security-Policy"] = response.headers["Content-Security-Policy"].replace(
                "form-action 'self'", f"form-action 'self' {target.scheme}://{target.netloc}")
        return response
    if confirmed_scopes is not None:
        granted = tuple(s for s in granted if s in confirmed_scopes or s == client.access_scope)
    code = await provider.issue_code(client, identity.user, identity.session_id, redirect_uri, granted,
                                     query.get("code_challenge", ""))
    params = {"code": code}
    if query.get("state"):
        params["state"] = query["state"][:MAX_STATE]
    log.info("OAuth code for %s issued to %s", identity.name, client.client_id)
    return redirect(with_query(redirect_uri, params))


def users_named(raw_scopes) -> set[str]:
    """User names a scope set mentions (``!user=x``, ``!server=x/s``), whose groups intersections need."""
    names = set()
    for scope in raw_scopes:
        kind, _, value = scope.partition("!")[2].partition("=")
        if kind in ("user", "server") and value:
            names.add(value.partition("/")[0])
    return names


async def as_page(request: web.Request, confirmed: list[str] | None) -> web.StreamResponse:
    try:
        return await authorize(request, confirmed)
    except ApiError as e:  # the browser sees a page, not JSON, although the path is under /hub/api
        return await request.config_dict[keys.ERROR_PAGE](request, e.status, e.message)


@page()
async def authorize_get(request: web.Request) -> web.StreamResponse:
    return await as_page(request, None)


@page()
async def authorize_post(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    return await as_page(request, [str(v) for v in form.getall("scopes", [])])


authorize_get.__required_scopes__ = ("(login session)",)  # type: ignore[attr-defined]
authorize_post.__required_scopes__ = ("(login session)",)  # type: ignore[attr-defined]


def oauth_error(e: OAuthError) -> web.Response:
    return web.json_response({"error": e.error, "error_description": e.description}, status=e.status,
                             headers={"Cache-Control": "no-store"})


def client_credentials(request: web.Request, form) -> tuple[str, str]:
    """client_id and secret from the form, or from HTTP Basic authentication (RFC 6749 §2.3.1)."""
    client_id, secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
    header = request.headers.get("Authorization", "")
    if not secret and header[:6].lower() == "basic ":
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return client_id, ""
        client_id, secret = client_id or unquote(user), unquote(password)
    return client_id, secret


@routes.post("/oauth2/token")
@public  # the client authenticates with its secret in the form, not with a hub credential
async def token(request: web.Request) -> web.Response:
    if request.content_type != "application/x-www-form-urlencoded":
        return oauth_error(OAuthError("invalid_request", "Send the form as application/x-www-form-urlencoded"))
    form = await request.post()
    try:
        if form.get("grant_type") != "authorization_code":
            raise OAuthError("unsupported_grant_type", "Only grant_type=authorization_code is supported")
        client_id, secret = client_credentials(request, form)
        client = await request.config_dict[keys.OAUTH].authenticate_client(client_id, secret)
        if client is None:
            raise OAuthError("invalid_client", "Client authentication failed", status=401)
        issued, plaintext = await request.config_dict[keys.OAUTH].exchange(
            client, str(form.get("code", "")), form.get("redirect_uri"), form.get("code_verifier"))
    except OAuthError as e:
        return oauth_error(e)
    expires_in = int(issued.expires_at - issued.created) if issued.expires_at else None
    return web.json_response({"access_token": plaintext, "token_type": "Bearer", "expires_in": expires_in,
                              "scope": " ".join(issued.scopes)}, headers={"Cache-Control": "no-store"})


async def oauth_context(app: web.Application):
    app[keys.OAUTH] = OAuthProvider(app[keys.STORE], app[keys.SETTINGS], app.get(keys.ROUTES))
    yield


def setup(app: web.Application) -> None:
    api = app[keys.API_APP]
    api.router.add_get("/oauth2/authorize", authorize_get, allow_head=False)
    api.router.add_post("/oauth2/authorize", authorize_post)
    mount_api(app, routes)
