"""Config values: each coercer takes a raw value from jupyterhub_config.py or the command line (there,
possibly a string) and returns the typed value, or raises ValueError with a message that names what was
expected. ``config`` collects those messages into one ConfigError per start.

Pure functions: no I/O, nothing from the rest of gateway.
"""

from __future__ import annotations

import ast
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit


def _from_cli(value: Any) -> Any:
    """Command-line values arrive as strings; read them as Python literals when they are."""
    if type(value).__name__ == "DeferredConfigString" or isinstance(value, str):
        text = str(value)
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
    return value


def as_str(value: Any) -> str:
    if type(value).__name__ == "DeferredConfigString":
        return str(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__} {value!r}")
    return value


def as_bool(value: Any) -> bool:
    value = _from_cli(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    if not isinstance(value, bool):
        raise ValueError(f"expected True or False, got {value!r}")
    return value


def as_optional_bool(value: Any) -> bool | None:
    return None if value is None else as_bool(value)


def as_int(minimum: int | None = 0) -> Callable[[Any], int]:
    def coerce(value: Any) -> int:
        value = _from_cli(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {type(value).__name__} {value!r}")
        if minimum is not None and value < minimum:
            raise ValueError(f"must be >= {minimum}, got {value}")
        return value

    return coerce


def as_number(minimum: float = 0) -> Callable[[Any], float]:
    def coerce(value: Any) -> float:
        value = _from_cli(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number, got {type(value).__name__} {value!r}")
        if value < minimum:
            raise ValueError(f"must be >= {minimum}, got {value}")
        return float(value)

    return coerce


def as_str_tuple(value: Any) -> tuple[str, ...]:
    value = _from_cli(value)
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of strings, got {value!r}")
    return tuple(value)


def as_name_set(value: Any) -> frozenset[str]:
    value = _from_cli(value)
    if not isinstance(value, (set, frozenset, list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a set of names, got {value!r}")
    return frozenset(value)


def as_str_dict(value: Any) -> Mapping[str, str]:
    value = _from_cli(value)
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a dict, got {type(value).__name__}")
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ValueError(f"expected a dict of strings to strings, got {k!r}: {v!r}")
    return dict(value)


def as_env_dict(value: Any) -> Mapping[str, str]:
    """Spawner.environment: values may be strings or callables taking the spawner (JupyterHub)."""
    value = _from_cli(value)
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a dict, got {type(value).__name__}")
    for k, v in value.items():
        if not isinstance(k, str) or not (isinstance(v, str) or callable(v)):
            raise ValueError(f"expected a dict of names to strings, got {k!r}: {v!r}")
    return dict(value)


def as_dict(value: Any) -> Mapping[str, Any]:
    value = _from_cli(value)
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a dict, got {type(value).__name__}")
    return dict(value)


def as_dict_list(value: Any) -> tuple[Mapping[str, Any], ...]:
    value = _from_cli(value)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, Mapping) for v in value):
        raise ValueError(f"expected a list of dicts, got {value!r}")
    return tuple(dict(v) for v in value)


# What a base_url may hold once percent-decoded: the ASCII characters a URL path carries unquoted
# (RFC 3986 pchar). aiohttp matches routes against the decoded path but re-quotes anything else
# (space, non-ASCII, '%', quotes ...) in a route pattern, so such a prefix could never match.
_ROUTABLE_BASE = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/]*")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def as_base_url(value: Any) -> str:
    """JupyterHub's URLPrefix (leading and trailing '/', otherwise verbatim), refusing what cannot be routed.

    Percent-escapes are kept as written (the URL form); the route form (:func:`route_form`) must be
    made of path characters only, with no empty, '.' or '..' segment.
    """
    value = as_str(value)
    if not value.startswith("/"):
        value = "/" + value
    if not value.endswith("/"):
        value += "/"
    if _BAD_ESCAPE.search(value):
        raise ValueError(f"{value!r}: '%' must start a percent-escape such as %40")
    if "%2f" in value.lower():
        raise ValueError(f"{value!r}: an encoded '/' (%2F) is not allowed")
    decoded = unquote(value, errors="replace")  # a byte that is not UTF-8 becomes U+FFFD, refused below
    bad = "".join(sorted({ch for ch in decoded if not _ROUTABLE_BASE.fullmatch(ch)}))
    if bad:
        raise ValueError(f"{value!r} decodes to {decoded!r}, whose character(s) {bad!r} gateway cannot route; "
                         "use letters, digits and - . _ ~ ! $ & ' ( ) * + , ; = : @ (raw or percent-encoded)")
    if decoded != "/" and any(seg in ("", ".", "..") for seg in decoded[1:-1].split("/")):
        raise ValueError(f"{value!r} decodes to {decoded!r}: empty, '.' and '..' segments are not allowed")
    return value


def route_form(prefix: str) -> str:
    """The route form of a URL-form prefix: percent-decoded once (``/a%40b/hub/`` → ``/a@b/hub/``)."""
    return unquote(prefix) if "%" in prefix else prefix


def as_bind_url(value: Any) -> str:
    value = as_str(value)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or parts.port is None and not parts.netloc:
        raise ValueError(f"expected a URL like http://127.0.0.1:8000/, got {value!r}")
    return value


def as_db_url(value: Any) -> str:
    value = as_str(value)
    if not value.startswith("sqlite:///") and value != "sqlite://":
        raise ValueError(f"only sqlite:///<path> is supported by the embedded store, got {value!r}")
    return value


def as_log_level(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return logging.getLevelName(value)
    value = as_str(value).upper()
    if value not in ("DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL"):
        raise ValueError(f"expected a log level such as INFO or DEBUG, got {value!r}")
    return "WARNING" if value == "WARN" else value


def as_secret(value: Any) -> bytes:
    """cookie_secret: hex string (JupyterHub's format) or raw bytes."""
    if isinstance(value, bytes):
        return value
    text = as_str(value).strip()
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ValueError("expected a hex string (as `openssl rand -hex 32` prints)") from None


def as_services(value: Any) -> tuple[Mapping[str, Any], ...]:
    services = as_dict_list(value)
    allowed = {
        "name", "admin", "url", "api_token", "command", "cwd", "environment", "user", "info",
        "display", "oauth_no_confirm", "oauth_client_id", "oauth_redirect_uri",
        "oauth_client_allowed_scopes", "oauth_roles", "timeout",
    }
    for spec in services:
        name = spec.get("name")
        if not isinstance(name, str) or not name or "/" in name or name.strip() != name:
            raise ValueError(f"every service needs a valid 'name' (no '/', not empty), got {name!r}")
        unknown = set(spec) - allowed
        if unknown:
            raise ValueError(f"service {name!r}: no such service field(s): {', '.join(sorted(unknown))}")
    names = [s["name"] for s in services]
    if len(names) != len(set(names)):
        raise ValueError("service names must be unique")
    return services


def as_roles(value: Any) -> tuple[Mapping[str, Any], ...]:
    roles = as_dict_list(value)
    allowed = {"name", "description", "scopes", "users", "services", "groups"}
    for role in roles:
        if not isinstance(role.get("name"), str):
            raise ValueError(f"every role needs a 'name', got {role!r}")
        unknown = set(role) - allowed
        if unknown:
            raise ValueError(f"role {role['name']!r}: unknown field(s): {', '.join(sorted(unknown))}")
    return roles


def as_named_server_limit(value: Any) -> int:
    if callable(value):
        raise ValueError("a callable named_server_limit_per_user is not supported; give an integer")
    return as_int(0)(value)
