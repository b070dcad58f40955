"""Hypothesis: random streams of concurrent authorizations (small batches, two in flight),
partial and full reversals, clearings and clock moves across day and week boundaries in a
program time zone far from UTC; afterwards every velocity counter equals a scan of the history
(approved authorizations, net of what their reversals released, keyed by the program's local
day computed here), and no counter is above its ACTIVE limit."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from antaca_auth import controls, followups
from antaca_auth.authorization import AuthorizationRequest, TxType
from antaca_auth.cardkeys import CardKeys
from antaca_auth.control_rules import Level, Period
from antaca_auth.database import create_pool
from antaca_auth.engine import AuthorizationEngine, EngineSettings
from antaca_auth.ledger import Ledger
from antaca_auth.verify import verify_ledger
from bench.auth_bench import setup

ZONE = "Pacific/Auckland"  # UTC+13 in January: its days begin at 11:00 UTC the day before
HOLD_SECONDS = 30 * 86400
N_CARDS = 3  # cards 0 and 1 share a balance
DAY_COUNT_MAX, DAY_AMOUNT_MAX, WEEK_BALANCE_AMOUNT_MAX = 4, 6000, 12_000


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2027, 1, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


payments = st.lists(st.tuples(st.integers(0, N_CARDS - 1), st.integers(1, 3000)),
                    min_size=1, max_size=10)
operation = st.one_of(
    st.tuples(st.just("auth"), payments),
    st.tuples(st.just("reverse"), st.tuples(st.integers(0, 50),
                                            st.none() | st.integers(1, 3000))),
    st.tuples(st.just("clear"), st.tuples(st.integers(0, 50), st.integers(1, 3000))),
    st.tuples(st.just("advance"), st.integers(1, 40)))


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(operation, min_size=2, max_size=10))
def test_counters_equal_a_scan_of_history(database_url, steps):
    asyncio.run(run(database_url, steps))


async def prepare(pool, cards) -> None:
    """One balance for cards 0 and 1, the program's zone, and its controls (one SHADOW)."""
    program = cards[0]["program"]
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("UPDATE cards SET balance_id = (SELECT balance_id FROM cards "
                           "WHERE id = $1) WHERE id = $2", cards[0]["card"], cards[1]["card"])
        await conn.execute("UPDATE card_programs SET time_zone = $2 WHERE id = $1", program, ZONE)
        partner = cards[0]["partner"]
        for status, rule in (
                ("ACTIVE", {"period": "DAY", "per": "CARD", "amountMax": DAY_AMOUNT_MAX,
                            "countMax": DAY_COUNT_MAX}),
                ("ACTIVE", {"period": "WEEK", "per": "BALANCE",
                            "amountMax": WEEK_BALANCE_AMOUNT_MAX}),
                ("SHADOW", {"period": "LIFETIME", "per": "CARD", "countMax": 2})):
            await controls.insert(conn, uuid.uuid4(), Level.PRODUCT, program, partner, None,
                                  "PARTNER", status, "VELOCITY", rule)


async def run(dsn: str, steps) -> None:
    pool = await create_pool(dsn, min_size=1, max_size=6)
    clock = Clock()
    ledger = Ledger(pool, clock=clock)
    keys = CardKeys.generate()
    try:
        cards = await setup(pool, ledger, keys, 1, n_cards=N_CARDS)
        await prepare(pool, cards)
        network = uuid.uuid4()
        await pool.execute("INSERT INTO networks (id, name) VALUES ($1, $2)", network, network.hex)
        engine = AuthorizationEngine(pool, ledger, keys, EngineSettings(
            batch_size_max=3, batch_wait_seconds=0.001, hold_seconds=HOLD_SECONDS), clock=clock)
        await engine.start()
        follow_ups = followups.FollowUps(pool, ledger, keys, hold_seconds=HOLD_SECONDS,
                                         clearing_tolerance_percent=0)
        approved: list[str] = []
        for kind, arg in steps:
            if kind == "auth":
                sent = [AuthorizationRequest(
                    message_id=uuid.uuid4().hex, pan=cards[card]["pan"], expiry="3012",
                    amount=amount, currency="EUR", type=TxType.ECOM, cvc2=cards[card]["cvc2"])
                    for card, amount in arg]
                answers = await asyncio.gather(*(engine.authorize(network, r) for r in sent))
                approved += [r.message_id for r, a in zip(sent, answers, strict=True)
                             if a.decision == "APPROVED"]
            elif kind in ("reverse", "clear") and approved:
                index, amount = arg
                original = approved[index % len(approved)]
                try:
                    if kind == "reverse":
                        await follow_ups.reverse(network, uuid.uuid4().hex, original, amount)
                    else:
                        await follow_ups.clear(network, uuid.uuid4().hex, original, amount)
                except (followups.AuthorizationNotFound, followups.FollowUpRefused):
                    pass  # nothing left to follow up, or more than is held
            elif kind == "advance":
                clock.now += timedelta(hours=arg)
        await engine.stop()
        await check(pool, cards)
        async with pool.acquire() as conn:
            assert await verify_ledger(conn) == []
    finally:
        await pool.close()


async def check(pool, cards) -> None:
    rows = await pool.fetch(
        """SELECT a.card_id, a.balance_id, a.created_at, a.billing_amount,
                  a.user_hold_id IS NULL AND NOT EXISTS (
                      SELECT 1 FROM authorization_events e
                      WHERE e.authorization_id = a.id AND e.kind = 'CLEARING') AS reversed,
                  coalesce((SELECT sum(e.amount) FROM authorization_events e
                            WHERE e.authorization_id = a.id AND e.kind = 'REVERSAL'), 0)
                      AS released
           FROM authorizations a
           WHERE a.card_id = ANY($1::uuid[]) AND a.decision = 'APPROVED'""",
        [c["card"] for c in cards])
    zone = ZoneInfo(ZONE)
    expected: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        day = r["created_at"].astimezone(zone).date()
        monday = day - timedelta(days=day.weekday())
        for key in ((r["card_id"], "DAY", day), (r["balance_id"], "WEEK", monday),
                    (r["card_id"], "LIFETIME", date(1970, 1, 1))):
            expected[key][0] += r["billing_amount"] - r["released"]
            expected[key][1] += 0 if r["reversed"] else 1
    found = {(r["scope_id"], r["period"], r["period_start"]): [r["amount"], r["count"]]
             for r in await pool.fetch(
                 """SELECT * FROM velocity_counters WHERE scope_id IN (
                        SELECT id FROM cards WHERE id = ANY($1::uuid[]) UNION
                        SELECT balance_id FROM cards WHERE id = ANY($1::uuid[]))""",
                 [c["card"] for c in cards])}
    nonzero = {k: v for k, v in expected.items() if v != [0, 0]}
    assert {k: v for k, v in found.items() if v != [0, 0]} == nonzero
    for (_, period, _), (amount, count) in found.items():
        if period == Period.DAY:
            assert amount <= DAY_AMOUNT_MAX and count <= DAY_COUNT_MAX
        elif period == Period.WEEK:
            assert amount <= WEEK_BALANCE_AMOUNT_MAX
