"""Card authorizations with their reversals and clearings, as the partner sees them: one
customer's, or every card's of the partner (its corporations' cards included), a page at a time."""

from __future__ import annotations

import uuid

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
    after = page.after_key(0)
    return await conn.fetch(TRANSACTIONS_OF_CUSTOMER, customer_id, after, page.fetch)


async def for_partner(conn: asyncpg.Connection, partner_id: uuid.UUID,
                      page: pages.PageRequest) -> list[asyncpg.Record]:
    """A page of the authorizations of every card of the partner, corporate cards included."""
    after = page.after_key(0)
    return await conn.fetch(TRANSACTIONS_OF_PARTNER, partner_id, after, page.fetch)
