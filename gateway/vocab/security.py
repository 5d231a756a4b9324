"""Secrets: token generation and hashing, constant-time checks, the cookie secret, cookie encryption.

Tokens are 32 random bytes as 64 hex characters. The store keeps only a 4-character
prefix (to find candidates) and a salted SHA-256 digest. That digest is enough for
generated tokens, which carry 256 bits of entropy; config-provided tokens are the
operator's own plaintext in the config file anyway.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import stat

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

TOKEN_PREFIX_LENGTH = 4
TOKEN_MAX_LENGTH = 64  # longer presented tokens are refused before hashing (JupyterHub 6.1.1 does the same)


def new_token() -> str:
    return secrets.token_hex(32)


def token_prefix(token: str) -> str:
    return token[:TOKEN_PREFIX_LENGTH]


def hash_token(token: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}:{token}".encode()).hexdigest()


def new_salt() -> str:
    return secrets.token_hex(8)


def token_matches(token: str, salt: str, digest: str) -> bool:
    return hmac.compare_digest(hash_token(token, salt), digest)


def cache_key(token: str) -> bytes:
    """In-memory cache key for a verified token: its digest, so the cache holds no plaintext."""
    return hashlib.sha256(token.encode()).digest()


class InsecureSecretFile(Exception):
    pass


def load_or_create_cookie_secret(path: str) -> bytes:
    """Read the hex secret in ``path``, creating it (mode 0600) when missing.

    Refuses a file that group or others may read, as JupyterHub does for world-readable ones.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = os.stat(path).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise InsecureSecretFile(
                f"Cookie secret file {path} must not be readable by group or others "
                f"(mode {stat.S_IMODE(mode):o}); run: chmod 600 {path}"
            ) from None
        with open(path) as f:
            text = f.read().strip()
        try:
            secret = bytes.fromhex(text)
        except ValueError:
            raise InsecureSecretFile(f"Cookie secret file {path} does not hold a hex string") from None
        if len(secret) < 16:
            raise InsecureSecretFile(f"Cookie secret in {path} is too short (need at least 16 bytes)")
        return secret
    secret = secrets.token_bytes(32)
    with os.fdopen(fd, "w") as f:
        f.write(secret.hex() + "\n")
    return secret


def derive_key(secret: bytes, purpose: bytes) -> bytes:
    """A 32-byte key for one purpose, so one cookie secret never serves two jobs directly."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"gateway:" + purpose).derive(secret)


class CookieCipher:
    """Encrypts and signs small cookie values (Fernet). Extra secrets rotate keys: first encrypts, all decrypt."""

    def __init__(self, secret: bytes, *older: bytes):
        keys = [base64.urlsafe_b64encode(derive_key(s, b"cookie")) for s in (secret, *older)]
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, value: str, max_age: float | None = None) -> str | None:
        try:
            ttl = int(max_age) if max_age else None
            return self._fernet.decrypt(value.encode(), ttl=ttl).decode()
        except (InvalidToken, ValueError, UnicodeError):
            return None


def sign(secret: bytes, message: str) -> str:
    """Short HMAC for XSRF tokens bound to a session and a path."""
    key = derive_key(secret, b"xsrf")
    return base64.urlsafe_b64encode(hmac.digest(key, message.encode(), "sha256")[:24]).decode().rstrip("=")


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
