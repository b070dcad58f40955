"""Hypothesis: fee arithmetic is whole, non-negative and rounded as documented; and random mixes of
authorizations, clearings, reversals, recurring fees and top-ups keep the ledger and the fee records
in agreement."""

from __future__ import annotations

import asyncio
import uuid
import math
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from antaca_auth import charges
from antaca_auth import followups
from antaca_auth import fees
from antaca_auth.accounts import AccountKind, NewAccount
from antaca_auth.authorization import AuthorizationRequest, TxType
from antaca_auth.cardkeys import CardKeys
from antaca_auth.database import create_pool
from antaca_auth.engine import AuthorizationEngine, EngineSettings
from antaca_auth.fees import FeeSchedule, FeeType, Metric, TransactionFee
from antaca_auth.ledger import Ledger
from antaca_auth.transfers import Transfer
from antaca_auth.verify import verify_ledger
from bench.auth_bench import setup

minor = st.integers(0, 10**15)
bp = st.integers(0, fees.BASIS)
specs = st.builds(TransactionFee, fixed=st.integers(0, 10**6), percent_bp=bp, minimum=st.integers(0, 10**6),
                  maximum=st.one_of(st.none(), st.integers(0, 10**7)))


@given(amount=minor, basis_points=bp)
def test_percent_is_whole_and_rounded_half_up(amount, basis_points):
    fee = fees.percent_of(amount, basis_points)
    assert isinstance(fee, int) and fee >= 0
    exact = Decimal(amount) * basis_points / fees.BASIS
    assert abs(fee - exact) <= Decimal("0.5")
    assert fee - exact != Decimal("-0.5")  # a half rounds up


def documented_fee(spec: TransactionFee | None, amount: int) -> int:
    """docs/fees.md's formula, written again here: the percentage exact, rounded half up once to a
    whole minor unit; the fixed part added; then at least the minimum, at most the maximum."""
    if spec is None:
        return 0
    percent = math.floor(Fraction(amount * spec.percent_bp, 10_000) + Fraction(1, 2))
    fee = max(spec.fixed + percent, spec.minimum)
    return fee if spec.maximum is None else min(fee, spec.maximum)


@given(spec=specs, amount=minor)
def test_transaction_fee_is_the_documented_formula(spec, amount):
    assert fees.transaction_fee(spec, amount) == documented_fee(spec, amount)


def test_the_documented_examples():
    """docs/fees.md's worked examples: 2 % of 1,234 cents is 24.68, charged 25; 12.34 USD at
    0.9251 is 11.415734 EUR, 1,142 cents; 1,000 JPY (no decimals) at 0.0062 is 620 cents."""
    assert fees.transaction_fee(TransactionFee(percent_bp=200), 1234) == 25
    assert fees.convert(1234, 2, 2, Decimal("0.9251")) == 1142
    assert fees.convert(1000, 0, 2, Decimal("0.0062")) == 620
    assert fees.percent_of(1, 5000) == 1  # half a minor unit rounds up


@given(spec=specs, amount=minor, more=minor)
def test_transaction_fee_is_bounded_and_monotone(spec, amount, more):
    fee = fees.transaction_fee(spec, amount)
    assert isinstance(fee, int) and fee >= 0
    if spec.maximum is not None:
        assert fee <= spec.maximum
    if spec.maximum is None or spec.maximum >= spec.minimum:
        assert fee >= spec.minimum
    assert fees.transaction_fee(spec, amount + more) >= fee  # paying more never costs less


@given(amount=minor, source=st.integers(0, 3), target=st.integers(0, 3),
       rate=st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("100000"), places=6))
def test_conversion_is_whole_and_within_half_a_minor_unit(amount, source, target, rate):
    converted = fees.convert(amount, source, target, rate)
    assert isinstance(converted, int) and converted >= 0
    exact = Decimal(amount) * rate * Decimal(10) ** (target - source)
    assert abs(converted - exact) <= Decimal("0.5")
    assert fees.convert(amount + 1, source, target, rate) >= converted


conditions = st.builds(fees.Condition, metric=st.sampled_from(list(Metric)),
                       at_least=st.one_of(st.none(), st.integers(0, 1000)), below=st.one_of(st.none(),
                                                                                            st.integers(0, 1000)))
waivers = st.builds(fees.Waiver, name=st.just("rule"), fee=st.sampled_from(list(FeeType)),
                    when=st.lists(conditions, min_size=1, max_size=3))


@given(rules=st.lists(waivers, max_size=4), fee_type=st.sampled_from(list(FeeType)),
       spend=st.integers(0, 1000), count=st.integers(0, 1000))
def test_a_waiver_applies_exactly_when_all_its_conditions_hold(rules, fee_type, spend, count):
    facts = {Metric.APPROVED_SPEND_PREVIOUS_PERIOD: spend, Metric.APPROVED_COUNT_PREVIOUS_PERIOD: count}

    def holds(c):
        value = facts[c.metric]
        return (c.at_least is None or value >= c.at_least) and (c.below is None or value < c.below)

    expected = next((w for w in rules if w.fee is fee_type and all(holds(c) for c in w.when)), None)
    assert fees.waiver_for(FeeSchedule(waivers=rules), fee_type, facts) == expected


@given(day=st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1)), period=st.sampled_from(list(fees.Period)))
def test_periods_contain_their_day_and_follow_each_other(day, period):
    start, end = fees.period_bounds(period, day)
    assert start <= day < end
    before_start, before_end = fees.previous_period(period, day)
    assert before_end == start and before_start < start
    assert fees.period_bounds(period, end)[0] == end


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


def test_the_fee_registry_covers_every_fee_type_schedule_field_and_payment_type():
    """A new fee type, schedule field or payment type fails here until it has its registry row."""
    assert set(fees.FEE_RULES) == set(FeeType)
    assert all(rule.fee_type is fee_type for fee_type, rule in fees.FEE_RULES.items())
    priced = {rule.schedule_field for rule in fees.FEE_RULES.values()}
    assert priced == set(FeeSchedule.__struct_fields__) - {"waivers"}
    assert set(fees.TRANSACTION_FEES) == {str(t) for t in TxType} - {"REFUND"}
    kinds = {fees.FeeKind.TRANSACTION: TransactionFee, fees.FeeKind.RECURRING: fees.RecurringFee}
    # Each field's type is the one its kind prices with (a flat fee or conversion is a number).
    every_price = FeeSchedule(
        balance_creation=1, virtual_card_creation=2, physical_card_creation=3,
        card_recurring=fees.RecurringFee(period=fees.Period.MONTHLY, amount=4),
        pos=TransactionFee(fixed=5), ecom=TransactionFee(fixed=6), atm=TransactionFee(fixed=7),
        money_transfer=TransactionFee(fixed=8), currency_conversion_bp=9)
    for rule in fees.FEE_RULES.values():
        price = getattr(every_price, rule.schedule_field)
        assert isinstance(price, kinds.get(rule.kind, int)), rule
        if rule.kind is fees.FeeKind.TRANSACTION:
            assert fees.spec_for(every_price, rule.fee_type) is price
            assert fees.flat_fee(every_price, rule.fee_type) == 0
        elif rule.kind is not fees.FeeKind.CONVERSION:
            assert fees.flat_fee(every_price, rule.fee_type) == (
                price.amount if rule.kind is fees.FeeKind.RECURRING else price)
