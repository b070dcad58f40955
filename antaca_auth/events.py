"""Partner events: what happened to a partner's objects, written in the transaction of the change.

The one module that writes and reads `events` (sql/0024). Every event has a time-ordered id, a
type, a time, its partner, the id of the object it is about and a payload that never holds a PAN,
a CVV or a PIN. Writing an event also queues it for the partner's webhook endpoints (the
statement trigger of sql/0024 fills the `webhook_deliveries` outbox in the same transaction).

The engine writes the events of a whole batch with one statement; the event of an authorization's
decision has the authorization's own id, so that a decline the ledger makes after the rows were
written corrects its event by primary key (`correct_declined`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from antaca_auth.ids import new_id

# --- types ---------------------------------------------------------------------------------------
AUTHORIZATION_APPROVED = "authorization.approved"
AUTHORIZATION_DECLINED = "authorization.declined"
AUTHORIZATION_STAND_IN = "authorization.stand_in"
REFUND_APPROVED = "refund.approved"
REVERSAL = "authorization.reversal"
CLEARING = "authorization.clearing"
FORCE_POST = "authorization.force_post"
HOLD_EXPIRED = "hold.expired"
KYC_RESULT = "customer.kyc_result"
KYB_RESULT = "corporation.kyb_result"
BALANCE_OPENED = "balance.opened"
BALANCE_BLOCKED = "balance.blocked"
BALANCE_UNBLOCKED = "balance.unblocked"
BALANCE_CLOSED = "balance.closed"
PARTNER_BALANCE_LOW = "partner_balance.low"
FEE_CHARGED = "fee.charged"
CARD_ISSUED = "card.issued"

# card_events.event -> event type; an event not named here is "card.<its name, lower case>".
CARD_EVENT_TYPES = {"CREATED": CARD_ISSUED}
CARD_EVENTS = ("CREATED", "GENERATED", "ORDER_FAILED", "GENERATION_FAILED", "ACTIVATED", "LOCKED",
               "UNLOCKED", "REMOVED", "CVV_RESET", "PIN_SET", "LINKED")

FOLLOW_UP_TYPES = {"REVERSAL": REVERSAL, "CLEARING": CLEARING, "FORCE_POST": FORCE_POST}

EVENT_TYPES = frozenset({
    AUTHORIZATION_APPROVED, AUTHORIZATION_DECLINED, AUTHORIZATION_STAND_IN, REFUND_APPROVED,
    REVERSAL, CLEARING, FORCE_POST, HOLD_EXPIRED, KYC_RESULT, KYB_RESULT, BALANCE_OPENED,
    BALANCE_BLOCKED, BALANCE_UNBLOCKED, BALANCE_CLOSED, PARTNER_BALANCE_LOW, FEE_CHARGED,
    *(CARD_EVENT_TYPES.get(name, f"card.{name.lower()}") for name in CARD_EVENTS),
})

# Payload keys that would name card data: refused whoever adds a field.
FORBIDDEN_PAYLOAD_KEYS = frozenset({"pan", "cvv", "cvc", "cvc2", "pin", "pinblock", "expiry"})
PAGE_SIZE_MAX = 200
EVENT_RETENTION_DAYS = 400  # older events are pruned (a year and a month of reconciliation)
PRUNE_BATCH_MAX = 1000  # events deleted per statement


def card_event_type(event: str) -> str:
    """The event type of a card event (`CREATED` -> `card.issued`, `LOCKED` -> `card.locked`)."""
    return CARD_EVENT_TYPES.get(event, f"card.{event.lower()}")


def check_payload(payload: Mapping[str, Any]) -> None:
    """Refuse a payload with a key that names card data (a programming error, never a caller's)."""
    for key in payload:
        if key.lower() in FORBIDDEN_PAYLOAD_KEYS:
            raise ValueError(f"an event payload may not carry {key!r}")


def first_id_at(at: datetime) -> uuid.UUID:
    """The smallest time-ordered id of `at`'s millisecond: ids below it were made before."""
    return uuid.UUID(int=int(at.timestamp() * 1000) << 80)


def _json(payload: Mapping[str, Any]) -> str:
    check_payload(payload)
    return msgspec.json.encode(payload).decode()


# --- writing -------------------------------------------------------------------------------------
INSERT = """
    INSERT INTO events (id, partner_id, type, object_id, payload)
    VALUES ($1, $2, $3, $4, $5::jsonb)"""

# A card's event: its partner read from the card.
INSERT_FOR_CARD = """
    INSERT INTO events (id, partner_id, type, object_id, payload)
    SELECT $1, c.partner_id, $2, $3, $5::jsonb || jsonb_build_object('cardId', c.id)
    FROM cards c WHERE c.id = $4"""

# The cards the authorization engine locked in a batch.
INSERT_ENGINE_LOCKS = """
    INSERT INTO events (id, partner_id, type, object_id, payload)
    SELECT uuid_v7(), c.partner_id, 'card.locked', c.id,
           jsonb_build_object('cardId', c.id, 'event', 'LOCKED', 'actor', 'system',
                              'fromState', 'ACTIVE', 'toState', 'LOCKED', 'reason', v.reason)
    FROM unnest($1::uuid[], $2::smallint[]) AS v (card_id, reason)
    JOIN cards c ON c.id = v.card_id"""

_AUTHORIZATION_TYPE = f"""
    CASE WHEN a.stand_in THEN '{AUTHORIZATION_STAND_IN}'
         WHEN a.decision = 'DECLINED' THEN '{AUTHORIZATION_DECLINED}'
         WHEN a.type = 'REFUND' THEN '{REFUND_APPROVED}'
         ELSE '{AUTHORIZATION_APPROVED}' END"""

_AUTHORIZATION_PAYLOAD = """
    jsonb_build_object('authorizationId', a.id, 'cardId', a.card_id, 'balanceId', a.balance_id,
                       'type', a.type, 'amount', a.amount, 'currency', a.currency,
                       'decision', a.decision, 'responseCode', a.response_code,
                       'actionCode', a.action_code, 'reason', a.reason,
                       'approvedAmount', a.approved_amount, 'standIn', a.stand_in, 'mcc', a.mcc,
                       'merchantName', a.merchant_name, 'merchantCountry', a.merchant_country,
                       'controlId', a.control_id, 'controlVersion', a.control_version,
                       'remoteOutcome', a.remote_outcome)"""

# The decisions of a batch (or of recorded stand-ins), one event each, with the authorization's id;
# an authorization of no known card belongs to no partner and has no event.
INSERT_AUTHORIZATIONS = f"""
    INSERT INTO events (id, partner_id, type, object_id, created_at, payload)
    SELECT a.id, c.partner_id, {_AUTHORIZATION_TYPE}, a.id, a.created_at, {_AUTHORIZATION_PAYLOAD}
    FROM authorizations a JOIN cards c ON c.id = a.card_id
    WHERE a.id = ANY($1::uuid[])
    ON CONFLICT (id) DO NOTHING"""

# A later decision on an authorization whose first event is already committed (a network advice
# approving a message Antaca had declined): a new event, with a new id, about the same object.
INSERT_AUTHORIZATION_CHANGES = f"""
    INSERT INTO events (id, partner_id, type, object_id, payload)
    SELECT uuid_v7(), c.partner_id, {_AUTHORIZATION_TYPE}, a.id, {_AUTHORIZATION_PAYLOAD}
    FROM authorizations a JOIN cards c ON c.id = a.card_id
    WHERE a.id = ANY($1::uuid[])"""

# Rows the ledger declined after the batch wrote them as approved: their events say so.
CORRECT_DECLINED = f"""
    UPDATE events e SET type = {_AUTHORIZATION_TYPE}, payload = {_AUTHORIZATION_PAYLOAD}
    FROM authorizations a
    WHERE e.id = ANY($1::uuid[]) AND a.id = e.id"""

# Expired holds on users' balances: the partner of the balance the hold was on.
INSERT_EXPIRED_HOLDS = f"""
    INSERT INTO events (id, partner_id, type, object_id, payload)
    SELECT uuid_v7(), b.partner_id, '{HOLD_EXPIRED}', t.id,
           jsonb_build_object('holdId', t.id, 'balanceId', b.id, 'amount', t.amount,
                              'currency', t.currency)
    FROM transfers t JOIN balances b ON b.account_id = t.debit_account_id
    WHERE t.id = ANY($1::uuid[])"""

INSERT_FEES_CHARGED = f"""
    INSERT INTO events (id, partner_id, type, object_id, payload)
    SELECT uuid_v7(), p.partner_id, '{FEE_CHARGED}', f.id,
           jsonb_build_object('chargeId', f.id, 'feeType', f.fee_type, 'amount', f.amount,
                              'currency', f.currency, 'balanceId', f.balance_id,
                              'cardId', f.card_id, 'state', f.state)
    FROM fee_charges f JOIN card_programs p ON p.id = f.program_id
    WHERE f.id = ANY($1::uuid[]) AND f.state = 'PAID'"""

INSERT_PARTNER_BALANCES_LOW = f"""
    INSERT INTO events (id, partner_id, type, object_id, payload)
    SELECT uuid_v7(), v.partner_id, '{PARTNER_BALANCE_LOW}', v.account_id,
           jsonb_build_object('balanceId', v.account_id, 'kind', v.kind, 'currency', v.currency,
                              'threshold', v.threshold, 'available', v.available)
    FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[], $6::bigint[])
         AS v (partner_id, account_id, kind, currency, threshold, available)"""


async def record(conn: asyncpg.Connection, partner_id: uuid.UUID, event_type: str,
                 object_id: uuid.UUID, payload: Mapping[str, Any]) -> uuid.UUID:
    """One event in the caller's transaction; its id."""
    event_id = new_id()
    await conn.execute(INSERT, event_id, partner_id, event_type, object_id, _json(payload))
    return event_id


async def record_for_card(conn: asyncpg.Connection, card_id: uuid.UUID, event_type: str,
                          object_id: uuid.UUID, payload: Mapping[str, Any]) -> None:
    """An event of the card's partner (the payload gets the card's id)."""
    await conn.execute(INSERT_FOR_CARD, new_id(), event_type, object_id, card_id, _json(payload))


async def record_engine_locks(conn: asyncpg.Connection, card_ids: Sequence[uuid.UUID],
                              reasons: Sequence[int]) -> None:
    await conn.execute(INSERT_ENGINE_LOCKS, card_ids, reasons)


async def record_authorizations(conn: asyncpg.Connection,
                                authorization_ids: Sequence[uuid.UUID]) -> None:
    """The events of authorizations just written (one statement, whatever their number)."""
    if authorization_ids:
        await conn.execute(INSERT_AUTHORIZATIONS, authorization_ids)


async def record_authorization_changes(conn: asyncpg.Connection,
                                       authorization_ids: Sequence[uuid.UUID]) -> None:
    """New events for authorizations decided again after their first event committed."""
    if authorization_ids:
        await conn.execute(INSERT_AUTHORIZATION_CHANGES, authorization_ids)


async def correct_declined(conn: asyncpg.Connection,
                           authorization_ids: Sequence[uuid.UUID]) -> None:
    """After the ledger declined rows written as approved: their events follow the rows."""
    if authorization_ids:
        await conn.execute(CORRECT_DECLINED, authorization_ids)


async def record_expired_holds(conn: asyncpg.Connection, hold_ids: Sequence[uuid.UUID]) -> None:
    if hold_ids:
        await conn.execute(INSERT_EXPIRED_HOLDS, hold_ids)


async def record_fees_charged(conn: asyncpg.Connection, charge_ids: Sequence[uuid.UUID]) -> None:
    """A `fee.charged` event for each of the charges that is paid."""
    if charge_ids:
        await conn.execute(INSERT_FEES_CHARGED, charge_ids)


async def record_partner_balances_low(conn: asyncpg.Connection,
                                      crossed: Sequence[Mapping[str, Any]]) -> None:
    """Partner balances that fell under their threshold (rows of thresholds.CROSSED_BELOW)."""
    if crossed:
        await conn.execute(INSERT_PARTNER_BALANCES_LOW, *(
            [row[column] for row in crossed]
            for column in ("partner_id", "account_id", "kind", "currency", "threshold",
                           "available")))


# Events past their retention that no webhook delivery still names (a replay may, for a while).
PRUNE = """
    DELETE FROM events WHERE id IN (
        SELECT e.id FROM events e
        WHERE e.id < $1 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id)
        ORDER BY e.id LIMIT $2)"""


async def prune(pool: asyncpg.Pool, now: datetime) -> int:
    """Delete events older than EVENT_RETENTION_DAYS, a bounded batch per statement; how many."""
    bound, pruned = first_id_at(now - timedelta(days=EVENT_RETENTION_DAYS)), 0
    while True:
        deleted = int((await pool.execute(PRUNE, bound, PRUNE_BATCH_MAX)).split()[-1])
        pruned += deleted
        if deleted < PRUNE_BATCH_MAX:
            return pruned


# --- reading -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Event:
    id: uuid.UUID
    partner_id: uuid.UUID
    type: str
    object_id: uuid.UUID
    created_at: datetime
    payload: dict


_COLUMNS = "id, partner_id, type, object_id, created_at, payload::text AS payload"

# A page of a partner's events after (or before) a cursor id, by type and object when given.
PAGE_OLDEST_FIRST = f"""
    SELECT {_COLUMNS} FROM events
    WHERE partner_id = $1 AND ($2::uuid IS NULL OR id > $2)
      AND ($3::text IS NULL OR type = $3) AND ($4::uuid IS NULL OR object_id = $4)
    ORDER BY id LIMIT $5"""
PAGE_NEWEST_FIRST = f"""
    SELECT {_COLUMNS} FROM events
    WHERE partner_id = $1 AND ($2::uuid IS NULL OR id < $2)
      AND ($3::text IS NULL OR type = $3) AND ($4::uuid IS NULL OR object_id = $4)
    ORDER BY id DESC LIMIT $5"""
SINCE = f"""
    SELECT {_COLUMNS} FROM events WHERE partner_id = $1 AND created_at >= $2 ORDER BY id LIMIT $3"""
ONE = f"SELECT {_COLUMNS} FROM events WHERE id = $1 AND partner_id = $2"


def _event(row: asyncpg.Record) -> Event:
    return Event(row["id"], row["partner_id"], row["type"], row["object_id"], row["created_at"],
                 msgspec.json.decode(row["payload"]))


async def page(conn: asyncpg.Connection | asyncpg.Pool, partner_id: uuid.UUID, *,
               after: uuid.UUID | None, newest_first: bool, event_type: str | None,
               object_id: uuid.UUID | None, limit: int) -> list[Event]:
    """Up to `limit` of the partner's events past the cursor `after`, in id (time) order."""
    query = PAGE_NEWEST_FIRST if newest_first else PAGE_OLDEST_FIRST
    rows = await conn.fetch(query, partner_id, after, event_type, object_id,
                            min(limit, PAGE_SIZE_MAX))
    return [_event(r) for r in rows]


async def one(conn: asyncpg.Connection | asyncpg.Pool, partner_id: uuid.UUID,
              event_id: uuid.UUID) -> Event | None:
    """The partner's event by id (None: unknown, or another partner's)."""
    row = await conn.fetchrow(ONE, event_id, partner_id)
    return None if row is None else _event(row)


async def since(conn: asyncpg.Connection | asyncpg.Pool, partner_id: uuid.UUID, at: datetime,
                limit: int) -> list[Event]:
    """The partner's events at or after `at`, oldest first, at most `limit`."""
    return [_event(r) for r in await conn.fetch(SINCE, partner_id, at, limit)]
