"""Card authorizations with their reversals and clearings, as the partner sees them: one
customer's, or every card's of the partner (its corporations' cards included), a page at a time."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from antaca_api import pages
from antaca_api.domain_errors import NotFound

CUSTOMER_OF_PARTNER = "SELECT 1 FROM customers WHERE id = $1 AND partner_id = $2"
# Each authorization's events ride along as one JSON array, so a page is one statement.
TRANSACTION_COLUMNS = """
    a.seq, a.id, a.card_id, a.balance_id, a.type, a.amount, a.currency, a.decision,
    a.response_code, a.reason, a.approved_amount, a.merchant_name, a.created_at, a.billing_amount,
    a.transaction_fee, a.conversion_fee,
    coalesce((SELECT json_agg(json_build_object('kind', e.kind, 'amount', e.amount,
                                                'createdAt', e.created_at) ORDER BY e.seq)
              FROM authorization_events e WHERE e.authorization_id = a.id), '[]') AS events"""
TRANSACTIONS_OF_CUSTOMER = f"""
    SELECT {TRANSACTION_COLUMNS}
    FROM balances b JOIN cards c ON c.balance_id = b.id
    JOIN authorizations a ON a.card_id = c.id
    WHERE b.customer_id = $1 AND a.seq > $2 ORDER BY a.seq LIMIT $3"""
TRANSACTIONS_OF_PARTNER = f"""
    SELECT {TRANSACTION_COLUMNS}
    FROM cards c JOIN authorizations a ON a.card_id = c.id
    WHERE c.partner_id = $1 AND a.seq > $2 ORDER BY a.seq LIMIT $3"""
TRANSACTION_PAGES = pages.Keyset("card-transactions", tuple[int])  # (authorization seq,)


async def for_customer(conn: asyncpg.Connection, partner_id: uuid.UUID, customer_id: uuid.UUID,
                       page: pages.PageRequest) -> list[asyncpg.Record]:
    """A page of the partner's customer's authorizations, oldest first; `events` is JSON text."""
    if await conn.fetchval(CUSTOMER_OF_PARTNER, customer_id, partner_id) is None:
        raise NotFound("no such customer")
    after = page.after[0] if page.after else 0
    return await conn.fetch(TRANSACTIONS_OF_CUSTOMER, customer_id, after, page.fetch)


async def for_partner(conn: asyncpg.Connection, partner_id: uuid.UUID,
                      page: pages.PageRequest) -> list[asyncpg.Record]:
    """A page of the authorizations of every card of the partner, corporate cards included."""
    after = page.after[0] if page.after else 0
    return await conn.fetch(TRANSACTIONS_OF_PARTNER, partner_id, after, page.fetch)


# --- the administration panel's dashboard ----------------------------------------------------

# Authorizations since a moment, by outcome and reason; a partner's staff (scope) see only their
# partner's cards' (an authorization for an unknown PAN belongs to no partner).
AUTHORIZATION_OUTCOMES = """
    SELECT a.decision, a.stand_in, a.reason, count(*) AS count
    FROM authorizations a LEFT JOIN cards c ON c.id = a.card_id
    WHERE a.created_at >= $1 AND ($2::uuid IS NULL OR c.partner_id = $2)
    GROUP BY a.decision, a.stand_in, a.reason ORDER BY count(*) DESC, a.reason"""
AUTHORIZATIONS_PER_HOUR = """
    SELECT date_trunc('hour', a.created_at) AS hour, count(*) AS count,
           count(*) FILTER (WHERE a.decision = 'APPROVED') AS approved
    FROM authorizations a LEFT JOIN cards c ON c.id = a.card_id
    WHERE a.created_at >= $1 AND ($2::uuid IS NULL OR c.partner_id = $2)
    GROUP BY 1 ORDER BY 1"""


async def outcomes_since(conn: asyncpg.Connection, since, partner_scope: uuid.UUID | None
                         ) -> list[asyncpg.Record]:
    """(decision, stand_in, reason, count) of the authorizations since `since`, most first."""
    return await conn.fetch(AUTHORIZATION_OUTCOMES, since, partner_scope)


async def hourly_since(conn: asyncpg.Connection, since, partner_scope: uuid.UUID | None
                       ) -> list[asyncpg.Record]:
    """(hour, count, approved) of the authorizations since `since`, hours with none left out."""
    return await conn.fetch(AUTHORIZATIONS_PER_HOUR, since, partner_scope)


# --- the administration panel's authorizations list ------------------------------------------

AUTHORIZATION_COLUMNS = TRANSACTION_COLUMNS + """,
    a.action_code, a.stand_in, a.network_id, a.message_id, a.mcc, a.merchant_country,
    a.deposit_hold_id, a.user_hold_id, a.fee_hold_id, c.partner_id, c.bin, c.last4"""
# Newest first; every filter optional; a partner's staff (scope, $1) see their cards' only.
AUTHORIZATIONS_FILTERED = f"""
    SELECT {AUTHORIZATION_COLUMNS}
    FROM authorizations a LEFT JOIN cards c ON c.id = a.card_id
    WHERE ($1::uuid IS NULL OR c.partner_id = $1) AND ($2::uuid IS NULL OR a.card_id = $2)
      AND ($3::uuid IS NULL OR c.partner_id = $3) AND ($4::text IS NULL OR a.decision = $4)
      AND ($5::text IS NULL OR a.response_code = $5 OR a.action_code = $5)
      AND ($6::timestamptz IS NULL OR a.created_at >= $6)
      AND ($7::timestamptz IS NULL OR a.created_at < $7)
      AND a.seq < $8
    ORDER BY a.seq DESC LIMIT $9"""
AUTHORIZATION_IN_SCOPE = f"""
    SELECT {AUTHORIZATION_COLUMNS}
    FROM authorizations a LEFT JOIN cards c ON c.id = a.card_id
    WHERE a.id = $1 AND ($2::uuid IS NULL OR c.partner_id = $2)"""


@dataclass(frozen=True)
class AuthorizationFilter:
    card_id: uuid.UUID | None = None
    partner_id: uuid.UUID | None = None
    decision: str | None = None  # APPROVED or DECLINED
    code: str | None = None  # a DE39 response code or a failure action code
    since: datetime | None = None
    until: datetime | None = None


async def authorizations(conn: asyncpg.Connection, partner_scope: uuid.UUID | None,
                         where: AuthorizationFilter, *, before: int,
                         limit: int) -> list[asyncpg.Record]:
    """Authorizations matching the filter with a seq below `before`, newest first."""
    return await conn.fetch(AUTHORIZATIONS_FILTERED, partner_scope, where.card_id,
                            where.partner_id, where.decision, where.code, where.since,
                            where.until, before, limit)


async def authorization(conn: asyncpg.Connection, partner_scope: uuid.UUID | None,
                        authorization_id: uuid.UUID) -> asyncpg.Record:
    """One authorization with its reversals and clearings (`events`, JSON); another partner's is
    NOT_FOUND, as an unknown one."""
    row = await conn.fetchrow(AUTHORIZATION_IN_SCOPE, authorization_id, partner_scope)
    if row is None:
        raise NotFound("no such authorization")
    return row
