"""Starting servers from the browser: /hub/spawn, /hub/spawn-pending and /hub/user/... (not running).

All three ask the server manager (``app[keys.SERVERS]``) through ``gateway.pages.kit.server_status``, which
calls a server 'ready' only once the proxy routes it: a browser is sent to ``/user/...`` only when
the proxy will forward it, never into a loop between ``/user/<name>/`` and ``/hub/user/<name>/``.

- ``/hub/spawn[/<user>[/<server>]]`` (scope ``servers`` on the target): ready → ``next`` or the
  server; starting → spawn-pending; else start it (``opt-<key>`` query arguments, or a POST form,
  become ``user_options``) and go to spawn-pending. When the spawner has an ``options_form`` (and no
  ``opt-`` arguments were given) GET shows it; its POST goes through ``options_from_form``.
- ``/hub/spawn-pending/<user>[/<server>]``: the progress page (a bar fed by the progress event stream
  ``/hub/api/users/<user>/server[s/<server>]/progress``, read with the hub XSRF token as ``?_xsrf=``
  since EventSource cannot send headers), or on to the server when ready, or the not-running page
  (200) when stopped.
- ``/hub/user/<user>/...``: where the proxy sends a browser for a server it has no route for. 424
  with a launch button, or JSON 424 for API-looking requests; token or cookie; 404 without
  ``access:servers`` on it; back to the server (hops counted) if it became ready meanwhile.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from aiohttp import web

from gateway import keys
from gateway.auth import current_identity, presented_xsrf
from gateway.errors import ApiError, json_response
from gateway.pages.home import spawn_path
from gateway.pages.kit import (
    SAFE_METHODS,
    base_context,
    found,
    login_url,
    may,
    mount_pages,
    page,
    raw_after,
    redirect,
    render,
    require_scope,
    server_status,
)
from gateway.pages.redirects import safe_next_url
from gateway.pages.sessions import check_form_xsrf
from gateway.vocab.models import User
from gateway.vocab.names import valid_server_name
from gateway.vocab.scopes import SCOPE_MESSAGE_NOT_FOUND
from gateway.vocab.serialize import progress_url, user_url

routes = web.RouteTableDef()
REDIRECT_LIMIT = 4


async def _target(request: web.Request) -> tuple[User, str]:
    """The (user, server name) a spawn URL names, after the scope check; the caller's default when none."""
    identity = request[keys.IDENTITY]
    settings = request.config_dict[keys.SETTINGS]
    name = request.match_info.get("user_name") or identity.user.name
    server = request.match_info.get("server_name", "")
    await require_scope(request, identity, "servers", user=name, server=server)
    user = await request.config_dict[keys.STORE].get_user(name)
    if user is None:
        raise ApiError(404, f"No such user: {name}")
    if server:
        if not settings.allow_named_servers:
            raise ApiError(400, "Named servers are not enabled on this gateway.")
        if not valid_server_name(server):
            raise ApiError(400, f"Invalid server name: {server}")
    return user, server


def _with_next(url: str, next_url: str | None) -> str:
    return f"{url}?next={quote(next_url, safe='')}" if next_url else url


async def _spawn(request: web.Request, user_options: dict | None, *, form: bool = False) -> web.StreamResponse:
    user, server = await _target(request)
    settings = request.config_dict[keys.SETTINGS]
    if form and server_status(request.config_dict, user.name, server) is None:
        spawner = await request.config_dict[keys.SERVERS].spawner_for_form(user, server)
        options_form = await spawner.get_options_form()
        if options_form and user_options is None:
            return _options_page(request, user.name, server, options_form)
        if options_form and user_options is not None and request.method == "POST":
            try:
                user_options = spawner.options_from_form(user_options)
            except Exception as exc:  # the operator's converter refused the input: show the form again
                message = str(exc) or type(exc).__name__
                return _options_page(request, user.name, server, options_form, error=message, status=400)
    next_url = safe_next_url(request.query.get("next"), request)
    pending = spawn_path(settings.hub_prefix, user.name, server, "spawn-pending")
    status = server_status(request.config_dict, user.name, server)
    if status is None:
        identity = request[keys.IDENTITY]
        authenticator = request.config_dict.get(keys.AUTHENTICATOR)
        if authenticator is not None and not await authenticator.refresh_before_spawn(request, identity, user):
            if identity.session_id:  # refresh_pre_spawn and a stale login: log in again, then spawn
                await request.config_dict[keys.STORE].delete_session(identity.session_id)
            return redirect(login_url(request))
        await request.config_dict[keys.SERVERS].start(user, server, user_options=user_options)
        status = server_status(request.config_dict, user.name, server)
    if status == "ready":
        return redirect(next_url or user_url(settings.base_url, user.name, server))
    return redirect(_with_next(pending, next_url))


@routes.get("/spawn")
@routes.get("/spawn/{user_name}")
@routes.get("/spawn/{user_name}/{server_name}")
@page()
async def spawn(request: web.Request) -> web.StreamResponse:
    options = {k[len("opt-"):]: v for k, v in request.query.items() if k.startswith("opt-")}
    return await _spawn(request, options or None, form=not options)


def _options_page(request: web.Request, owner: str, server: str, options_form: str, *, error: str = "",
                  status: int = 200) -> web.Response:
    settings = request.config_dict[keys.SETTINGS]
    query = {"_xsrf": base_context(request)["xsrf"]}
    next_url = safe_next_url(request.query.get("next"), request)
    if next_url:
        query["next"] = next_url
    action = spawn_path(settings.hub_prefix, owner, server) + "?" + urlencode(query)
    return render(request, "spawn.html", status=status, nav="home", owner=owner, server_name=server,
                  options_form=options_form, action_url=action, error_message=error)


@routes.post("/spawn")
@routes.post("/spawn/{user_name}")
@routes.post("/spawn/{user_name}/{server_name}")
@page()
async def spawn_form(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    user, server = await _target(request)
    spawner = await request.config_dict[keys.SERVERS].spawner_for_form(user, server)
    if await spawner.get_options_form():
        # JupyterHub hands options_from_form a dict of lists of strings
        data: dict[str, list[str]] = {}
        for key, value in form.items():
            if key != "_xsrf" and isinstance(value, str):
                data.setdefault(key, []).append(value)
        return await _spawn(request, data, form=True)
    options = {k: v for k, v in form.items() if k != "_xsrf" and isinstance(v, str)}
    return await _spawn(request, options or None)


@routes.get("/spawn-pending/{user_name}")
@routes.get("/spawn-pending/{user_name}/{server_name}")
@page()
async def spawn_pending(request: web.Request) -> web.StreamResponse:
    user, server = await _target(request)
    settings = request.config_dict[keys.SETTINGS]
    next_url = safe_next_url(request.query.get("next"), request)
    status = server_status(request.config_dict, user.name, server)
    if status == "ready":
        return redirect(next_url or user_url(settings.base_url, user.name, server))
    if status == "spawn":
        return render(request, "spawn_pending.html", nav="home", owner=user.name, server_name=server,
                      progress_url=progress_url(settings.base_url, user.name, server), next_url=next_url or "")
    return _not_running(request, user.name, server, status, next_url, status_code=200)


def _not_running(request: web.Request, user_name: str, server: str, status: str | None, next_url: str | None,
                 *, status_code: int) -> web.Response:
    settings = request.config_dict[keys.SETTINGS]
    spawn_url = _with_next(spawn_path(settings.hub_prefix, user_name, server), next_url)
    entry = request.config_dict[keys.SERVERS].entry(user_name, server)
    failure = entry.failure if entry is not None and status is None else None  # the last start's, as JupyterHub
    return render(request, "not_running.html", status=status_code, nav="home", owner=user_name,
                  server_name=server, stopping=status == "stop", spawn_url=spawn_url, failure=failure)


def _prefers_json(request: web.Request, tail: str) -> bool:
    """JupyterHub's test: a path segment 'api', or Accept ranking application/json above text/html."""
    if "api" in tail.split("/"):
        return True
    weights: dict[str, float] = {}
    for part in request.headers.get("Accept", "").split(",")[:50]:
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        weights[media.lower()] = max(q, weights.get(media.lower(), 0.0))
    return weights.get("application/json", 0.0) > weights.get("text/html", 0.0)


@routes.route("*", "/user/{user_name}/{tail:.*}")
async def user_not_running(request: web.Request) -> web.StreamResponse:
    identity = current_identity(request)
    settings, store = request.config_dict[keys.SETTINGS], request.config_dict[keys.STORE]
    name, tail = request.match_info["user_name"], request.match_info["tail"]
    if identity.anonymous:
        if request.method in ("GET", "HEAD"):
            raise found(login_url(request))
        raise ApiError(403, "Missing or invalid credentials.")
    if identity.via == "cookie" and request.method not in SAFE_METHODS:
        check_form_xsrf(request, identity, presented_xsrf(request))
    user = await store.get_user(name)
    first = tail.split("/", 1)[0]
    server = ""
    if user is not None and settings.allow_named_servers and first and await store.get_server(user.id, first):
        server = first
    if user is None or not await may(request, identity, "access:servers", user=name, server=server):
        raise ApiError(404, SCOPE_MESSAGE_NOT_FOUND)
    status = server_status(request.config_dict, name, server)
    raw_rest = raw_after(request, settings.hub_route + "user/")  # '<name>/<tail>' as sent
    target = settings.base_url + "user/" + raw_rest
    uri = target + (f"?{request.rel_url.raw_query_string}" if request.rel_url.raw_query_string else "")
    if status == "ready":
        return _back_to_server(request, target)
    spawn_url = spawn_path(settings.hub_prefix, name, server)
    if request.method not in ("GET", "HEAD") or _prefers_json(request, tail):
        message = f"JupyterHub server no longer running at {target}. Restart the server at {spawn_url}"
        return json_response({"status": 424, "message": message}, 424)
    if status == "spawn":
        return redirect(_with_next(spawn_path(settings.hub_prefix, name, server, "spawn-pending"), uri), 303)
    return _not_running(request, name, server, status, uri, status_code=424)


def _back_to_server(request: web.Request, target: str) -> web.Response:
    """The server is up (the proxy only just learnt it): back to it, counting hops to stop a loop."""
    query = request.rel_url.query.copy()
    try:
        hops = int(query.get("redirects", "0"))
    except ValueError:
        hops = 0
    if hops >= REDIRECT_LIMIT:
        raise ApiError(500, "Redirect loop detected.")
    query["redirects"] = str(hops + 1)
    return redirect(target + "?" + urlencode(list(query.items())))


@routes.get("/user/{user_name}")
async def user_add_slash(request: web.Request) -> web.StreamResponse:
    # the path as sent (a decoded one would lose base_url's and the name's escapes), query kept (tornado's addslash)
    query = request.rel_url.raw_query_string
    location = request.rel_url.raw_path + "/" + (f"?{query}" if query else "")
    return web.Response(status=301, headers={"Location": location})


def setup(app: web.Application) -> None:
    mount_pages(app, routes)
