"""Administrator passwords: Argon2id (`argon2-cffi`), the winner of the Password Hashing
Competition and OWASP's first choice.

Hashes written before Argon2id are scrypt (`scrypt$N$r$p$salt$digest`): they still verify, and
`needs_rehash` says so, so that the next successful sign-in stores the password again as Argon2id
(antaca_api/admins.py, `open_session`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

import argon2

# RFC 9106's second recommended option (64 MiB, 3 passes) with 2 lanes: ~50 ms here.
ARGON2_TIME_COST = 3
ARGON2_MEMORY_KIB = 64 * 1024
ARGON2_PARALLELISM = 2
_HASHER = argon2.PasswordHasher(time_cost=ARGON2_TIME_COST, memory_cost=ARGON2_MEMORY_KIB,
                                parallelism=ARGON2_PARALLELISM, type=argon2.Type.ID)

ARGON2_PREFIX = "$argon2id$"
SCRYPT_PREFIX = "scrypt$"


def hash_password(password: str) -> str:
    """The stored form of a password: an Argon2id hash with its own salt and parameters."""
    return _HASHER.hash(password)


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches the stored hash, Argon2id or (older) scrypt."""
    if stored.startswith(ARGON2_PREFIX):
        try:
            return _HASHER.verify(stored, password)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False
    return verify_scrypt(password, stored)


def needs_rehash(stored: str) -> bool:
    """Whether a hash that just verified should be stored again: scrypt, or Argon2id with other
    parameters than today's."""
    if not stored.startswith(ARGON2_PREFIX):
        return True
    return _HASHER.check_needs_rehash(stored)


def hash_scrypt(password: str, n: int = 2**15, r: int = 8, p: int = 1) -> str:
    """The former stored form (kept to test the upgrade from it)."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p,
                            maxmem=128 * r * n * 2, dklen=32)
    return (f"scrypt${n}${r}${p}${base64.b64encode(salt).decode()}"
            f"${base64.b64encode(digest).decode()}")


def verify_scrypt(password: str, stored: str) -> bool:
    """Whether `password` matches a scrypt hash (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n),
                                r=int(r), p=int(p), maxmem=128 * int(r) * int(n) * 2,
                                dklen=len(expected))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


# Compared against when the e-mail is unknown, so that a sign-in takes as long either way.
DUMMY_HASH = hash_password(os.urandom(16).hex())
