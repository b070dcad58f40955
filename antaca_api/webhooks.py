"""Partners' webhook endpoints, their outbox and its delivery log: the one module that owns
`webhook_endpoints`, `webhook_deliveries` and `webhook_attempts` (sql/0024).

An endpoint has a URL (checked by antaca_api/webhook_targets.py), the event types it wants (none
named: all) and a signing secret, sealed at rest with the card keys (AES-256-GCM, the endpoint id
as associated data) and shown to the partner only when made. Rotating it keeps the previous secret
signing beside the new one for `ROTATION_OVERLAP_HOURS`. Events reach the outbox by the trigger of
sql/0024, in the transaction that wrote them; antaca_api/webhook_delivery.py drains it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg

from antaca_api.domain_errors import NotFound, ValidationFailed, WebhookEndpointLimit
from antaca_api.partner_events import decode_cursor, encode_cursor
from antaca_api.webhook_targets import check_target
from antaca_auth import events
from antaca_auth.cardkeys import CardKeyError, CardKeys

SECRET_PREFIX = "whsec_"  # the Standard Webhooks form of a secret: whsec_<base64 of its bytes>
SECRET_BYTES = 32
ROTATION_OVERLAP_HOURS = 24
ENDPOINTS_PER_PARTNER_MAX = 16
EVENT_TYPES_PER_ENDPOINT_MAX = len(events.EVENT_TYPES)
REPLAY_EVENTS_MAX = 10_000  # events one replay request queues, oldest first
DELIVERY_PAGE_SIZE_MAX = 100
RETRY_WINDOW_DAYS = 3  # a delivery not sent this long after it was queued is FAILED
BACKOFF_CAP_SECONDS = 6 * 3600.0
LEASE_SECONDS = 60  # longer than an attempt can take (webhook_delivery.ATTEMPT_TIMEOUT_SECONDS)
ERROR_LENGTH_MAX = 500
DELIVERY_LOG_RETENTION_DAYS = 30  # settled deliveries and their attempts are pruned after this
PRUNE_BATCH_MAX = 1000  # deliveries deleted per transaction


# --- pure: secrets, signatures, backoff ------------------------------------------------------
def new_secret() -> bytes:
    return os.urandom(SECRET_BYTES)


def format_secret(secret: bytes) -> str:
    return SECRET_PREFIX + base64.b64encode(secret).decode()


def signature(secret: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """One Standard Webhooks signature: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(secret, signed, hashlib.sha256).digest()).decode()


def signature_header(secrets: Sequence[bytes], message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: one signature per secret in force, space separated."""
    return " ".join(signature(secret, message_id, timestamp, body) for secret in secrets)


def retry_delay_seconds(attempts: int, base_seconds: float, jitter: float) -> float:
    """The wait after the `attempts`-th failure: base * 2^(attempts-1), capped, times a jitter
    factor in [0.5, 1] (`jitter` in [0, 1]) so that endpoints failing together retry apart."""
    exponential = min(base_seconds * 2.0 ** min(attempts - 1, 64), BACKOFF_CAP_SECONDS)
    return exponential * (0.5 + jitter / 2)


def next_state(attempts: int, queued_at: datetime, now: datetime, base_seconds: float,
               jitter: float) -> tuple[str, datetime]:
    """(PENDING and when to try again) after a failed attempt, or (FAILED, now) once the next try
    would fall after the retry window."""
    at = now + timedelta(seconds=retry_delay_seconds(attempts, base_seconds, jitter))
    if at > queued_at + timedelta(days=RETRY_WINDOW_DAYS):
        return "FAILED", now
    return "PENDING", at


def check_event_types(event_types: Sequence[str]) -> list[str]:
    unknown = sorted(set(event_types) - events.EVENT_TYPES)
    if unknown:
        raise ValidationFailed(f"unknown event types: {', '.join(unknown)}")
    return sorted(set(event_types))


# --- endpoints -------------------------------------------------------------------------------
ENDPOINT_COLUMNS = ("id, partner_id, url, event_types, enabled, previous_secret_until, created_at, "
                    "updated_at")

COUNT_ENDPOINTS = "SELECT count(*) FROM webhook_endpoints WHERE partner_id = $1"
LOCK_PARTNER = "SELECT 1 FROM partners WHERE id = $1 FOR UPDATE"
INSERT_ENDPOINT = f"""
    INSERT INTO webhook_endpoints (id, partner_id, url, event_types, secret)
    VALUES ($1, $2, $3, $4, $5) RETURNING {ENDPOINT_COLUMNS}"""
ENDPOINTS = f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE partner_id = $1 ORDER BY id"
ENDPOINT = f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1 AND partner_id = $2"
SET_EVENT_TYPES = f"""
    UPDATE webhook_endpoints SET event_types = $3, updated_at = now()
    WHERE id = $1 AND partner_id = $2 RETURNING {ENDPOINT_COLUMNS}"""
SET_ENABLED = f"""
    UPDATE webhook_endpoints SET enabled = $3, updated_at = now()
    WHERE id = $1 AND partner_id = $2 RETURNING {ENDPOINT_COLUMNS}"""
ROTATE_SECRET = f"""
    UPDATE webhook_endpoints
    SET previous_secret = secret, previous_secret_until = $4, secret = $3, updated_at = now()
    WHERE id = $1 AND partner_id = $2 RETURNING {ENDPOINT_COLUMNS}"""


async def create_endpoint(pool: asyncpg.Pool, keys: CardKeys, partner_id: uuid.UUID, *,
                          url: str, event_types: Sequence[str],
                          allow_private: bool) -> tuple[asyncpg.Record, str]:
    """A new endpoint and its secret (shown this once). The target is checked (DNS included)
    before the transaction opens."""
    await check_target(url, allow_private=allow_private)
    wanted = check_event_types(event_types)
    endpoint_id, secret = uuid.uuid4(), new_secret()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(LOCK_PARTNER, partner_id)  # the count and the insert, one at a time
        if await conn.fetchval(COUNT_ENDPOINTS, partner_id) >= ENDPOINTS_PER_PARTNER_MAX:
            raise WebhookEndpointLimit()
        row = await conn.fetchrow(INSERT_ENDPOINT, endpoint_id, partner_id, url, wanted,
                                  keys.seal_webhook_secret(endpoint_id, secret))
    return row, format_secret(secret)


# A REMOTE program's advice endpoint (docs/partners.md, "Remote authorization"): one of the
# partner's endpoints, bound to the program, whose secret also signs the authorization calls.
ADVICE_EVENT_TYPES = (events.AUTHORIZATION_APPROVED, events.AUTHORIZATION_DECLINED,
                      events.AUTHORIZATION_STAND_IN, events.REVERSAL, events.CLEARING,
                      events.FORCE_POST, events.REFUND_APPROVED, events.HOLD_EXPIRED)
INSERT_ADVICE_ENDPOINT = f"""
    INSERT INTO webhook_endpoints (id, partner_id, url, event_types, secret, program_id)
    VALUES ($1, $2, $3, $4, $5, $6) RETURNING {ENDPOINT_COLUMNS}"""
REMOTE_TARGET = """
    SELECT p.remote_endpoint_id AS endpoint_id, p.partner_id, w.url, w.secret,
           CASE WHEN w.previous_secret_until > now() THEN w.previous_secret END AS previous_secret
    FROM card_programs p JOIN webhook_endpoints w ON w.id = p.remote_endpoint_id
    WHERE p.id = $1"""


async def create_advice_endpoint(conn: asyncpg.Connection, keys: CardKeys, partner_id: uuid.UUID,
                                 program_id: uuid.UUID, url: str) -> tuple[uuid.UUID, str]:
    """The advice endpoint of a new REMOTE program, in the caller's transaction (the program's row,
    which names it, follows in it: the foreign key is deferred); its id and its secret (shown this
    once). The URL is checked by the caller (`check_target`) before the transaction opens."""
    endpoint_id, secret = uuid.uuid4(), new_secret()
    await conn.fetchrow(INSERT_ADVICE_ENDPOINT, endpoint_id, partner_id, url,
                        list(ADVICE_EVENT_TYPES), keys.seal_webhook_secret(endpoint_id, secret),
                        program_id)
    return endpoint_id, format_secret(secret)


@dataclass(frozen=True)
class RemoteTarget:
    partner_id: uuid.UUID
    url: str
    secrets: list[bytes] = field(repr=False)  # those that sign its calls, the newest first


async def remote_target(pool: asyncpg.Pool, keys: CardKeys,
                        program_id: uuid.UUID) -> RemoteTarget | None:
    """A REMOTE program's partner, remoteUrl and signing secrets (None: not REMOTE)."""
    row = await pool.fetchrow(REMOTE_TARGET, program_id)
    if row is None:
        return None
    secrets = [keys.open_webhook_secret(row["endpoint_id"], row["secret"])]
    if row["previous_secret"] is not None:
        secrets.append(keys.open_webhook_secret(row["endpoint_id"], row["previous_secret"]))
    return RemoteTarget(row["partner_id"], row["url"], secrets)


async def endpoints_of(pool: asyncpg.Pool, partner_id: uuid.UUID) -> list[asyncpg.Record]:
    return await pool.fetch(ENDPOINTS, partner_id)


def _found(row: asyncpg.Record | None) -> asyncpg.Record:
    if row is None:
        raise NotFound("no such webhook endpoint")
    return row


async def endpoint(pool: asyncpg.Pool, partner_id: uuid.UUID,
                   endpoint_id: uuid.UUID) -> asyncpg.Record:
    return _found(await pool.fetchrow(ENDPOINT, endpoint_id, partner_id))


async def set_event_types(pool: asyncpg.Pool, partner_id: uuid.UUID, endpoint_id: uuid.UUID,
                          event_types: Sequence[str]) -> asyncpg.Record:
    wanted = check_event_types(event_types)
    return _found(await pool.fetchrow(SET_EVENT_TYPES, endpoint_id, partner_id, wanted))


async def set_enabled(pool: asyncpg.Pool, partner_id: uuid.UUID, endpoint_id: uuid.UUID,
                      enabled: bool) -> asyncpg.Record:
    """Disable (nothing more is queued for it, and what is queued is not sent) or enable again."""
    return _found(await pool.fetchrow(SET_ENABLED, endpoint_id, partner_id, enabled))


async def rotate_secret(pool: asyncpg.Pool, keys: CardKeys, partner_id: uuid.UUID,
                        endpoint_id: uuid.UUID, now: datetime) -> tuple[asyncpg.Record, str]:
    """A new secret; the current one keeps signing beside it for the overlap (a second rotation
    within the overlap ends the first one's previous secret at once)."""
    secret = new_secret()
    row = await pool.fetchrow(ROTATE_SECRET, endpoint_id, partner_id,
                              keys.seal_webhook_secret(endpoint_id, secret),
                              now + timedelta(hours=ROTATION_OVERLAP_HOURS))
    return _found(row), format_secret(secret)


# --- replay ----------------------------------------------------------------------------------
QUEUE_EVENTS = """
    INSERT INTO webhook_deliveries (id, endpoint_id, event_id, next_attempt_at, created_at, replay)
    SELECT uuid_v7(), $1, event_id, $3, $3, true FROM unnest($2::uuid[]) AS v (event_id)"""


@dataclass(frozen=True)
class Replay:
    queued: int
    has_more: bool  # more events since that time than one replay queues: replay from the last one's


async def replay(pool: asyncpg.Pool, partner_id: uuid.UUID, endpoint_id: uuid.UUID, *,
                 event_id: uuid.UUID | None, since: datetime | None, now: datetime) -> Replay:
    """Queue one event, or every event since a time, for the endpoint again (whatever types it
    wants: a replay names what it wants)."""
    if (event_id is None) == (since is None):
        raise ValidationFailed("name either eventId or since")
    async with pool.acquire() as conn, conn.transaction():
        _found(await conn.fetchrow(ENDPOINT, endpoint_id, partner_id))
        if event_id is not None:
            one = await events.one(conn, partner_id, event_id)
            if one is None:
                raise NotFound("no such event")
            chosen, has_more = [one], False
        else:
            found = await events.since(conn, partner_id, since, REPLAY_EVENTS_MAX + 1)
            chosen, has_more = found[:REPLAY_EVENTS_MAX], len(found) > REPLAY_EVENTS_MAX
        await conn.execute(QUEUE_EVENTS, endpoint_id, [e.id for e in chosen], now)
    return Replay(len(chosen), has_more)


# --- the delivery log, as the partner reads it -----------------------------------------------
DELIVERIES_PAGE = """
    SELECT d.id, d.event_id, e.type AS event_type, d.state, d.attempts, d.next_attempt_at,
           d.last_error, d.sent_at, d.replay, d.created_at
    FROM webhook_deliveries d JOIN events e ON e.id = d.event_id
    WHERE d.endpoint_id = $1 AND ($2::uuid IS NULL OR d.id < $2)
    ORDER BY d.id DESC LIMIT $3"""
ATTEMPTS = """
    SELECT delivery_id, attempt, ok, status_code, error, created_at FROM webhook_attempts
    WHERE delivery_id = ANY($1::uuid[]) ORDER BY delivery_id, attempt"""


@dataclass(frozen=True)
class DeliveryPage:
    deliveries: list[asyncpg.Record]
    attempts: dict[uuid.UUID, list[asyncpg.Record]]
    next_cursor: str | None
    has_more: bool


async def deliveries(pool: asyncpg.Pool, partner_id: uuid.UUID, endpoint_id: uuid.UUID, *,
                     cursor: str | None, limit: int) -> DeliveryPage:
    """The endpoint's deliveries, newest first, each with its attempts."""
    after = None if cursor is None else decode_cursor(cursor, True)
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        _found(await conn.fetchrow(ENDPOINT, endpoint_id, partner_id))
        rows = await conn.fetch(DELIVERIES_PAGE, endpoint_id, after,
                                min(limit, DELIVERY_PAGE_SIZE_MAX) + 1)
        page, has_more = rows[:limit], len(rows) > limit
        attempts: dict[uuid.UUID, list[asyncpg.Record]] = {row["id"]: [] for row in page}
        for attempt in await conn.fetch(ATTEMPTS, list(attempts)):
            attempts[attempt["delivery_id"]].append(attempt)
    next_cursor = encode_cursor(page[-1]["id"], True) if has_more else None
    return DeliveryPage(page, attempts, next_cursor, has_more)


# --- pruning the delivery log ---------------------------------------------------------------
SETTLED_BEFORE = """
    SELECT id FROM webhook_deliveries WHERE id < $1 AND state <> 'PENDING' ORDER BY id LIMIT $2
    FOR UPDATE SKIP LOCKED"""
DELETE_ATTEMPTS = "DELETE FROM webhook_attempts WHERE delivery_id = ANY($1::uuid[])"
DELETE_DELIVERIES = "DELETE FROM webhook_deliveries WHERE id = ANY($1::uuid[])"


async def prune(pool: asyncpg.Pool, now: datetime) -> int:
    """Delete SENT and FAILED deliveries queued more than DELIVERY_LOG_RETENTION_DAYS ago (their
    ids are time-ordered), with their attempts, a bounded batch per transaction; how many."""
    bound = events.first_id_at(now - timedelta(days=DELIVERY_LOG_RETENTION_DAYS))
    pruned = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            ids = [r["id"] for r in await conn.fetch(SETTLED_BEFORE, bound, PRUNE_BATCH_MAX)]
            await conn.execute(DELETE_ATTEMPTS, ids)
            await conn.execute(DELETE_DELIVERIES, ids)
        pruned += len(ids)
        if len(ids) < PRUNE_BATCH_MAX:
            return pruned


# --- the outbox, as the delivery worker drains it --------------------------------------------
CLAIM = """
    WITH claimed AS (
        UPDATE webhook_deliveries d SET next_attempt_at = $2
        WHERE d.id IN (SELECT id FROM webhook_deliveries
                       WHERE state = 'PENDING' AND next_attempt_at <= $1
                       ORDER BY next_attempt_at, id LIMIT $3
                       FOR UPDATE SKIP LOCKED)
        RETURNING d.id, d.endpoint_id, d.event_id, d.created_at
    )
    SELECT c.id, c.endpoint_id, c.created_at AS queued_at, w.url, w.enabled, w.secret,
           CASE WHEN w.previous_secret_until > $1 THEN w.previous_secret END AS previous_secret,
           e.id AS event_id, e.partner_id, e.type, e.object_id, e.created_at AS occurred_at,
           e.payload::text AS payload
    FROM claimed c
    JOIN webhook_endpoints w ON w.id = c.endpoint_id
    JOIN events e ON e.id = c.event_id
    ORDER BY c.id"""

LOCK_DELIVERY = """
    SELECT state, attempts, created_at FROM webhook_deliveries WHERE id = $1 FOR UPDATE"""
INSERT_ATTEMPT = """
    INSERT INTO webhook_attempts (delivery_id, attempt, ok, status_code, error, created_at)
    VALUES ($1, $2, $3, $4, $5, $6)"""
MARK_SENT = """
    UPDATE webhook_deliveries SET state = 'SENT', attempts = $2, sent_at = coalesce(sent_at, $3),
           last_error = NULL
    WHERE id = $1"""
COUNT_ATTEMPT = "UPDATE webhook_deliveries SET attempts = $2 WHERE id = $1"
MARK_RETRY = """
    UPDATE webhook_deliveries SET attempts = $2, last_error = $3, state = $4, next_attempt_at = $5
    WHERE id = $1"""


@dataclass(frozen=True, kw_only=True)
class Due:
    """A claimed delivery with what sending it needs (its secrets opened, never in reprs)."""

    delivery_id: uuid.UUID
    queued_at: datetime
    url: str
    enabled: bool
    secrets: list[bytes] = field(repr=False)
    event_id: uuid.UUID
    partner_id: uuid.UUID
    type: str
    object_id: uuid.UUID
    occurred_at: datetime
    payload: str  # the event's payload as JSON text


async def claim_due(pool: asyncpg.Pool, keys: CardKeys, *, limit: int, now: datetime) -> list[Due]:
    """Claim up to `limit` due deliveries for a lease (committed before anything is sent)."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(CLAIM, now, now + timedelta(seconds=LEASE_SECONDS), limit)
    claimed = []
    for r in rows:
        try:
            secrets = [keys.open_webhook_secret(r["endpoint_id"], r["secret"])]
            if r["previous_secret"] is not None:
                secrets.append(keys.open_webhook_secret(r["endpoint_id"], r["previous_secret"]))
        except CardKeyError:  # other card keys than the sealing ones: never sent unsigned
            secrets = []
        claimed.append(Due(
            delivery_id=r["id"], queued_at=r["queued_at"], url=r["url"], enabled=r["enabled"],
            secrets=secrets, event_id=r["event_id"], partner_id=r["partner_id"], type=r["type"],
            object_id=r["object_id"], occurred_at=r["occurred_at"], payload=r["payload"]))
    return claimed


async def record_attempt(pool: asyncpg.Pool, delivery_id: uuid.UUID, *, ok: bool,
                         status_code: int | None, error: str | None, now: datetime,
                         backoff_base_seconds: float, give_up: bool = False) -> str:
    """Log one attempt and move the delivery on: SENT, PENDING again after a backoff, or FAILED
    (past the retry window, or `give_up`); its new state."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(LOCK_DELIVERY, delivery_id)
        # Numbered under the row lock: an attempt that outlived its lease still gets its own number.
        attempt = row["attempts"] + 1
        error = None if error is None else error[:ERROR_LENGTH_MAX]
        await conn.execute(INSERT_ATTEMPT, delivery_id, attempt, ok, status_code, error, now)
        if ok:
            await conn.execute(MARK_SENT, delivery_id, attempt, now)
            return "SENT"
        if row["state"] != "PENDING":  # settled by an overlapping attempt: only count this one
            await conn.execute(COUNT_ATTEMPT, delivery_id, attempt)
            return row["state"]
        state, at = next_state(attempt, row["created_at"], now, backoff_base_seconds,
                               random.random())
        if give_up:
            state, at = "FAILED", now
        await conn.execute(MARK_RETRY, delivery_id, attempt, error, state, at)
        return state
