"""Hypothesis: random mixes of authorizations, clearings, reversals, recurring fees and top-ups keep
the ledger and the fee records in agreement (the fee arithmetic itself: tests/unit/test_fee_arithmetic.py)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from antaca_auth import charges, fees, followups
from antaca_auth.accounts import AccountKind, NewAccount
from antaca_auth.authorization import AuthorizationRequest, TxType
from antaca_auth.cardkeys import CardKeys
from antaca_auth.database import create_pool
from antaca_auth.engine import AuthorizationEngine, EngineSettings
from antaca_auth.fees import FeeSchedule, TransactionFee
from antaca_auth.ledger import Ledger
from antaca_auth.transfers import Transfer
from antaca_auth.verify import verify_ledger
from bench.auth_bench import setup
from tests.unit.test_fee_arithmetic import documented_fee

# --- the ledger under random mixes of payments and fees ---------------------------------------
SCHEDULE = FeeSchedule(ecom=TransactionFee(fixed=30, percent_bp=175, minimum=50, maximum=400),
                       pos=TransactionFee(percent_bp=90), card_recurring=fees.RecurringFee(period=fees.Period.DAILY,
                                                                                           amount=250))

operation = st.one_of(
    st.tuples(st.just("auth"), st.lists(st.tuples(st.integers(0, 2), st.integers(1, 6000),
                                                  st.sampled_from(["ECOM", "POS", "REFUND"])), min_size=1, max_size=6)),
    st.tuples(st.just("clear"), st.tuples(st.integers(0, 30), st.integers(1, 7000))),
    st.tuples(st.just("reverse"), st.tuples(st.integers(0, 30), st.one_of(st.none(), st.integers(1, 6000)))),
    st.tuples(st.just("recurring"), st.integers(0, 3)),
    st.tuples(st.just("top_up"), st.tuples(st.integers(0, 2), st.integers(1, 5000))),
)


# 40 streams of up to 10 steps, each its own cards and engine on the test's database: about
# 20 s, enough to reach clearings above the hold, recurring fees and top-ups that collect unpaid
# fees in one run; the arithmetic itself is covered by the fast tests above (100 examples each).
# function_scoped_fixture: the database is the test's; each example makes and checks its own
# program, cards and accounts, so examples cannot see each other's.
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(operation, min_size=1, max_size=10), funds=st.lists(st.integers(0, 6000), min_size=3,
                                                                           max_size=3))
def test_fees_keep_the_ledger_and_the_records_in_agreement(database_url, steps, funds):
    asyncio.run(run(database_url, steps, funds))


async def run(dsn: str, steps, funds) -> None:
    pool = await create_pool(dsn, min_size=1, max_size=6)
    ledger = Ledger(pool)
    keys = CardKeys.generate()
    try:
        cards = await setup(pool, ledger, keys, 1, n_cards=3)
        program = cards[0]["program"]
        bank = uuid.uuid4()
        await ledger.create_accounts([NewAccount(id=bank, currency="EUR", kind=AccountKind.EXTERNAL_FUNDING)])
        await level(ledger, cards, funds, bank)
        async with pool.acquire() as conn:
            await charges.ensure_revenue_account(ledger, conn, program, "EUR")
            await conn.execute(
                """INSERT INTO fee_schedules (id, program_id, version, effective_from, schedule)
                   VALUES ($1, $2, 1, $3, $4)""",
                uuid.uuid4(), program, datetime(2020, 1, 1, tzinfo=UTC), SCHEDULE)
        engine = AuthorizationEngine(pool, ledger, keys, EngineSettings(batch_size_max=4, batch_wait_seconds=0.002))
        follow_ups = followups.FollowUps(pool, ledger, keys, hold_seconds=3600,
                                         clearing_tolerance_percent=20)
        await engine.start()
        network = uuid.uuid4()
        await pool.execute("INSERT INTO networks (id, name) VALUES ($1, $2)", network, network.hex)
        messages: list[str] = []
        for kind, arg in steps:
            if kind == "auth":
                requests = [AuthorizationRequest(message_id=uuid.uuid4().hex, pan=cards[c]["pan"],
                                                 expiry=cards[c]["expiry"], amount=amount, currency="EUR",
                                                 type=TxType(tx)) for c, amount, tx in arg]
                for r, answer in zip(requests, await asyncio.gather(*(engine.authorize(network, r) for r in requests)),
                                     strict=True):
                    spec = {"ECOM": SCHEDULE.ecom, "POS": SCHEDULE.pos}.get(str(r.type))
                    expected = documented_fee(spec, r.amount)  # refunds pay none
                    assert answer.fee == (expected if answer.decision == "APPROVED" else 0)
                    messages.append(r.message_id)
            elif kind in ("clear", "reverse") and messages:
                index, amount = arg
                original = messages[index % len(messages)]
                call = (follow_ups.clear(network, uuid.uuid4().hex, original, amount)
                        if kind == "clear" else
                        follow_ups.reverse(network, uuid.uuid4().hex, original, amount))
                try:
                    await call
                except (followups.AuthorizationNotFound, followups.FollowUpRefused):
                    pass
            elif kind == "recurring":
                await charges.charge_recurring(pool, ledger, datetime.now(UTC) + timedelta(days=arg))
            elif kind == "top_up":
                card, amount = arg
                (r,) = await ledger.create_transfers([Transfer(id=uuid.uuid4(), code=1, debit_account_id=bank,
                                                               credit_account_id=cards[card]["balance"],
                                                               amount=amount, currency="EUR")])
                assert r.ok
                balance_id = await pool.fetchval("SELECT id FROM balances WHERE account_id = $1",
                                                 cards[card]["balance"])
                await charges.collect_unpaid(pool, ledger, balance_id)
            await check(pool, ledger, program, cards)
        await engine.stop()
    finally:
        await pool.close()


async def check(pool, ledger: Ledger, program: uuid.UUID, cards) -> None:
    """The ledger verifies; no balance is negative; the fee revenue account holds exactly the paid fee
    records and the fee holds of open authorizations."""
    async with pool.acquire() as conn:
        assert await verify_ledger(conn) == []
        # Examples share a database: only this example's program counts.
        paid = await conn.fetchval(
            "SELECT coalesce(sum(amount), 0) FROM fee_charges WHERE state = 'PAID' AND program_id = $1", program)
        held = await conn.fetchval(
            """SELECT coalesce(sum(t.amount), 0) FROM authorizations a JOIN transfers t ON t.id = a.fee_hold_id
               JOIN cards c ON c.id = a.card_id
               WHERE c.program_id = $1 AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = t.id)""",
            program)
    (revenue,) = await ledger.lookup_accounts([fees.fee_revenue_account(program, "EUR")])
    assert revenue.posted == paid
    assert revenue.balance.credits_pending == held
    for account in await ledger.lookup_accounts([c["balance"] for c in cards]):
        assert account.available >= 0 and account.posted >= 0


async def level(ledger: Ledger, cards, funds, bank) -> None:
    """Bring the setup's generous balances to the example's amounts."""
    moves = []
    for c, target in zip(cards, funds, strict=True):
        (account,) = await ledger.lookup_accounts([c["balance"]])
        moves.append(Transfer(id=uuid.uuid4(), code=1, debit_account_id=c["balance"], credit_account_id=bank,
                              amount=account.available - target, currency="EUR"))
    assert all(r.ok for r in await ledger.create_transfers(moves))
