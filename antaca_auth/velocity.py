"""The velocity counters (table `velocity_counters`): what a card or a balance spent in a period,
approved authorizations net of reversals, in the card's currency. This module owns the table.

The engine reads the counters its batch's velocity controls need (`read`), decides, then adds the
batch's approvals in one statement (`add`) that returns the totals as written: the rows are
locked in key order until the commit, so a concurrent batch's approvals are either in the totals
(and a limit passed makes the batch decide again) or wait for this one. A reversal gives back what
it releases (`add` with negative amounts) before it books its transfers, in the same key order.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import date

import asyncpg

from antaca_auth.control_rules import CounterKey, Period

READ = """
    SELECT k.scope_id, k.period, k.period_start, v.amount, v.count
    FROM unnest($1::uuid[], $2::text[], $3::date[]) AS k (scope_id, period, period_start)
    JOIN velocity_counters v USING (scope_id, period, period_start)"""

# Keys in order (the caller sorts them): every transaction locks counters in one order.
ADD = """
    INSERT INTO velocity_counters AS v (scope_id, period, period_start, amount, count)
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::date[], $4::bigint[], $5::int[])
    ON CONFLICT (scope_id, period, period_start)
    DO UPDATE SET amount = v.amount + excluded.amount, count = v.count + excluded.count
    RETURNING scope_id, period, period_start, amount, count"""

# ADD, answering only the counters that now pass an ACTIVE (amount, count) limit: normally none,
# so nothing comes back (a concurrent batch counted payments since this batch read them).
ADD_CHECKED = f"""
    WITH added AS ({ADD})
    SELECT a.scope_id, a.period, a.period_start FROM added a
    JOIN unnest($6::uuid[], $7::text[], $8::date[], $9::bigint[], $10::int[])
         AS l (scope_id, period, period_start, amount_max, count_max)
         USING (scope_id, period, period_start)
    WHERE a.amount > l.amount_max OR a.count > l.count_max"""

# Every counter of one card or balance (operators, tests).
SCOPE_COUNTERS = """
    SELECT period, period_start, amount, count FROM velocity_counters WHERE scope_id = $1
    ORDER BY period, period_start"""


PERIOD_OF = {str(period): period for period in Period}


def _columns(keys: Iterable[CounterKey]) -> tuple[list, list, list]:
    """The keys as three columns (a Period is a str: sent as its name)."""
    scopes, periods, starts = [], [], []
    for scope, period, start in keys:
        scopes.append(scope)
        periods.append(period)
        starts.append(start)
    return scopes, periods, starts


def _totals(records) -> dict[CounterKey, tuple[int, int]]:
    return {(r[0], PERIOD_OF[r[1]], r[2]): (r[3], r[4]) for r in records}


async def read(conn: asyncpg.Connection,
               keys: Iterable[CounterKey]) -> dict[CounterKey, tuple[int, int]]:
    """The (amount, count) of each counter that exists (absent: nothing spent)."""
    keys = list(keys)
    if not keys:
        return {}
    return _totals(await conn.fetch(READ, *_columns(keys)))


async def add(conn: asyncpg.Connection,
              deltas: Mapping[CounterKey, tuple[int, int]]) -> dict[CounterKey, tuple[int, int]]:
    """Add (amount, count) to each counter, creating it at zero; the totals as written."""
    if not deltas:
        return {}
    keys = sorted(deltas)  # (scope, period name, start): the order every writer locks in
    return _totals(await conn.fetch(ADD, *_columns(keys), [deltas[k][0] for k in keys],
                                    [deltas[k][1] for k in keys]))


async def add_checked(conn: asyncpg.Connection, deltas: Mapping[CounterKey, tuple[int, int]],
                      limits: Mapping[CounterKey, tuple[int | None, int | None]]
                      ) -> list[CounterKey]:
    """`add`, then the counters that pass their limit as written (normally none)."""
    keys = sorted(deltas)
    limited = [key for key in keys if key in limits]
    records = await conn.fetch(
        ADD_CHECKED, *_columns(keys), [deltas[k][0] for k in keys], [deltas[k][1] for k in keys],
        *_columns(limited), [limits[k][0] for k in limited], [limits[k][1] for k in limited])
    return [(r[0], PERIOD_OF[r[1]], r[2]) for r in records]


async def scope_counters(conn: asyncpg.Connection,
                         scope_id: uuid.UUID) -> dict[tuple[Period, date], tuple[int, int]]:
    return {(PERIOD_OF[r["period"]], r["period_start"]): (r["amount"], r["count"])
            for r in await conn.fetch(SCOPE_COUNTERS, scope_id)}
