"""The user's own pages: /hub/ (where to go), /hub/home (servers), /hub/token (API tokens), /hub/user-redirect.

Home and token pages are rendered from the store and the server manager; their buttons act through
the REST API from small scripts (``home.js``, ``token.js``) that send the hub XSRF token as
``X-XSRFToken``. Starting a server is a plain link to ``/hub/spawn/...`` (works without script).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web

from gateway import keys
from gateway.pages.kit import (
    found,
    landing_url,
    login_url,
    mount_pages,
    page,
    raw_after,
    redirect,
    render,
    server_status,
)
from gateway.vocab.models import Server, User
from gateway.vocab.serialize import url_path_escape, user_url

routes = web.RouteTableDef()

EXPIRY_CHOICES = ((3600, "1 hour"), (86400, "1 day"), (7 * 86400, "1 week"), (30 * 86400, "30 days"),
                  (365 * 86400, "1 year"))
STATUS_LABELS = {"ready": "running", "spawn": "starting", "stop": "stopping", None: "stopped"}


@dataclass(frozen=True)
class ServerRow:
    """One line of the home page's server table."""

    name: str  # '' for the default server
    display_name: str
    status: str | None  # 'ready' | 'spawn' | 'stop' | None (stopped)
    url: str
    spawn_url: str
    pending_url: str
    last_activity: float | None

    @property
    def label(self) -> str:
        return STATUS_LABELS.get(self.status, self.status or "stopped")

    @property
    def badge(self) -> str:
        return self.status or "stopped"


def spawn_path(hub_prefix: str, user_name: str, server_name: str = "", kind: str = "spawn") -> str:
    path = f"{hub_prefix}{kind}/{url_path_escape(user_name)}"
    return path + (f"/{url_path_escape(server_name)}" if server_name else "")


async def server_rows(request: web.Request, user: User) -> list[ServerRow]:
    """The default server (always listed) and every named server, from the server manager."""
    manager = request.config_dict[keys.SERVERS]
    settings = request.config_dict[keys.SETTINGS]
    servers: dict[str, Server] = {s.name: s for s in await manager.list_servers(user)}
    names = [""] + sorted(n for n in servers if n)
    rows = []
    for name in names:
        server = servers.get(name)
        rows.append(ServerRow(
            name=name,
            display_name=(server.display_name if server and server.display_name else name) or "Default",
            status=server_status(request.config_dict, user.name, name),
            url=user_url(settings.base_url, user.name, name),
            spawn_url=spawn_path(settings.hub_prefix, user.name, name),
            pending_url=spawn_path(settings.hub_prefix, user.name, name, "spawn-pending"),
            last_activity=server.last_activity if server else None,
        ))
    return rows


@routes.get("/")
@page(login=False)
async def root(request: web.Request) -> web.StreamResponse:
    identity = request[keys.IDENTITY]
    if identity.anonymous:
        raise found(login_url(request, request.config_dict[keys.SETTINGS].hub_prefix))
    return redirect(landing_url(request, identity.user))


@routes.get("/home")
@page()
async def home(request: web.Request) -> web.StreamResponse:
    settings = request.config_dict[keys.SETTINGS]
    user = request[keys.IDENTITY].user
    rows = await server_rows(request, user)
    named = sum(1 for r in rows if r.name)
    limit = settings.named_server_limit_per_user
    can_create = settings.allow_named_servers and (limit == 0 or named < limit)
    return render(request, "home.html", nav="home", rows=rows, named_count=named, named_limit=limit,
                  allow_named=settings.allow_named_servers, can_create=can_create)


@routes.get("/token")
@page()
async def token_page(request: web.Request) -> web.StreamResponse:
    settings = request.config_dict[keys.SETTINGS]
    user = request[keys.IDENTITY].user
    tokens = await request.config_dict[keys.STORE].list_tokens("user", user.id)
    # A server's own token is its per-server secret and OAuth tokens belong to applications: not listed here.
    api_tokens = [t for t in tokens if t.server_id is None and t.client_id == "jupyterhub"]
    api_tokens.sort(key=lambda t: t.created, reverse=True)
    limit = settings.token_expires_in_max_seconds
    choices = [(seconds, label) for seconds, label in EXPIRY_CHOICES if not limit or seconds <= limit]
    tokens_url = f"{settings.api_prefix}users/{url_path_escape(user.name)}/tokens"
    return render(request, "token.html", nav="token", tokens=api_tokens, expiry_choices=choices,
                  allow_never=not limit, tokens_url=tokens_url)


@routes.get("/user-redirect/{path:.*}")
@page()
async def user_redirect(request: web.Request) -> web.StreamResponse:
    """/hub/user-redirect/<path> → the caller's own server at <path>, through /hub/spawn (JupyterHub)."""
    settings = request.config_dict[keys.SETTINGS]
    user = request[keys.IDENTITY].user
    raw = raw_after(request, settings.hub_route + "user-redirect/")
    server = settings.default_server_name if settings.allow_named_servers else ""
    target = user_url(settings.base_url, user.name, server) + raw.lstrip("/")
    if request.rel_url.raw_query_string:
        target += "?" + request.rel_url.raw_query_string
    spawn = spawn_path(settings.hub_prefix, user.name, server)
    return redirect(f"{spawn}?next={quote(target, safe='')}")


def setup(app: web.Application) -> None:
    mount_pages(app, routes)
