"""Spending controls without a database: MCC parsing, channels, periods across boundaries,
precedence, shadow verdicts, velocity in one batch, the counters' bits, the API's rule checks."""

from __future__ import annotations

import uuid
from datetime import date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from antaca_api.controls import RuleFields, looser_than, rule_of
from antaca_api.domain_errors import InvalidControl
from antaca_auth import control_rules as cr
from antaca_auth.authorization import TxType
from antaca_auth.decision import Snapshot, answer, decide, taken_back, velocity_declined
from tests.unit.test_decision import KEYS, NOW, POLICY, card, incoming, request

CARD, BALANCE = uuid.UUID(int=10), uuid.UUID(int=11)


def control(kind: cr.Kind, level: cr.Level = cr.Level.CARD, status: cr.Status = cr.Status.ACTIVE,
            order: int = 0, **rule) -> cr.Control:
    return cr.control_from_rule(id=uuid.uuid4(), version=1, level=level, scope_id=CARD,
                                status=status, kind=kind, rule=rule, created_order=order)


DAY = date(2026, 11, 28)
STARTS = cr.period_starts(DAY)


def payment(**changes) -> cr.Payment:
    fields = dict(card_id=CARD, balance_id=BALANCE, mcc="5411", country="PL",
                  channel=cr.PaymentChannel.CHIP, amount=1000)
    fields.update(changes)
    return cr.Payment(**fields)


def test_mccs_single_and_ranges():
    codes, ranges = cr.parse_mccs(["5411", "5960-5969", "7995"])
    assert codes == {"5411", "7995"} and ranges == ((5960, 5969),)
    for bad in ("541", "5969-5960", "54a1", "5411-", "5411-54"):
        with pytest.raises(ValueError):
            cr.parse_mccs([bad])
    block = control(cr.Kind.MCC_BLOCK, mccs=["5960-5969"])
    assert cr.check(block, payment(mcc="5960"), {}) is cr.MCC_NOT_PERMITTED
    assert cr.check(block, payment(mcc="5969"), {}) is cr.MCC_NOT_PERMITTED
    assert cr.check(block, payment(mcc="5970"), {}) is None
    assert cr.check(block, payment(mcc=None), {}) is None
    allow = control(cr.Kind.MCC_ALLOW, mccs=["5411"])
    assert cr.check(allow, payment(mcc=None), {}) is cr.MCC_NOT_PERMITTED


@pytest.mark.parametrize(("tx_type", "mode", "channel"), [
    (TxType.ATM, "051", cr.PaymentChannel.ATM), (TxType.ECOM, None, cr.PaymentChannel.ECOMMERCE),
    (TxType.POS, "071", cr.PaymentChannel.CONTACTLESS),
    (TxType.POS, "911", cr.PaymentChannel.CONTACTLESS),
    (TxType.POS, "021", cr.PaymentChannel.MAGNETIC_STRIPE),
    (TxType.POS, "901", cr.PaymentChannel.MAGNETIC_STRIPE),
    (TxType.POS, "051", cr.PaymentChannel.CHIP), (TxType.POS, None, cr.PaymentChannel.UNKNOWN)])
def test_payment_channel_from_type_and_entry_mode(tx_type, mode, channel):
    assert cr.payment_channel(tx_type, mode) is channel


def test_period_starts_across_boundaries():
    sunday, monday = date(2027, 1, 3), date(2027, 1, 4)
    assert cr.period_start(cr.Period.WEEK, sunday) == date(2026, 12, 28)  # over the year's end
    assert cr.period_start(cr.Period.WEEK, monday) == monday
    assert cr.period_start(cr.Period.MONTH, date(2028, 2, 29)) == date(2028, 2, 1)
    assert cr.period_start(cr.Period.DAY, sunday) == sunday
    assert cr.period_start(cr.Period.LIFETIME, sunday) == cr.LIFETIME_START


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1)))
def test_every_day_lies_in_its_periods(day):
    for period in (cr.Period.WEEK, cr.Period.MONTH):
        start = cr.period_start(period, day)
        assert start <= day and cr.period_start(period, start) == start
    assert (day - cr.period_start(cr.Period.WEEK, day)).days < 7


def test_precedence_names_the_broadest_level_and_shadow_never_declines():
    program = control(cr.Kind.AMOUNT_MAX, cr.Level.PROGRAM, order=5, amountMax=3000)
    card_limit = control(cr.Kind.AMOUNT_MAX, cr.Level.CARD, order=1, amountMax=2000)
    shadow = control(cr.Kind.MCC_BLOCK, cr.Level.CARD, cr.Status.SHADOW, mccs=["5411"])
    controls = cr.ordered([card_limit, shadow, program])
    verdict = cr.evaluate(controls, payment(amount=3500), {})
    assert verdict.control is program and verdict.decline is cr.AMOUNT_LIMIT_EXCEEDED
    assert verdict.shadow == ((shadow, cr.MCC_NOT_PERMITTED),)
    verdict = cr.evaluate(controls, payment(amount=2500), {})
    assert verdict.control is card_limit
    verdict = cr.evaluate(controls, payment(amount=100, mcc="5999"), {})
    assert verdict is cr.PASS


def test_velocity_checks_count_then_amount_and_counts_keys_by_bits():
    day_count = control(cr.Kind.VELOCITY, period="DAY", per="CARD", countMax=2)
    month_amount = control(cr.Kind.VELOCITY, period="MONTH", per="BALANCE", amountMax=5000)
    shadow = control(cr.Kind.VELOCITY, status=cr.Status.SHADOW, period="DAY", per="CARD",
                     countMax=1)
    p = payment()
    assert cr.check(day_count, p, {day_count.window: (10, 2)}) is cr.VELOCITY_COUNT_EXCEEDED
    assert cr.check(month_amount, p, {month_amount.window: (4001, 0)}) is \
        cr.VELOCITY_AMOUNT_EXCEEDED
    assert cr.check(month_amount, p, {month_amount.window: (4000, 0)}) is None
    found = cr.control_set([day_count, month_amount, shadow])
    keys = found.keys(CARD, BALANCE, STARTS)
    assert set(keys) == {(CARD, cr.Period.DAY, DAY), (BALANCE, cr.Period.MONTH, date(2026, 11, 1))}
    # The shadow counts in the same window but sets no limit: the tightest ACTIVE one stands.
    limits = dict(zip(keys, found.limits, strict=True))
    assert limits[(CARD, cr.Period.DAY, DAY)] == (None, 2)
    assert set(cr.counted_keys(found.bits, CARD, BALANCE, DAY)) == set(keys)
    assert cr.control_set([shadow]).limits == ((None, None),)


def _with_controls(facts, *controls, counters=None):
    return Snapshot(now=NOW, answers={}, cards={facts.fingerprint: facts}, schedules={}, rates={},
                    activity={}, exponents={"EUR": 2}, zone_keys={},
                    control_sets={facts.card_id: cr.control_set(controls)},
                    counter_keys={facts.card_id: cr.control_set(controls).keys(
                        facts.card_id, facts.balance_id, cr.period_starts(NOW.date()))},
                    counters=counters or {}, local_days={"UTC": NOW.date()})


def test_two_payments_of_one_card_in_one_batch_count_against_each_other():
    facts = card(user_available=100_000, deposit_available=100_000)
    limit = cr.control_from_rule(id=uuid.uuid4(), version=3, level="CARD",
                                 scope_id=facts.card_id, status="ACTIVE", kind="VELOCITY",
                                 rule={"period": "DAY", "per": "CARD", "amountMax": 2500})
    batch = [incoming(request(facts, amount=1000)) for _ in range(3)]
    key = (facts.card_id, cr.Period.DAY, NOW.date())
    plan = decide(batch, _with_controls(facts, limit, counters={key: (400, 1)}), KEYS, POLICY)
    results = [answer(row) for row in plan.rows]
    assert [r.decision for r in results] == ["APPROVED", "APPROVED", "DECLINED"]
    assert results[2].response_code == "61"
    assert plan.rows[2].control is limit
    assert plan.deltas == {key: (2000, 2)} and plan.limits == {key: (2500, None)}
    assert plan.rows[0].velocity_bits == 1 << cr.WINDOW_OF[(cr.CountedPer.CARD, cr.Period.DAY)]
    assert taken_back(plan.rows[:1]) == {key: (-1000, -1)}
    assert velocity_declined(plan)  # the engine checks such a decline on the committed counters


def test_refunds_pass_controls_and_are_not_counted():
    facts = card(user_available=100_000, deposit_available=100_000)
    block = cr.control_from_rule(id=uuid.uuid4(), version=1, level="CARD",
                                 scope_id=facts.card_id, status="ACTIVE", kind="AMOUNT_MAX",
                                 rule={"amountMax": 10})
    plan = decide([incoming(request(facts, type=TxType.REFUND, amount=500))],
                  _with_controls(facts, block), KEYS, POLICY)
    assert answer(plan.rows[0]).decision == "APPROVED" and plan.deltas == {}


def test_rule_checks_of_the_api():
    assert rule_of(cr.Kind.MCC_BLOCK, RuleFields(mccs=["7995", "5411", "7995"])) == {
        "mccs": ["5411", "7995"]}
    assert rule_of(cr.Kind.VELOCITY, RuleFields(period=cr.Period.DAY, per=cr.CountedPer.CARD,
                                                count_max=3)) == {
        "period": "DAY", "per": "CARD", "countMax": 3}
    for kind, fields in [(cr.Kind.MCC_BLOCK, RuleFields()),
                         (cr.Kind.AMOUNT_MAX, RuleFields(amount_max=5, mccs=["5411"])),
                         (cr.Kind.VELOCITY,
                          RuleFields(period=cr.Period.DAY, per=cr.CountedPer.CARD)),
                         (cr.Kind.COUNTRY_BLOCK, RuleFields(countries=["pl"])),
                         (cr.Kind.AMOUNT_MAX, RuleFields(amount_max=0))]:
        with pytest.raises(InvalidControl):
            rule_of(kind, fields)


def test_a_customer_limit_is_never_looser_than_the_partners():
    partner = [{"kind": "VELOCITY", "status": "ACTIVE", "set_by": "PARTNER",
                "rule": {"period": "DAY", "per": "CARD", "amountMax": 1000}},
               {"kind": "AMOUNT_MAX", "status": "SHADOW", "set_by": "PARTNER",
                "rule": {"amountMax": 10}}]
    daily = {"period": "DAY", "per": "CARD"}
    assert looser_than({**daily, "amountMax": 1001}, cr.Kind.VELOCITY, partner) is not None
    assert looser_than({**daily, "amountMax": 1000}, cr.Kind.VELOCITY, partner) is None
    assert looser_than({"period": "WEEK", "per": "CARD", "amountMax": 9999}, cr.Kind.VELOCITY,
                       partner) is None  # another period: both apply
    assert looser_than({"amountMax": 500}, cr.Kind.AMOUNT_MAX, partner) is None  # shadow


def test_local_day_in_a_zone_east_of_utc():
    from zoneinfo import ZoneInfo

    late = datetime.fromisoformat("2027-01-03T15:00:00+00:00")
    assert late.astimezone(ZoneInfo("Asia/Tokyo")).date() == date(2027, 1, 4)  # a Monday there
    assert cr.period_start(cr.Period.WEEK, late.astimezone(ZoneInfo("Asia/Tokyo")).date()) == \
        date(2027, 1, 4)


def test_iso8583_de22_reaches_the_request_as_the_entry_mode():
    from antaca_api.iso8583.messages import authorization_request

    fields = {"2": "5355220000000018", "3": "000000", "4": "000000001000", "7": "1128120000",
              "11": "000001", "12": "120000", "13": "1128", "14": "3012", "18": "5411",
              "22": "071", "32": "12345678901", "37": "RRN000000001", "41": "TERM0001",
              "42": "MERCHANT0000001", "43": "Shop".ljust(25) + "Warsaw".ljust(13) + "PL",
              "49": "978"}
    request = authorization_request(fields)
    assert request.pos_entry_mode == "071"
    assert cr.payment_channel(request.type, request.pos_entry_mode) is cr.PaymentChannel.CONTACTLESS
    del fields["22"]
    assert authorization_request(fields).pos_entry_mode is None
