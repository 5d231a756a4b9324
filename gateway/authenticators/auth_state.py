"""auth_state: what an authenticator returns about a login (tokens, directory attributes), kept encrypted.

As JupyterHub does it: ``JUPYTERHUB_CRYPT_KEY`` holds one or more 32-byte keys separated by ``;``
(each hex, urlsafe base64, or 32 raw characters); the first encrypts, all decrypt (key rotation), with
Fernet through MultiFernet. The value is JSON, encrypted, and stored in ``users.encrypted_auth_state``.
With ``enable_auth_state`` and no usable key the gateway does not start (exit 2).

The plaintext is never logged: failures name the user and the reason, never the value.
``load_auth_state(store, crypt, user_name)`` is the one call other parts (the spawner adapter's
``user.get_auth_state()``) make to read it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from gateway.config import ConfigError

log = logging.getLogger("gateway.auth_state")

KEY_ENV = "JUPYTERHUB_CRYPT_KEY"


def _one_key(text: str) -> bytes:
    """A raw 32-byte key from its hex (64 chars), base64 (44 chars) or raw (32 chars) spelling."""
    raw = text.encode("ascii", "strict")
    if len(raw) == 64:
        try:
            return binascii.a2b_hex(raw)
        except (binascii.Error, ValueError):
            pass
    if len(raw) == 44:
        try:
            decoded = base64.urlsafe_b64decode(raw)
        except (binascii.Error, ValueError):
            decoded = b""
        if len(decoded) == 32:
            return decoded
    if len(raw) == 32:
        return raw
    raise ValueError("each key must be 32 bytes, hex-encoded (64 characters) or base64-encoded (44 characters); "
                     "make one with `openssl rand -hex 32`")


def parse_keys(value: str) -> list[bytes]:
    """``;``-separated keys (empty parts ignored, as JupyterHub does); ValueError on a bad one."""
    keys = []
    for position, part in enumerate(value.split(";"), start=1):
        part = part.strip()
        if not part:
            continue
        try:
            keys.append(_one_key(part))
        except (ValueError, UnicodeEncodeError) as e:
            raise ValueError(f"key {position} of {KEY_ENV}: {e}") from None
    return keys


class AuthStateCrypt:
    """Encrypts and decrypts auth_state values (JSON) with the configured keys; work runs in a thread."""

    def __init__(self, keys: list[bytes]):
        if not keys:
            raise ValueError(f"no keys in {KEY_ENV}")
        self._fernet = MultiFernet([Fernet(base64.urlsafe_b64encode(k)) for k in keys])

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> AuthStateCrypt:
        """The crypt from ``JUPYTERHUB_CRYPT_KEY``; ConfigError (exit 2) when it is missing or malformed."""
        value = (environ if environ is not None else os.environ).get(KEY_ENV, "")
        try:
            keys = parse_keys(value)
        except ValueError as e:
            raise ConfigError([f"Authenticator.enable_auth_state: {e}"]) from None
        if not keys:
            raise ConfigError([f"Authenticator.enable_auth_state is True but {KEY_ENV} is not set: set it to one "
                               "or more 32-byte keys separated by ';' (e.g. the output of `openssl rand -hex 32`)"])
        return cls(keys)

    def encrypt_now(self, value: Any) -> bytes:
        return self._fernet.encrypt(json.dumps(value).encode("utf-8"))

    def decrypt_now(self, blob: bytes) -> Any:
        return json.loads(self._fernet.decrypt(blob).decode("utf-8"))

    async def encrypt(self, value: Any) -> bytes:
        return await asyncio.to_thread(self.encrypt_now, value)

    async def decrypt(self, blob: bytes) -> Any:
        return await asyncio.to_thread(self.decrypt_now, blob)

    def can_decrypt(self, blob: bytes) -> bool:
        try:
            self._fernet.decrypt(blob)
        except InvalidToken:
            return False
        return True


async def save_auth_state(store: Any, crypt: AuthStateCrypt | None, user_id: int, auth_state: Any) -> None:
    """Store ``auth_state`` encrypted (None clears it). Without a crypt nothing can be kept: cleared."""
    if auth_state is None or crypt is None:
        await store.set_encrypted_auth_state(user_id, None)
        return
    await store.set_encrypted_auth_state(user_id, await crypt.encrypt(auth_state))


async def load_auth_state(store: Any, crypt: AuthStateCrypt | None, user_name: str) -> Any:
    """The user's decrypted auth_state, or None (none stored, auth state disabled, or a key that no longer fits).

    This is the function the spawner adapter calls for ``user.get_auth_state()`` and ``auth_state_hook``.
    """
    if crypt is None:
        return None
    blob = await store.get_encrypted_auth_state(user_name)
    if blob is None:
        return None
    try:
        return await crypt.decrypt(bytes(blob))
    except (InvalidToken, ValueError) as e:  # keys rotated away, or a damaged value: as JupyterHub, None
        log.error("Cannot decrypt the auth_state of %r (%s): was JUPYTERHUB_CRYPT_KEY changed?", user_name,
                  type(e).__name__)
        return None
