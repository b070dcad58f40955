"""Hypothesis: fee arithmetic is whole, non-negative and rounded as documented, against a formula
written here from docs/fees.md; waivers, periods, and the fee registry's coverage. No database."""

from __future__ import annotations

import math
from datetime import date
from decimal import Decimal
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from antaca_auth import fees
from antaca_auth.authorization import TxType
from antaca_auth.fees import FeeSchedule, FeeType, Metric, TransactionFee

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
