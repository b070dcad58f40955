"""Bearer tokens and one-time secrets: random, handed out once, stored only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets


def new_secret(nbytes: int = 32) -> tuple[str, bytes]:
    """A fresh random token and the hash to store for it."""
    token = secrets.token_urlsafe(nbytes)
    return token, hash_secret(token)


def hash_secret(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
