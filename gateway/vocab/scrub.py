"""Secrets out of log text: query values whose names look like credentials, Authorization and Cookie header
values, attacker-sized fields. Pure functions; ``gateway.ops.logs`` writes with them.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MAX_FIELD = 300
SECRET = "[secret]"
# A query parameter is a secret when its (decoded, lower-cased) name contains one of these.
SECRET_PARAM_PARTS = ("token", "auth", "key", "code", "state", "xsrf", "secret", "pass", "session", "signature")
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")
# Safety-net patterns for free text (messages, tracebacks, repr of raw request bytes).
# name=value, as in a query or a form body
_PAIR = re.compile(r"(?<![A-Za-z0-9_.%-])([A-Za-z0-9_.%-]+)=([^&\s\"'<>;,\\=?]+)")
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
