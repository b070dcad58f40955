"""The decision core's network advices (`plan_advice`) and balance inquiries (`decide_inquiry`),
without a database: what is held where, and what a balance inquiry checks."""

from __future__ import annotations

from decimal import Decimal

from antaca_auth import authorization as rules
from antaca_auth.authorization import CardState, TxType
from antaca_auth.decision import (
    BALANCE_INQUIRY,
    NETWORK_ADVICE,
    StoredAnswer,
    answer,
    decide_inquiry,
    inquiry_answer,
    plan_advice,
    stand_in_decline,
)
from antaca_auth.settlement import TransferCodes, advice_receivable_account, settlement_account
from tests.unit.test_decision import (
    BAD_CVC,
    KEYS,
    NETWORK,
    POLICY,
    card,
    incoming,
    pin_block,
    request,
    snapshot,
)

RECEIVABLE = advice_receivable_account("EUR")


def holds_of(plan) -> list[tuple[int, object, int]]:
    h = plan.holds
    return list(zip(h.codes, h.debits, h.amounts, strict=True))


def test_an_advice_the_funds_cover_is_held_as_the_engine_holds_it():
    c = card(user_available=5000, deposit_available=50_000)
    plan = plan_advice(incoming(request(c, amount=1200)), snapshot(c), POLICY)
    (row,) = plan.rows
    assert row.decline is None and row.advice_shortfall == 0
    assert holds_of(plan) == [(TransferCodes.DEPOSIT_HOLD, c.deposit_account, 1200),
                              (TransferCodes.USER_HOLD, c.user_account, 1200)]
    result = answer(row)
    assert (result.decision, result.reason, result.balance_currency) == (
        "APPROVED", NETWORK_ADVICE, "EUR")


def test_what_a_declined_card_would_refuse_is_held_all_the_same():
    locked = card(state=CardState.LOCKED, lock_reason=2, user_available=100,
                  deposit_available=50_000)
    plan = plan_advice(incoming(request(locked, amount=900, cvc2=BAD_CVC)), snapshot(locked),
                       POLICY)
    (row,) = plan.rows
    assert row.decline is None  # lost card, wrong CVC2: the network decided, not the checks
    assert row.incoming.request.amount == 900 and plan.card_updates == {}  # no counter moves
    assert holds_of(plan) == [(TransferCodes.DEPOSIT_HOLD, locked.deposit_account, 900),
                              (TransferCodes.USER_HOLD, RECEIVABLE, 900)]  # 100 cannot cover it
    assert row.advice_shortfall == 900


def test_each_hold_that_its_account_cannot_cover_goes_whole_on_the_receivable():
    c = card(user_available=1000, deposit_available=500, funding_model="DEPOSIT")
    plan = plan_advice(incoming(request(c, amount=800)), snapshot(c), POLICY)
    assert holds_of(plan) == [(TransferCodes.DEPOSIT_HOLD, RECEIVABLE, 800),
                              (TransferCodes.USER_HOLD, c.user_account, 800)]
    assert plan.rows[0].advice_shortfall == 800
    credit = card(funding_model="CREDIT", user_available=None)  # no funds limit on the account
    plan = plan_advice(incoming(request(credit, amount=10**9)), snapshot(credit), POLICY)
    assert holds_of(plan) == [(TransferCodes.USER_HOLD, credit.user_account, 10**9)]
    assert plan.holds.credits == [settlement_account("EUR")]


def test_a_deposit_program_without_a_deposit_pays_the_network_from_the_user():
    c = card(deposit_account=None, user_available=2000)
    plan = plan_advice(incoming(request(c, amount=700)), snapshot(c), POLICY)
    assert holds_of(plan) == [(TransferCodes.USER_HOLD, c.user_account, 700)]
    assert plan.holds.credits == [settlement_account("EUR")] and plan.rows[0].decline is None


def test_a_converted_advice_is_held_in_the_balance_s_currency():
    c = card(user_available=100_000, deposit_available=100_000)
    plan = plan_advice(incoming(request(c, amount=2000, currency="USD")),
                       snapshot(c, rates={("USD", "EUR"): Decimal("0.5")}), POLICY)
    assert [amount for _, _, amount in holds_of(plan)] == [1000, 1000]
    assert answer(plan.rows[0]).billing_amount == 1000


def test_advices_that_cannot_be_priced_and_replays_book_nothing():
    c = card(user_available=1000)
    unknown = plan_advice(incoming(request(None, pan="5355220000000026")), snapshot(c), POLICY)
    assert unknown.rows[0].decline == rules.UNKNOWN_CARD and len(unknown.holds) == 0
    no_rate = plan_advice(incoming(request(c, currency="USD")), snapshot(c), POLICY)
    assert no_rate.rows[0].decline == rules.CURRENCY_NOT_SUPPORTED and len(no_rate.holds) == 0
    first = plan_advice(incoming(q := request(c, amount=300)), snapshot(c), POLICY)
    stored = {(NETWORK, q.message_id): StoredAnswer(answer(first.rows[0]),
                                                    first.rows[0].incoming.digest)}
    again = plan_advice(incoming(q), snapshot(c, answers=stored), POLICY)
    assert not again.rows[0].stored and len(again.holds) == 0
    assert answer(again.rows[0]) == answer(first.rows[0])
    other = plan_advice(incoming(request(c, amount=301, message_id=q.message_id)),
                        snapshot(c, answers=stored), POLICY)
    assert answer(other.rows[0]).response_code == "94"  # another payment under its identity


def test_a_refund_advice_credits_the_user():
    c = card(user_available=0)
    plan = plan_advice(incoming(request(c, amount=400, type=TxType.REFUND, cvc2=None)),
                       snapshot(c), POLICY)
    assert plan.holds.credits == [c.user_account] and plan.holds.pending == [False]
    assert plan.rows[0].advice_shortfall == 0


def test_a_balance_inquiry_checks_the_card_and_answers_its_available_balance():
    c = card(user_available=4321)
    (row,) = decide_inquiry(incoming(request(c, currency="USD")), snapshot(c), KEYS, POLICY).rows
    result = inquiry_answer(row)  # another currency: an inquiry moves no money
    assert (result.response_code, result.reason, result.available_after,
            result.balance_currency) == ("00", BALANCE_INQUIRY, 4321, "EUR")
    plan = decide_inquiry(incoming(request(c, cvc2=BAD_CVC)), snapshot(c), KEYS, POLICY)
    assert inquiry_answer(plan.rows[0]).response_code == "N7"
    assert plan.card_updates[c.card_id].verification_failures == 1  # counts as card testing
    plan = decide_inquiry(incoming(request(c, pin_block=pin_block("1111"))), snapshot(c), KEYS,
                          POLICY)
    assert inquiry_answer(plan.rows[0]).response_code == "55"
    assert plan.card_updates[c.card_id].pin_failures == 1
    locked = card(state=CardState.LOCKED, lock_reason=1, user_available=10)
    result = inquiry_answer(decide_inquiry(incoming(request(locked)), snapshot(locked), KEYS,
                                           POLICY).rows[0])
    assert (result.response_code, result.action_code, result.available_after) == (
        "41", "2008", None)


def test_an_advice_books_over_antaca_s_own_decline_of_the_message():
    c = card(user_available=100, deposit_available=50_000)
    q = request(c, amount=500)
    declined = answer(plan_advice(incoming(request(None, pan="5355220000000026")), snapshot(c),
                                  POLICY).rows[0])  # any decline, stored under q's identity
    for earlier in (declined, stand_in_decline(declined.authorization_id)):
        stored = {(NETWORK, q.message_id): StoredAnswer(earlier, incoming(q).digest)}
        plan = plan_advice(incoming(q), snapshot(c, answers=stored), POLICY)
        (row,) = plan.rows
        assert row.supersedes and row.stored and row.id == earlier.authorization_id
        assert answer(row).response_code == "00" and len(plan.holds) == 2
