"""Exchange rates in force (the admin-managed `fx_rates` table)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

import asyncpg

RATES_IN_FORCE = """
    SELECT DISTINCT ON (base, quote) base, quote, rate, id
    FROM fx_rates
    WHERE base = ANY($1::text[]) AND quote = ANY($2::text[]) AND effective_from <= $3
    ORDER BY base, quote, effective_from DESC"""


async def rates_in_force(conn: asyncpg.Connection, pairs: Iterable[tuple[str, str]],
                         at: datetime) -> dict[tuple[str, str], Decimal]:
    """The rate of each (base, quote) pair in force at `at`; pairs without one are absent."""
    wanted = set(pairs)
    if not wanted:
        return {}
    rows = await conn.fetch(RATES_IN_FORCE, sorted({b for b, _ in wanted}), sorted({q for _, q in wanted}), at)
    return {(r["base"], r["quote"]): r["rate"] for r in rows if (r["base"], r["quote"]) in wanted}
