"""Names: user, server and group names normalised and validated once, as JupyterHub 6 does.

Route prefixes are built from validated names only, so one (user, server) pair maps to one
URL and no crafted name lands on another user's route (kubespawner CVE-2020-15110).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Protocol

MAX_NAME_LENGTH = 255
SERVER_NAME = re.compile(r"^[a-z](?:[a-z0-9]|-(?=[a-z0-9])){0,29}$")
DISPLAY_NAME_MAX = 255


class NameRules(Protocol):
    """The two settings names follow (gateway.config.Settings has both)."""

    @property
    def username_map(self) -> Mapping[str, str]: ...

    @property
    def username_pattern(self) -> str | None: ...


def normalize_username(name: str, settings: NameRules) -> str:
    name = name.lower()
    return settings.username_map.get(name, name)


def validate_username(name: str, settings: NameRules | None = None) -> bool:
    if not name or len(name) > MAX_NAME_LENGTH or name != name.strip():
        return False
    if "/" in name or "\\" in name or set(name) == {"."}:
        return False
    if any(unicodedata.category(ch)[0] == "C" for ch in name):  # control characters, NUL
        return False
    if settings is not None and settings.username_pattern and not re.fullmatch(settings.username_pattern, name):
        return False
    return True


def valid_server_name(name: str) -> bool:
    """JupyterHub 6 safe slugs: 1-30 of [a-z0-9-], starting with a letter, no '--', not ending in '-'."""
    return bool(SERVER_NAME.match(name))


def valid_group_name(name: str) -> bool:
    return validate_username(name)


def valid_display_name(name: str) -> bool:
    if not 1 <= len(name) <= DISPLAY_NAME_MAX or name != name.strip() or "  " in name:
        return False
    return unicodedata.normalize("NFC", name) == name and name.isprintable()
