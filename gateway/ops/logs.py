"""Logs: one access-log line per request, and log output that never carries a secret.

Vocabulary:
- *access line*: ``200 GET /hub/api/users (admin@127.0.0.1) 3.21ms`` (JupyterHub's shape), written by
  ``AccessLogger`` (an aiohttp ``AbstractAccessLogger``) after each response, on logger ``gateway.access``.
  The user part is the caller's user or service name, ``-`` when anonymous. At DEBUG the line also
  has the user agent, the referrer and the body sizes.
- *secret*: a query value whose name looks like a credential (``token``, ``code``, ``state``,
  ``_xsrf``, ``password`` ... ), an ``Authorization`` or ``Cookie`` header value, a password.
  Secrets are written as ``[secret]``; headers and bodies are never logged at all.
- *attacker-sized*: a path, query or user agent is cut to ``MAX_FIELD`` characters, and characters
  outside printable ASCII are escaped, so a request cannot flood or forge log lines.

Levels: hub requests log at INFO (health, metrics and static files at DEBUG), 4xx at WARNING,
5xx at ERROR; proxied requests (``/user/...``) at DEBUG when they succeed (one line per proxied
request would cost the proxy real time) and WARNING when they fail.

Every other log line passes ``ScrubbingFormatter``, a safety net that scrubs the same patterns
from messages and tracebacks (aiohttp's own messages can quote a raw request line). Advisory:
CVE-2022-24757 (jupyter-server wrote auth headers to its log).
"""

from __future__ import annotations

import logging
import sys
from typing import Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from gateway.vocab.scrub import clip, loggable_url, scrub_text

ACCESS_LOGGER = "gateway.access"
MAX_RECORD = 16_000
QUIET_SUFFIXES = ("health", "metrics")  # hub paths logged at DEBUG even when they succeed


class AccessLogger(AbstractAccessLogger):
    """aiohttp calls ``log`` after every response; see the module docstring for the line and levels.

    ``access_log_args`` makes the subclass that knows how to name the caller. A request is the hub's when
    aiohttp routed it into one of the hub's sub-apps (``/hub``, ``/hub/api``)."""

    @staticmethod
    def caller_name(request: web.BaseRequest) -> str:
        return "-"

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        try:
            status = response.status
            level = self._level(request, status)
            if not self.logger.isEnabledFor(level):
                return
            write_access_line(self.logger, level, status, request.method, request.raw_path, self.caller_name(request),
                              request.remote, time, request.headers.get, request.content_length,
                              response.body_length)
        except Exception:  # a log line must never break a response
            self.logger.debug("Could not write an access line", exc_info=True)

    def _level(self, request: web.BaseRequest, status: int) -> int:
        match_info = _match_info(request)
        in_hub = match_info is not None and len(match_info.apps) > 1  # routed into a hub sub-app
        if status >= 500:
            return logging.ERROR if in_hub else logging.WARNING
        if status >= 400 or not in_hub:
            return proxied_level(status)  # a proxied request (or a hub 4xx)
        if isinstance(match_info.route.resource, web.StaticResource) or request.path.endswith(QUIET_SUFFIXES):
            return logging.DEBUG
        return logging.INFO


def _match_info(request: web.BaseRequest) -> web.UrlMappingMatchInfo | None:
    try:
        return request.match_info  # type: ignore[attr-defined]
    except (AttributeError, AssertionError):
        return None  # a request the parser refused was never routed


def write_access_line(logger: logging.Logger, level: int, status: int, method: str, raw_path: str, caller: str,
                      remote: str | None, seconds: float, header: Callable[[str, str], str],
                      bytes_in: int | None, bytes_out: int) -> None:
    """The access line (the caller checked ``logger.isEnabledFor(level)``); DEBUG adds details."""
    line = "%d %s %s (%s@%s) %.2fms"
    args: list[object] = [status, clip(method, 20), loggable_url(raw_path), caller, remote or "-", seconds * 1000]
    if logger.isEnabledFor(logging.DEBUG):
        line += " ua=%s referer=%s in=%s out=%s"
        args += [clip(header("User-Agent", "-")), loggable_url(header("Referer", "-")),
                 bytes_in if bytes_in is not None else "-", bytes_out]
    logger.log(level, line, *args)


def proxied_level(status: int) -> int:
    """A proxied request's access-line level: DEBUG when it went well, WARNING otherwise."""
    return logging.WARNING if status >= 400 else logging.DEBUG


class BadRequestFilter(logging.Filter):
    """aiohttp logs every request its parser refuses at ERROR, with a traceback quoting the raw
    request line. Anyone can send those: make them one WARNING line, cut to size (scrubbed by
    the formatter like every line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError) or not 400 <= (exc.code or 0) < 500:
            return True
        if not logging.getLogger().isEnabledFor(logging.WARNING):
            return False
        detail = " ".join(str(exc.message).split())
        record.msg, record.args = "Bad request from %s: %s", (clip(str(record.args[0] if record.args else "-")),
                                                               clip(detail))
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text = None, None
        return True


def access_log_args(caller_name: Callable[[web.BaseRequest], str]) -> dict[str, object]:
    """``handler_args`` for ``web.Application``: they override the runner's, so every runner
    (the CLI's and the tests') writes the same access log. ``caller_name``: the user or service
    name of a request ('-' when anonymous)."""
    logger_class = type("GatewayAccessLogger", (AccessLogger,), {"caller_name": staticmethod(caller_name)})
    return {"access_log_class": logger_class, "access_log": logging.getLogger(ACCESS_LOGGER)}


# ---------------------------------------------------------------- formatting


class ScrubbingFormatter(logging.Formatter):
    """JupyterHub-like ``[I 2025-01-01 12:00:00 gateway] message``, with secrets scrubbed and
    oversized records cut."""

    def format(self, record: logging.LogRecord) -> str:
        text = scrub_text(super().format(record))
        if len(text) > MAX_RECORD:
            text = f"{text[:MAX_RECORD]}...[{len(text) - MAX_RECORD} more characters]"
        return text


LOG_FORMAT = "[%(levelname).1s %(asctime)s %(name)s] %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
_HANDLER_MARK = "_gateway_handler"


def configure_logging(level: str) -> None:
    """Send every log record to stderr through the scrubbing formatter, at ``level``.

    Idempotent: called again (``--log-level``, SIGHUP) it only changes the level."""
    root = logging.getLogger()
    if not any(getattr(h, _HANDLER_MARK, False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(ScrubbingFormatter(LOG_FORMAT, DATE_FORMAT))
        setattr(handler, _HANDLER_MARK, True)
        root.addHandler(handler)
        logging.getLogger("aiohttp.server").addFilter(BadRequestFilter())
    set_level(level)


def set_level(level: str) -> None:
    logging.getLogger().setLevel(getattr(logging, level.upper(), logging.INFO))
    # aiosqlite logs every statement at DEBUG: noise, and it would show token hashes and prefixes.
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)
