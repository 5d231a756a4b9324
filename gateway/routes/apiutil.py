"""Request parsing for API handlers: JSON bodies, field checks, query flags, pagination, timestamps."""

from __future__ import annotations

import contextlib
import datetime
import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from gateway import keys
from gateway.errors import ApiError, json_response
from gateway.identity import server_view

PAGINATION_MEDIA_TYPE = "application/jupyterhub-pagination+json"
MAX_OFFSET = 2**62  # sqlite integers are 64-bit: a larger OFFSET would be an error, not an empty page


def parse_timestamp(value: Any) -> float:
    if not isinstance(value, str):
        raise ValueError(value)
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed.timestamp()


async def json_body(request: web.Request) -> Any:
    """The parsed JSON body, or None when empty. 413 for bodies over the limit (checked before reading)."""
    limit = request.config_dict[keys.SETTINGS].max_body_size
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, f"Request body too large: {request.content_length} bytes (limit {limit})")
    if not request.body_exists:
        return None
    data = bytearray()
    while len(data) <= limit:  # read(n) returns what has arrived, not n bytes: loop until EOF
        chunk = await request.content.read(limit + 1 - len(data))
        if not chunk:
            break
        data += chunk
    if len(data) > limit:
        raise ApiError(413, f"Request body too large (limit {limit} bytes)")
    if not data:
        return None  # as JupyterHub: only an empty body is "no body"; whitespace alone is invalid JSON
    try:
        return json.loads(data, parse_constant=_refuse_constant, parse_float=_finite_float)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
        raise ApiError(400, "Invalid JSON in body of request") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN/Infinity would be stored and echoed as invalid JSON


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("number out of range")  # 1e999
    return value


def check_keys(body: Mapping[str, Any], model: Mapping[str, type | tuple[type, ...]], what: str) -> None:
    """JupyterHub's check of a body's keys and types: unknown keys and wrong types are 400s naming the field."""
    unknown = {k: v for k, v in body.items() if k not in model}
    if unknown:
        raise ApiError(400, f"Invalid JSON keys: {unknown!r}")
    for key, value in body.items():
        expected = model[key]
        if isinstance(value, bool) and expected in (int, float):
            raise ApiError(400, f"{what}.{key} must be {_type_name(expected)}, not: {_type_name(type(value))}")
        if not isinstance(value, expected):
            raise ApiError(400, f"{what}.{key} must be {_type_name(expected)}, not: {_type_name(type(value))}")


def _type_name(t: type | tuple[type, ...]) -> str:
    if isinstance(t, tuple):
        return " or ".join(_type_name(x) for x in t)
    return f"<class '{t.__name__}'>"


def query_flag(request: web.Request, name: str) -> bool:
    """JupyterHub's boolean query flags: present counts as true unless '0' or 'false' (empty value is true)."""
    if name not in request.query:
        return False
    return request.query[name].lower() not in ("0", "false")


def wants_pagination(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return any(part.strip().lower() == PAGINATION_MEDIA_TYPE for part in accept.split(","))


def pagination(request: web.Request) -> tuple[int, int, bool]:
    """(offset, limit, paginated) from the query and Accept header, clamped as JupyterHub does."""
    settings = request.config_dict[keys.SETTINGS]
    paginated = wants_pagination(request)
    try:
        offset = abs(int(request.query.get("offset", 0)))
        default = settings.api_page_default_limit if paginated else settings.api_page_max_limit
        limit = abs(int(request.query.get("limit", default)))
    except ValueError:
        raise ApiError(400, "Invalid argument type, offset and limit must be integers") from None
    limit = max(1, min(limit, settings.api_page_max_limit))
    return min(offset, MAX_OFFSET), limit, paginated


def paginated_response(request: web.Request, items: Sequence[Any] | Mapping[str, Any], *, offset: int, limit: int,
                       total: int, paginated: bool) -> web.Response:
    if not paginated:
        return json_response(items)
    next_page = None
    if offset + limit < total:
        query = dict(request.query)
        query.update(offset=str(offset + limit), limit=str(limit))
        url = str(request.url.with_query(None)) + "?" + urlencode(query)
        next_page = {"offset": offset + limit, "limit": limit, "url": url}
    return json_response({"items": items, "_pagination": {"offset": offset, "limit": limit, "total": total, "next": next_page}})


async def preflight(request: web.Request) -> web.Response:
    """OPTIONS on any API path: 200 with no body, as JupyterHub's APIHandler.options (CORS preflight)."""
    return web.Response(status=200)


preflight.__required_scopes__ = ()  # type: ignore[attr-defined]  # public, like routes marked @public


def mount_api(app: web.Application, routes: web.RouteTableDef) -> None:
    """Register a resource module's routes (paths relative to /hub/api) in the API sub-app,
    each path also answering OPTIONS."""
    api = app[keys.API_APP]
    paths: dict[str, None] = {}
    for route in routes:
        assert isinstance(route, web.RouteDef)
        # No automatic HEAD on the API: JupyterHub answers HEAD /hub/api/users with 405.
        kwargs = {k: v for k, v in route.kwargs.items() if k != "allow_head"}
        # ... and under each server's own prefix (gateway.identity.server_view), where only its credentials count
        for base in ("", server_view.route_prefix("")):
            api.router.add_route(route.method, base + route.path, route.handler, **kwargs)
            paths[base + route.path] = None
    for path in paths:
        with contextlib.suppress(RuntimeError):  # another module already answers OPTIONS there
            api.router.add_route("OPTIONS", path, preflight)
