"""Administrator passwords: scrypt, a memory-hard KDF from the standard library."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

# OWASP's scrypt floor is N=2^17 with r=8, p=1; 2^15 keeps 32 MiB per hash and ~0.1 s here.
N, R, P = 2**15, 8, 1
_MAXMEM = 128 * R * N * 2


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, maxmem=_MAXMEM, dklen=32)
    return f"scrypt${N}${R}${P}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches the stored hash (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        assert scheme == "scrypt"
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                                maxmem=128 * int(r) * int(n) * 2, dklen=len(expected))
    except (ValueError, AssertionError):
        return False
    return hmac.compare_digest(actual, expected)


# Compared against when the e-mail is unknown, so that a login takes as long either way.
DUMMY_HASH = hash_password(os.urandom(16).hex())
