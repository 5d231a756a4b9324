"""``/hub/accept-share?code=...``: a logged-in user looks at a share code (GET, a confirmation page)
and exchanges it for a share of their own (POST, then on to the shared server).

The code is the credential: whoever holds it may accept it, once logged in; the owner cannot share
with themselves. An unknown or expired code is a 404 on the page and a 400 on the form, as JupyterHub.
"""

from __future__ import annotations

import time

from aiohttp import web

from gateway import keys
from gateway.errors import ApiError
from gateway.identity.shares import ShareCode, Shares
from gateway.pages.kit import describe_scopes, found, mount_pages, page, render
from gateway.pages.redirects import safe_next_url
from gateway.vocab.serialize import user_url

routes = web.RouteTableDef()


async def live_code(request: web.Request, code: str | None) -> ShareCode | None:
    found_code = await Shares(request.config_dict[keys.STORE]).find_code(code or "")
    if found_code is None or found_code.expired(time.time()):
        return None
    return found_code


def next_url(request: web.Request, code: ShareCode, given: str | None) -> str:
    """Where to go after accepting: a safe ``next``, else the shared server."""
    return safe_next_url(given, request) or user_url(request.config_dict[keys.SETTINGS].base_url, code.owner_name,
                                                     code.server_name)


@routes.get("/accept-share")
@page()
async def accept_share_page(request: web.Request) -> web.Response:
    identity = request[keys.IDENTITY]
    code = await live_code(request, request.query.get("code"))
    if code is None:
        raise ApiError(404, "Share not found or expired")
    if code.owner_name == identity.name:
        raise ApiError(403, "You can't share with yourself!")
    manager = request.config_dict.get(keys.SERVERS)
    ready = manager is not None and manager.status(code.owner_name, code.server_name) == "ready"
    return render(request, "accept-share.html", code=request.query["code"], owner=code.owner_name,
                  server_name=code.server_name, server_ready=ready, scope_lines=describe_scopes(code.scopes),
                  next_url=next_url(request, code, request.query.get("next")))


@routes.post("/accept-share")
@page()
async def accept_share(request: web.Request) -> web.StreamResponse:
    identity = request[keys.IDENTITY]
    form = await request.post()
    given = form.get("code") or request.query.get("code")
    code = await live_code(request, given if isinstance(given, str) else None)
    if code is None:
        raise ApiError(400, "Invalid share code")
    if code.owner_name == identity.name:
        raise ApiError(400, "You can't share with yourself!")
    share = await Shares(request.config_dict[keys.STORE]).exchange(code, identity.user.id)
    if share is None:
        raise ApiError(400, "Invalid share code")
    given_next = form.get("next") or request.query.get("next")
    raise found(next_url(request, code, given_next if isinstance(given_next, str) else None))


def setup(app: web.Application) -> None:
    mount_pages(app, routes)
