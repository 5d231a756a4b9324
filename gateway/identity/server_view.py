"""Each single-user server's own view of the hub API, so that backends trust only the gateway.

A server is told ``JUPYTERHUB_API_URL=<hub api>/_server/<server id>`` (``vocab.serialize.server_api_url``):
the whole API answers there too (``routes.apiutil.mount_api`` registers every route under both
prefixes), but only to the server's own credentials: its secret (the token the proxy puts in every
request it forwards) and the OAuth tokens the gateway issued to the server's OAuth client (its
browser logins). Any other credential counts as none there.

Why: ``jupyterhub-singleuser`` (HubAuth) asks ``$JUPYTERHUB_API_URL/user`` about whatever token a
request carries. A user's hub token sent straight to the server's port, bypassing the proxy, is such
a token; asked at the server's prefix, the gateway does not identify it, so the server refuses the
request. Requests through the proxy carry the secret and pass. Services and other API clients keep
using the plain prefix, where every valid token identifies its owner.
"""

from __future__ import annotations

from aiohttp import web

from gateway.vocab.models import ANONYMOUS, Identity
from gateway.vocab.serialize import SERVER_API_SEGMENT as SEGMENT
from gateway.services.oauth import server_client_id
from gateway.store import Store

MATCH_KEY = "gateway_server_id"


def route_prefix(api_prefix: str) -> str:
    """The route form of a server's API prefix, for ``api_prefix`` = the API's route without its slash."""
    return f"{api_prefix}/{SEGMENT}/{{{MATCH_KEY}:[0-9]+}}"


async def own_credentials_only(request: web.Request, identity: Identity, store: Store) -> Identity:
    """``identity`` unchanged off the servers' prefixes; there, only the server's own credentials count."""
    raw = request.match_info.get(MATCH_KEY)
    if raw is None or identity.anonymous:
        return identity
    token = identity.token
    if token is None:  # a login cookie: browsers talk to the plain API, servers never send one
        return ANONYMOUS
    server_id = int(raw)
    if token.server_id == server_id:
        return identity
    if token.client_id != "jupyterhub" and token.owner_kind == "user":
        server = await store.get_server_by_id(server_id)
        if server is not None and token.client_id == server_client_id(server.user_name, server.name):
            return identity
    return ANONYMOUS
