"""Idempotency keys: a retried POST runs once and its first answer is replayed (owner of
`idempotency_keys`, sql/0025).

A partner or an administrator sends `Idempotency-Key: <key>` with a POST whose route is declared
`idempotent` (antaca_api/routing.py). Before the handler runs, the key is claimed: a row is
inserted for (caller, key) with the request's hash and a lease. The primary key decides a race:
of concurrent retries one claims, the others find the claim and are answered 409
IDEMPOTENCY_KEY_IN_PROGRESS at once (they never wait on a lock). Once the handler succeeded its
answer (status and bytes, sealed with AES-256-GCM) is stored for `response_retention_hours`; a
retry with the same request gets it back, one with a different request 409
IDEMPOTENCY_KEY_REUSED. A handler that fails releases its claim: a refused request changed
nothing, so the same key may be retried. A claim whose process died is taken over by a retry of
the same request once its lease (`claim_lease_seconds`) ran out. Expired rows are deleted by
`run_sweeper`.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from antaca_api.domain_errors import (
    IdempotencyKeyInProgress,
    IdempotencyKeyReused,
    ValidationFailed,
)
from antaca_auth.cardkeys import CardKeys
from antaca_auth.periodic import every

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"

key_length_max = 255  # characters, printable ASCII
response_retention_hours = 24  # how long an answer is replayed
claim_lease_seconds = 300  # a claim older than this whose handler never finished may be taken over
sweep_interval_seconds = 60
sweep_batch_rows_max = 1000  # rows one sweeper statement deletes

# HKDF label of the key that seals stored answers; changing it makes stored answers unreadable
# (they are then treated as absent).
SEALING_INFO = b"antaca/idempotent-responses/v1"
# HKDF label of the key of request hashes: a body may carry a PIN (a physical card with PIN), and
# an unkeyed hash of a 4-digit PIN is the PIN to anyone who reads the table.
REQUEST_HASH_INFO = b"antaca/idempotent-request-hash/v1"
GCM_NONCE_BYTES = 12

CLAIM = """
    INSERT INTO idempotency_keys (caller_kind, caller_id, key, request_hash, created_at,
                                  locked_until, expires_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (caller_kind, caller_id, key) DO NOTHING
    RETURNING true"""

LOCK_STORED = """
    SELECT request_hash, status, response, locked_until, expires_at
    FROM idempotency_keys WHERE caller_kind = $1 AND caller_id = $2 AND key = $3
    FOR UPDATE"""

RECLAIM = """
    UPDATE idempotency_keys
    SET request_hash = $4, status = NULL, response = NULL, created_at = $5, locked_until = $6,
        expires_at = $7
    WHERE caller_kind = $1 AND caller_id = $2 AND key = $3"""

RECORD = """
    UPDATE idempotency_keys SET status = $4, response = $5, locked_until = NULL
    WHERE caller_kind = $1 AND caller_id = $2 AND key = $3 AND status IS NULL"""

RELEASE = """
    DELETE FROM idempotency_keys
    WHERE caller_kind = $1 AND caller_id = $2 AND key = $3 AND status IS NULL"""

SWEEP_EXPIRED = """
    DELETE FROM idempotency_keys WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM idempotency_keys WHERE expires_at <= $1
        ORDER BY expires_at LIMIT $2))"""


@dataclass(frozen=True)
class Caller:
    """Whose keys: a partner's and an administrator's keys never meet."""

    kind: str  # "partner" or "admin"
    id: uuid.UUID

    def associated_data(self, key: str) -> bytes:
        return f"{self.kind}:{self.id}:{key}".encode()


@dataclass(frozen=True)
class Stored:
    """A key's row as read under its lock."""

    request_hash: bytes
    status: int | None
    response: bytes | None
    locked_until: datetime | None
    expires_at: datetime


class Verdict(enum.Enum):
    CLAIM = "claim"  # absent, expired, or a dead claim of the same request: run it
    REPLAY = "replay"  # the same request's stored answer
    REUSED = "reused"  # the key was used for another request
    IN_PROGRESS = "in_progress"  # the same request is running now


@dataclass(frozen=True)
class Replay:
    status: int
    body: bytes


def check_key(key: str) -> str:
    """The header's key, or ValidationFailed: 1 to key_length_max printable ASCII characters."""
    if not 1 <= len(key) <= key_length_max or not all(" " <= c <= "~" for c in key):
        raise ValidationFailed(
            f"{HEADER} must be 1 to {key_length_max} printable ASCII characters")
    return key


def request_hash_key(card_keys: CardKeys) -> bytes:
    """The HMAC key of request hashes, derived from the card keys."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=REQUEST_HASH_INFO)
    return hkdf.derive(card_keys.pin_key)


def request_hash(hash_key: bytes, method: str, path_and_query: str, canonical_body: bytes,
                 public_key: str | None) -> bytes:
    """HMAC-SHA256 over what makes two requests the same request (length-prefixed parts)."""
    digest = hmac.new(hash_key, digestmod=hashlib.sha256)
    for part in (method.encode(), path_and_query.encode(), canonical_body,
                 (public_key or "").encode()):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


def verdict(stored: Stored | None, hashed: bytes, now: datetime) -> Verdict:
    """What a request with this hash does with the key's row (pure)."""
    if stored is None or stored.expires_at <= now:
        return Verdict.CLAIM
    if stored.request_hash != hashed:
        return Verdict.REUSED
    if stored.status is not None:
        return Verdict.REPLAY
    if stored.locked_until is not None and stored.locked_until <= now:
        return Verdict.CLAIM
    return Verdict.IN_PROGRESS


def _sealer(card_keys: CardKeys) -> AESGCM:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=SEALING_INFO)
    return AESGCM(hkdf.derive(card_keys.pin_key))


def seal(card_keys: CardKeys, caller: Caller, key: str, body: bytes) -> bytes:
    nonce = os.urandom(GCM_NONCE_BYTES)
    return nonce + _sealer(card_keys).encrypt(nonce, body, caller.associated_data(key))


def unseal(card_keys: CardKeys, caller: Caller, key: str, blob: bytes) -> bytes | None:
    """The stored answer, or None when it does not open (card keys replaced): then rerun."""
    try:
        return _sealer(card_keys).decrypt(blob[:GCM_NONCE_BYTES], blob[GCM_NONCE_BYTES:],
                                          caller.associated_data(key))
    except InvalidTag:
        return None


async def claim(pool: asyncpg.Pool, card_keys: CardKeys, caller: Caller, key: str,
                hashed: bytes, now: datetime) -> Replay | None:
    """None when this request now holds the key and must run; the stored answer to replay;
    or IdempotencyKeyReused / IdempotencyKeyInProgress."""
    lease = now + timedelta(seconds=claim_lease_seconds)
    expires = now + timedelta(hours=response_retention_hours)
    identity = (caller.kind, caller.id, key)
    async with pool.acquire() as conn, conn.transaction():
        if await conn.fetchval(CLAIM, *identity, hashed, now, lease, expires):
            return None
        row = await conn.fetchrow(LOCK_STORED, *identity)
        stored = None if row is None else Stored(**dict(row))
        decided = verdict(stored, hashed, now)
        if decided is Verdict.REPLAY:
            body = unseal(card_keys, caller, key, stored.response)
            if body is not None:
                return Replay(stored.status, body)
            decided = Verdict.CLAIM
        if decided is Verdict.REUSED:
            raise IdempotencyKeyReused()
        if decided is Verdict.IN_PROGRESS:
            raise IdempotencyKeyInProgress()
        if row is None:  # released between the two statements: claim it afresh
            await conn.execute(CLAIM, *identity, hashed, now, lease, expires)
        else:
            await conn.execute(RECLAIM, *identity, hashed, now, lease, expires)
        return None


async def record(pool: asyncpg.Pool, card_keys: CardKeys, caller: Caller, key: str,
                 status: int, body: bytes) -> None:
    """Keep the answer of the request that holds the key."""
    await pool.execute(RECORD, caller.kind, caller.id, key, status,
                       seal(card_keys, caller, key, body))


async def release(pool: asyncpg.Pool, caller: Caller, key: str) -> None:
    """Give the key up after a failed request: a retry runs it again."""
    await pool.execute(RELEASE, caller.kind, caller.id, key)


async def sweep_expired(pool: asyncpg.Pool, now: datetime) -> int:
    """Delete expired keys, sweep_batch_rows_max at a time; how many went."""
    deleted = 0
    while True:
        result = await pool.execute(SWEEP_EXPIRED, now, sweep_batch_rows_max)
        count = int(result.rsplit(" ", 1)[-1])
        deleted += count
        if count < sweep_batch_rows_max:
            return deleted


async def run_sweeper(pool: asyncpg.Pool, clock, interval: float = sweep_interval_seconds) -> None:
    """The background job: expired idempotency keys deleted every `interval` seconds."""

    async def sweep() -> str | None:
        deleted = await sweep_expired(pool, clock())
        return f"deleted {deleted} expired keys" if deleted else None

    await every(interval, sweep, "idempotency key sweeper")
