"""Errors: ApiError, JupyterHub's JSON error body for /hub/api, HTML errors for pages, hub response headers.

Every API error is ``{"status": N, "message": str | null}`` (JupyterHub 6.1.1), including
unknown API paths, wrong methods and unexpected exceptions (500, no traceback in the body).
A ``StoreError`` (the database refused a write: disk full, read-only file) is a 503 whose
message says so.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from gateway import JUPYTERHUB_API_VERSION
from gateway.store import StoreError
from gateway.vocab.refusals import AlreadyExists, Busy, Refused
from gateway.vocab.scrub import loggable_url

log = logging.getLogger("gateway.errors")

API_CSP = "frame-ancestors 'none'; default-src 'none'"
PAGE_CSP = "frame-ancestors 'none'"
MISSING_CREDENTIALS = "Missing or invalid credentials."


class ApiError(Exception):
    """Raise from any handler: becomes JSON for /hub/api and an HTML error page elsewhere."""

    def __init__(self, status: int, message: str | None = None, *, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def json_response(data: object, status: int = 200, *, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(data, separators=(", ", ": ")).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def api_error_response(status: int, message: str | None, headers: Mapping[str, str] | None = None) -> web.Response:
    response = json_response({"status": status, "message": message}, status, headers=headers)
    response.headers["Content-Security-Policy"] = API_CSP
    return response


# Renders an HTML error page: (request, status, message) -> response.
HtmlRenderer = Callable[[web.Request, int, "str | None"], Awaitable[web.StreamResponse]]


async def plain_html_error(request: web.Request, status: int, message: str | None) -> web.StreamResponse:
    """Fallback error page; the pages capability replaces it with a templated one (gateway.pages.kit.error_page)."""
    text = html.escape(message or web.HTTPException.__name__)
    body = f"<!doctype html><title>{status}</title><h1>{status}</h1><p>{text}</p>"
    return web.Response(text=body, status=status, content_type="text/html")


def _http_exception_message(e: web.HTTPException) -> str | None:
    # aiohttp fills text with "404: Not Found"; JupyterHub says null for bare errors.
    text = e.text or ""
    if text.startswith(f"{e.status}: "):
        return None
    return text or None


def refusal_answer(e: Refused) -> tuple[int, str, Mapping[str, str] | None]:
    """The status, message and headers that answer a domain refusal."""
    if isinstance(e, Busy):
        return 429, e.message, {"Retry-After": str(e.retry_after)}
    return (409 if isinstance(e, AlreadyExists) else 400), e.message, None


def make_error_middleware(api: bool, render_page: HtmlRenderer | None = None):
    """The error middleware of one part of the hub: error shapes and JupyterHub's headers.

    ``api``: JSON errors (the API sub-app), else HTML error pages drawn by ``render_page`` (the pages'
    template; without it, a plain page)."""
    render_page = render_page or plain_html_error

    @web.middleware
    async def errors(request: web.Request, handler):
        try:
            response = await handler(request)
        except ApiError as e:
            response = await _render(request, render_page, api, e.status, e.message, e.headers)
        except Refused as e:
            response = await _render(request, render_page, api, *refusal_answer(e))
        except web.HTTPException as e:
            if e.status < 400:
                raise
            response = await _render(request, render_page, api, e.status, _http_exception_message(e), None)
        except StoreError as e:
            # Disk full or read-only database: writes fail clearly, reads keep working.
            log.error("%s %s: %s", request.method, loggable_url(request.raw_path), e)
            response = await _render(request, render_page, api, 503, str(e), None)
        except Exception:
            log.exception("Unhandled error in %s %s", request.method, loggable_url(request.raw_path))
            response = await _render(request, render_page, api, 500, "Internal Server Error", None)
        if not response.prepared:
            response.headers.setdefault("X-JupyterHub-Version", JUPYTERHUB_API_VERSION)
            response.headers.setdefault("Content-Security-Policy", API_CSP if api else PAGE_CSP)
        return response

    return errors


async def _render(request: web.Request, render_page: HtmlRenderer, api: bool, status: int, message: str | None,
                  headers: Mapping[str, str] | None) -> web.StreamResponse:
    if api:
        return api_error_response(status, message, headers)
    response = await render_page(request, status, message)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


__all__ = ["ApiError", "json_response", "api_error_response", "make_error_middleware", "MISSING_CREDENTIALS"]
