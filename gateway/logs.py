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
import re
import sys
from typing import Callable
from urllib.parse import unquote

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from gateway import keys

ACCESS_LOGGER = "gateway.access"
MAX_FIELD = 300
MAX_RECORD = 16_000
SECRET = "[secret]"
QUIET_SUFFIXES = ("health", "metrics")  # hub paths logged at DEBUG even when they succeed
# A query parameter is a secret when its (decoded, lower-cased) name contains one of these.
SECRET_PARAM_PARTS = ("token", "auth", "key", "code", "state", "xsrf", "secret", "pass", "session", "signature")

_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")

# Safety-net patterns for free text (messages, tracebacks, repr of raw request bytes).
_PAIR = re.compile(r"(?<![A-Za-z0-9_.%-])([A-Za-z0-9_.%-]+)=([^&\s\"'<>;,\\=?]+)")  # name=value, as in a query or a form body
_HEADER = re.compile(r"(?i)((?:proxy-)?authorization|cookie|set-cookie|x-xsrftoken|x-csrftoken)"
                     r"(['\"]?\s*[:=]\s*['\"]?)[^\r\n'\"]+")  # header lines and dict reprs
_SCHEME = re.compile(r"(?i)\b(token|bearer)(\s+)[A-Za-z0-9_\-.~+/=]{8,}")  # an Authorization value quoted alone
_SCHEME_HINT = re.compile(r"(?:token|bearer)\s")
_HEADER_WORDS = ("authorization", "cookie", "xsrf", "csrf")


def _scrub_pair(match: re.Match) -> str:
    return f"{match.group(1)}={SECRET}" if _secret_param(match.group(1)) else match.group()


def scrub_text(text: str) -> str:
    """Replace anything that looks like a credential in free text with ``[secret]``.

    Each pattern runs only when a cheap substring test says it could match: most lines have none."""
    if "=" in text:
        text = _PAIR.sub(_scrub_pair, text)
    lowered = text.lower()
    if any(word in lowered for word in _HEADER_WORDS):
        text = _HEADER.sub(r"\1\2" + SECRET, text)
    if _SCHEME_HINT.search(lowered):
        text = _SCHEME.sub(r"\1\2" + SECRET, text)
    return text


def clip(text: str, limit: int = MAX_FIELD) -> str:
    """Printable ASCII only (others as \\xNN / \\uNNNN), at most ``limit`` characters plus a marker."""
    if not (text.isascii() and text.isprintable()):
        text = _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
    if len(text) > limit:
        text = f"{text[:limit]}...[{len(text) - limit} more]"
    return text


def _secret_param(name: str) -> bool:
    lowered = (unquote(name) if "%" in name else name).lower()
    return any(part in lowered for part in SECRET_PARAM_PARTS)


# a credential-like pair nested (percent-encoded) inside another value, e.g. next=/x%3Ftoken%3Dabc
_NESTED = re.compile(r"(?i)([a-z0-9_.-]*(?:" + "|".join(SECRET_PARAM_PARTS) + r")[a-z0-9_.-]*)(%3D|=)(.*?)(?=%26|&|$)")


def scrub_query(raw_query: str) -> str:
    """A raw query string with the values of credential-like parameters replaced by ``[secret]``,
    also where such a pair is nested in another parameter's value (``next=...%3Ftoken%3D...``)."""
    if not raw_query:
        return raw_query
    parts = []
    for item in raw_query.split("&"):
        name, sep, value = item.partition("=")
        if sep and _secret_param(name):
            parts.append(f"{name}={SECRET}")
        elif sep and ("%3d" in value.lower() or "=" in value):
            parts.append(name + sep + _NESTED.sub(lambda m: f"{m.group(1)}{m.group(2)}{SECRET}", value))
        else:
            parts.append(item)
    return "&".join(parts)


# deprecated endpoints that carry a credential in the path itself
_SECRET_PATH = re.compile(r"(/authorizations/(?:token|cookie)/)[^?]*")


def loggable_url(raw_path_qs: str) -> str:
    """A raw request target (path and query, still percent-encoded) made safe to log."""
    path, sep, query = raw_path_qs.partition("?")
    if "/authorizations/" in path:
        path = _SECRET_PATH.sub(r"\1" + SECRET, path)
    return clip(path + sep + scrub_query(query)) if sep else clip(path)


def caller_name(request: web.BaseRequest) -> str:
    identity = request.get(keys.IDENTITY)
    if identity is None or identity.anonymous:
        return "-"
    return identity.name


class AccessLogger(AbstractAccessLogger):
    """aiohttp calls ``log`` after every response; see the module docstring for the line and levels."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        try:
            status = response.status
            level = self._level(request, status)
            if not self.logger.isEnabledFor(level):
                return
            write_access_line(self.logger, level, status, request.method, request.raw_path, caller_name(request),
                              request.remote, time, request.headers.get, request.content_length,
                              response.body_length)
        except Exception:  # a log line must never break a response
            self.logger.debug("Could not write an access line", exc_info=True)

    @staticmethod
    def _level(request: web.BaseRequest, status: int) -> int:
        hub_prefix = _hub_prefix(request)
        if status >= 500:
            return logging.ERROR if request.path.startswith(hub_prefix) else logging.WARNING
        if status >= 400 or not request.path.startswith(hub_prefix):
            return proxied_level(status)  # a proxied request (or a hub 4xx)
        path = request.path
        if path.startswith(hub_prefix + "static/") or path.endswith(QUIET_SUFFIXES):
            return logging.DEBUG
        return logging.INFO


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


def _hub_prefix(request: web.BaseRequest) -> str:
    try:
        return request.app[keys.SETTINGS].hub_route  # type: ignore[attr-defined]  # compared with request.path
    except (AttributeError, AssertionError, KeyError, RuntimeError):
        return "/hub/"  # a request the parser refused has no app; it is a 4xx, logged as such anyway


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


def access_log_args() -> dict[str, object]:
    """``handler_args`` for ``web.Application``: they override the runner's, so every runner
    (the CLI's and the tests') writes the same access log."""
    return {"access_log_class": AccessLogger, "access_log": logging.getLogger(ACCESS_LOGGER)}


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
