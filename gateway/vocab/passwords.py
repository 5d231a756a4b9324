"""Password hashes for the built-in ``password`` authenticator: scrypt from ``cryptography``.

A stored hash is one self-describing string, ``scrypt$<log2 n>$<r>$<p>$<salt>$<key>`` (salt and
key urlsafe base64), so the cost can rise later without invalidating old hashes. Checking is
constant-time (``Scrypt.verify``), and checking against a missing hash still derives a key, so a
wrong user name costs as long as a wrong password. Derivation is CPU and memory heavy (32 MiB
each), so it runs in threads, a few at a time.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from concurrent.futures import ThreadPoolExecutor

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

SCHEME = "scrypt"
LOG2_N, R, P = 15, 8, 1
KEY_LENGTH, SALT_LENGTH = 32, 16
MIN_LENGTH = 8
MAX_LENGTH = 1024  # longer input is refused before hashing: bounded work per attempt
_DUMMY = None  # a hash to check against when the user has none (same cost as a real check)
_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="scrypt")  # at most 4 derivations at once


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def password_problem(password: str) -> str | None:
    """Why ``password`` may not be set, or None."""
    if len(password) < MIN_LENGTH:
        return f"Passwords must be at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"Passwords must be at most {MAX_LENGTH} characters"
    return None


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(SALT_LENGTH)
    key = Scrypt(salt=salt, length=KEY_LENGTH, n=2**LOG2_N, r=R, p=P).derive(password.encode())
    return f"{SCHEME}${LOG2_N}${R}${P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, encoded: str | None) -> bool:
    """True if ``password`` matches ``encoded``; a missing or malformed hash never matches."""
    global _DUMMY
    if encoded is None or len(password) > MAX_LENGTH:
        if _DUMMY is None:
            _DUMMY = hash_password(secrets.token_hex(16))
        verify_password(secrets.token_hex(8), _DUMMY)
        return False
    try:
        scheme, log2_n, r, p, salt, key = encoded.split("$")
        if scheme != SCHEME:
            return False
        kdf = Scrypt(salt=_unb64(salt), length=KEY_LENGTH, n=2 ** int(log2_n), r=int(r), p=int(p))
        kdf.verify(password.encode(), _unb64(key))
        return True
    except (InvalidKey, ValueError):
        return False


async def hash_password_async(password: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(_POOL, hash_password, password)


async def verify_password_async(password: str, encoded: str | None) -> bool:
    return await asyncio.get_running_loop().run_in_executor(_POOL, verify_password, password, encoded)
