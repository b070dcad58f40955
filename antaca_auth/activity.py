"""What a card did over a period: the facts fee waiver rules are evaluated against."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime, time

import asyncpg

from antaca_auth.fees import Metric

# Approved payments only (refunds are not spend), in the balance's currency.
CARD_ACTIVITY = """
    SELECT card_id, coalesce(sum(coalesce(billing_amount, approved_amount)), 0) AS spend, count(*) AS payments
    FROM authorizations
    WHERE card_id = ANY($1::uuid[]) AND decision = 'APPROVED' AND type <> 'REFUND'
      AND created_at >= $2 AND created_at < $3
    GROUP BY card_id"""


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


async def card_activity(conn: asyncpg.Connection, card_ids: Iterable[uuid.UUID], start: date,
                        end: date) -> dict[uuid.UUID, dict[Metric, int]]:
    """Each card's approved spend and payment count over [start, end) (UTC days); absent means none."""
    ids = list(card_ids)
    if not ids:
        return {}
    rows = await conn.fetch(CARD_ACTIVITY, ids, midnight(start), midnight(end))
    return {r["card_id"]: {Metric.APPROVED_SPEND_PREVIOUS_PERIOD: r["spend"],
                           Metric.APPROVED_COUNT_PREVIOUS_PERIOD: r["payments"]} for r in rows}
