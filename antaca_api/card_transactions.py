"""A customer's card authorizations with their reversals and clearings, as the partner sees them."""

from __future__ import annotations

import uuid

import asyncpg

from antaca_api.domain_errors import NotFound

CUSTOMER_OF_PARTNER = "SELECT 1 FROM customers WHERE id = $1 AND partner_id = $2"
# Each authorization's events ride along as one JSON array, so the list is one statement.
TRANSACTIONS_OF_CUSTOMER = """
    SELECT a.id, a.balance_id, a.type, a.amount, a.currency, a.decision, a.response_code, a.reason,
           a.approved_amount, a.merchant_name, a.created_at, a.billing_amount, a.transaction_fee,
           a.conversion_fee,
           coalesce((SELECT json_agg(json_build_object('kind', e.kind, 'amount', e.amount,
                                                       'createdAt', e.created_at) ORDER BY e.seq)
                     FROM authorization_events e WHERE e.authorization_id = a.id), '[]') AS events
    FROM balances b JOIN cards c ON c.balance_id = b.id
    JOIN authorizations a ON a.card_id = c.id
    WHERE b.customer_id = $1 ORDER BY a.seq"""


async def for_customer(conn: asyncpg.Connection, partner_id: uuid.UUID,
                       customer_id: uuid.UUID) -> list[asyncpg.Record]:
    """The partner's customer's authorizations, oldest first; `events` is JSON text."""
    if await conn.fetchval(CUSTOMER_OF_PARTNER, customer_id, partner_id) is None:
        raise NotFound("no such customer")
    return await conn.fetch(TRANSACTIONS_OF_CUSTOMER, customer_id)
