"""Low-balance thresholds on partner deposit and credit balances: the crossing check.

Called inside the transaction that moved the money, after the ledger wrote it (so the account
rows are already locked by this transaction): a balance whose available amount fell under its
threshold gets its latch set and one alert written to the outbox (`partner_alerts` with one
`alert_deliveries` row per channel the partner has). Nothing is sent here; a worker drains the
outbox, so an authorization never waits on e-mail or HTTP.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import asyncpg

from antaca_auth import events

# partner_accounts.kind as partners see it.
PARTNER_KINDS = {"partner_deposit": "DEPOSIT", "partner_credit": "CREDIT"}

# One statement: latch, outbox row and deliveries, or nothing at all when no latch flips (the
# common case on the authorization path costs one indexed lookup per touched partner account).
CROSSED_BELOW = """
    WITH crossed AS (
        UPDATE partner_accounts pa SET below_threshold = true
        FROM accounts a
        WHERE pa.account_id = ANY($1::uuid[]) AND a.id = pa.account_id
          AND pa.low_balance_threshold IS NOT NULL AND NOT pa.below_threshold
          AND credit_normal_available(a.credits_posted, a.debits_posted, a.debits_pending)
              < pa.low_balance_threshold
        RETURNING pa.partner_id, pa.account_id, pa.kind, pa.currency, pa.low_balance_threshold AS threshold,
                  credit_normal_available(a.credits_posted, a.debits_posted, a.debits_pending) AS available
    ), alerts AS (
        INSERT INTO partner_alerts (partner_id, account_id, kind, currency, threshold, available)
        SELECT partner_id, account_id, kind, currency, threshold, available FROM crossed
        RETURNING id, partner_id, account_id
    ), deliveries AS (
        -- E-mail to the balance's own alert addresses, else the partner's contact address.
        INSERT INTO alert_deliveries (alert_id, channel, target)
        SELECT al.id, ch.channel, ch.target
        FROM alerts al
        JOIN partners p ON p.id = al.partner_id
        JOIN partner_accounts pa ON pa.account_id = al.account_id
        CROSS JOIN LATERAL (
            SELECT 'EMAIL', e FROM unnest(coalesce(pa.alert_emails, ARRAY[p.contact_email])) AS e
            UNION ALL SELECT 'WEBHOOK', p.webhook_url) AS ch (channel, target)
        WHERE ch.target IS NOT NULL
    )
    SELECT partner_id, account_id, kind, currency, threshold, available FROM crossed"""

# A reload (or a lower threshold) that leaves the balance at or above its threshold re-arms it.
REARM = """
    UPDATE partner_accounts pa SET below_threshold = false
    FROM accounts a
    WHERE pa.account_id = ANY($1::uuid[]) AND a.id = pa.account_id AND pa.below_threshold
      AND (pa.low_balance_threshold IS NULL
           OR credit_normal_available(a.credits_posted, a.debits_posted, a.debits_pending)
              >= pa.low_balance_threshold)"""


async def check_crossings(conn: asyncpg.Connection, account_ids: Iterable[uuid.UUID]) -> int:
    """Latch and queue an alert for each partner balance that went under its threshold; how many."""
    ids = list(account_ids)
    if not ids:
        return 0
    crossed = await conn.fetch(CROSSED_BELOW, ids)
    if crossed:  # the partner's events too (antaca_auth/events.py), in this transaction
        await events.record_partner_balances_low(conn, [
            {**dict(row), "kind": PARTNER_KINDS[row["kind"]]} for row in crossed])
    return len(crossed)


async def rearm(conn: asyncpg.Connection, account_ids: Iterable[uuid.UUID]) -> None:
    """Clear the latch of balances back at or above their threshold (after a reload)."""
    ids = list(account_ids)
    if ids:
        await conn.execute(REARM, ids)
