"""The engine's decision core without a database: every decline, PIN lockout, card testing,
duplicates in one batch, stand-in, pricing, and what a plan writes (hypothesis)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from antaca_auth import authorization as rules
from antaca_auth import fees as pricing
from antaca_auth.authorization import AuthorizationRequest, CardFacts, TxType
from antaca_auth.cardkeys import CardKeys
from antaca_auth.cardstate import CardState
from antaca_auth.decision import (
    Policy,
    Snapshot,
    StoredAnswer,
    answer,
    decide,
    request_digest,
    settle,
    stand_in_decline,
)
from antaca_auth.pinblock import PinBlockFormat, ZoneKey, encipher_pin
from antaca_auth.settlement import TransferCodes
from antaca_auth.transfers import ResultCode

KEYS = CardKeys.generate()
replace = msgspec.structs.replace
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
NETWORK = uuid.UUID(int=1)
ZONE_KEY = ZoneKey(PinBlockFormat.ISO_4, bytes(range(16)))
POLICY = Policy(hold_seconds=3600)
PIN = "4821"
PAN = "5355220000000018"
BAD_CVC = "000" if KEYS.cvc2(PAN, "3012", 0) != "000" else "001"  # the card's CVC2 is derived


@dataclasses.dataclass
class Incoming:
    network_id: uuid.UUID
    request: AuthorizationRequest
    fingerprint: str
    digest: bytes
    authorization_id: uuid.UUID = dataclasses.field(default_factory=uuid.uuid4)


def incoming(request: AuthorizationRequest, network: uuid.UUID = NETWORK) -> Incoming:
    fingerprint = KEYS.fingerprint(request.pan)
    return Incoming(network, request, fingerprint, request_digest(fingerprint, request))


def card(pan: str = "5355220000000018", **changes) -> CardFacts:
    card_id = uuid.uuid5(uuid.NAMESPACE_OID, pan)
    salt, verification = KEYS.new_pin_record(card_id, PIN)
    facts = CardFacts(card_id=card_id, state=CardState.ACTIVE, lock_reason=None, expiry="3012", cvc_counter=0,
                      pin_salt=salt, pin_verification=verification, pin_failures=0, program_currency="EUR",
                      funding_model="DEPOSIT", balance_id=uuid.uuid4(), balance_state="ACTIVE",
                      user_account=uuid.uuid4(), deposit_account=uuid.uuid4(), program_id=uuid.uuid4(),
                      fingerprint=KEYS.fingerprint(pan))
    return replace(facts, **changes)


def request(c: CardFacts | None = None, pan: str = "5355220000000018", **changes) -> AuthorizationRequest:
    fields = dict(message_id=uuid.uuid4().hex, pan=pan, expiry="3012", amount=1000, currency="EUR",
                  type=TxType.ECOM, cvc2=KEYS.cvc2(pan, "3012", c.cvc_counter if c else 0))
    fields.update(changes)
    return AuthorizationRequest(**fields)


def pin_block(pin: str, pan: str = "5355220000000018") -> str:
    return encipher_pin(ZONE_KEY, pin, pan).hex()


def snapshot(*cards: CardFacts, answers=None, rates=None, schedules=None, zone_keys=None) -> Snapshot:
    return Snapshot(now=NOW, answers=answers or {}, cards={c.fingerprint: c for c in cards},
                    schedules=schedules or {}, rates=rates or {}, activity={}, exponents={"EUR": 2, "USD": 2},
                    zone_keys={NETWORK: ZONE_KEY} if zone_keys is None else zone_keys)


def decided(requests, snap, **options):
    plan = decide([incoming(r) for r in requests], snap, KEYS, POLICY, **options)
    return plan, [answer(row) for row in plan.rows]


# --- every decline --------------------------------------------------------------------------------

C = card()
CASES = [
    ("unknown card", None, {}, rules.UNKNOWN_CARD),
    ("removed", replace(C, state=CardState.REMOVED), {}, rules.CARD_REMOVED),
    *[(f"locked {reason}", replace(C, state=CardState.LOCKED, lock_reason=reason), {},
       rules.locked(reason)) for reason in (1, 2, 3, 4, 5, 6, 7, 8, 11)],
    *[(f"state {state}", replace(C, state=state), {}, rules.CARD_NOT_ACTIVE)
      for state in (CardState.PENDING, CardState.FAILED, CardState.ORDERED, CardState.INACTIVE)],
    ("wrong expiry", C, {"expiry": "3011"}, rules.WRONG_EXPIRY),
    ("expired last month", replace(C, expiry="2610"), {"expiry": "2610", "cvc2": None,
                                                                   "type": TxType.POS}, rules.EXPIRED_CARD),
    ("wrong CVC2", C, {"cvc2": BAD_CVC}, rules.WRONG_CVC2),
    ("e-commerce without CVC2", C, {"cvc2": None}, rules.CVC2_REQUIRED),
    ("ATM without PIN", C, {"cvc2": None, "type": TxType.ATM}, rules.PIN_REQUIRED),
    ("wrong PIN", C, {"cvc2": None, "type": TxType.POS, "pin_block": pin_block("1357")}, rules.WRONG_PIN),
    ("PIN block under another key", C, {"cvc2": None, "type": TxType.POS,
                                        "pin_block": encipher_pin(ZoneKey(PinBlockFormat.ISO_4, bytes(16)),
                                                                  PIN, "5355220000000018").hex()},
     rules.PIN_BLOCK_UNREADABLE),
    ("PIN block of the wrong length", C, {"cvc2": None, "type": TxType.POS, "pin_block": "00" * 8},
     rules.PIN_BLOCK_UNREADABLE),
    ("balance blocked", replace(C, balance_state="BLOCKED"), {}, rules.BALANCE_BLOCKED),
    ("currency without a rate", C, {"currency": "USD"}, rules.CURRENCY_NOT_SUPPORTED),
    ("DEPOSIT model without a deposit", replace(C, deposit_account=None), {},
     rules.INSUFFICIENT_DEPOSIT),
]


@pytest.mark.parametrize(("name", "facts", "changes", "expected"), CASES, ids=[c[0] for c in CASES])
def test_every_decline_the_checks_answer(name, facts, changes, expected):
    plan, (result,) = decided([request(facts or C, **changes)], snapshot(*([facts] if facts else [])))
    assert (result.decision, result.response_code, result.reason, result.action_code) == (
        "DECLINED", expected.response_code, expected.reason, expected.action_code)
    assert len(plan.holds) == 0


def test_expiry_is_valid_to_the_last_day_of_its_month():
    facts = replace(C, expiry="2611")
    last_day = dataclasses.replace(snapshot(facts), now=datetime(2026, 11, 30, 23, tzinfo=UTC))
    next_day = dataclasses.replace(last_day, now=datetime(2026, 12, 1, 0, tzinfo=UTC))
    ok = request(facts, expiry="2611", cvc2=KEYS.cvc2("5355220000000018", "2611", 0))
    assert decided([ok], last_day)[1][0].decision == "APPROVED"
    assert decided([ok], next_day)[1][0].reason == "EXPIRED_CARD"


def test_the_key_missing_for_a_pin_block_declines_96_and_counts_nothing():
    plan, (result,) = decided([request(C, cvc2=None, type=TxType.POS, pin_block=pin_block(PIN))],
                              snapshot(C, zone_keys={}))
    assert (result.response_code, result.reason) == ("96", "PIN_KEY_MISSING")
    assert plan.card_updates == {}


def test_ledger_declines_map_to_their_codes():
    plan, _ = decided([request(C), request(C)], snapshot(C))
    deposit_short = [(ResultCode.EXCEEDS_CREDITS, 0, 0), (ResultCode.LINKED_EVENT_FAILED, 0, 0)]
    user_short = [(ResultCode.LINKED_EVENT_FAILED, 0, 0), (ResultCode.EXCEEDS_CREDITS, 0, 0)]
    declined, _ = settle(plan, deposit_short + user_short)
    assert [answer(r).reason for r in plan.rows] == ["INSUFFICIENT_PARTNER_DEPOSIT", "INSUFFICIENT_FUNDS"]
    assert all(r.user_at is None and r.deposit_at is None for r in declined)


def test_what_the_balances_as_read_cannot_cover_is_declined_in_order_before_the_ledger():
    facts = replace(C, user_available=1500, deposit_available=10_000)
    payments = [request(facts, amount=1000), request(facts, amount=1000), request(facts, amount=400),
                request(facts, type=TxType.REFUND, amount=600), request(facts, amount=700)]
    plan, results = decided(payments, snapshot(facts))
    assert [r.reason for r in results] == ["APPROVED", "INSUFFICIENT_FUNDS", "APPROVED", "APPROVED", "APPROVED"]
    assert plan.available[facts.user_account] == 1500 - 1000 - 400 + 600 - 700
    short_deposit = replace(facts, deposit_available=1200, user_available=10_000)
    _, results = decided([request(short_deposit, amount=1000), request(short_deposit, amount=300)],
                         snapshot(short_deposit))
    assert [r.reason for r in results] == ["APPROVED", "INSUFFICIENT_PARTNER_DEPOSIT"]


# --- PIN, card testing, duplicates, stand-in ------------------------------------------------------

def test_third_wrong_pin_in_one_batch_locks_and_later_requests_see_the_lock():
    wrong = [request(C, cvc2=None, type=TxType.POS, pin_block=pin_block("1357")) for _ in range(3)]
    right = request(C, cvc2=None, type=TxType.POS, pin_block=pin_block(PIN))
    plan, results = decided([*wrong, right], snapshot(C))
    assert [r.reason for r in results] == ["WRONG_PIN", "WRONG_PIN", "PIN_TRIES_EXCEEDED",
                                           "CARD_LOCKED_PIN_TRIES_EXCEEDED"]
    assert results[2].action_code == "1006"
    update = plan.card_updates[C.card_id]
    assert (update.pin_failures, update.lock_reason) == (3, 6)


def test_a_right_pin_resets_the_count():
    facts = replace(C, pin_failures=2)
    plan, (result,) = decided([request(facts, cvc2=None, type=TxType.POS, pin_block=pin_block(PIN))],
                              snapshot(facts))
    assert result.decision == "APPROVED"
    assert plan.card_updates[C.card_id].pin_failures == 0


def test_card_testing_locks_on_the_fifth_failure_in_the_window():
    facts = replace(C, verification_failures=3, verification_window_start=NOW - timedelta(hours=1))
    tries = [request(facts, cvc2=BAD_CVC), request(facts, expiry="3101"), request(facts)]
    plan, results = decided(tries, snapshot(facts))
    assert [(r.response_code, r.reason) for r in results] == [
        ("N7", "WRONG_CVC2"), ("59", "SUSPECTED_CARD_TESTING"), ("62", "CARD_LOCKED_SUSPECTED_FRAUD")]
    assert results[1].action_code == results[2].action_code == "1002"
    update = plan.card_updates[C.card_id]
    assert (update.verification_failures, update.lock_reason) == (5, 7)


def test_card_testing_failures_outside_the_window_start_a_new_one():
    facts = replace(C, verification_failures=4, verification_window_start=NOW - timedelta(hours=25))
    plan, (result,) = decided([request(facts, expiry="3101")], snapshot(facts))
    assert result.reason == "WRONG_EXPIRY"
    update = plan.card_updates[C.card_id]
    assert (update.verification_failures, update.verification_window_start, update.lock_reason) == (1, NOW, None)


def test_the_same_message_twice_in_a_batch_is_one_decision_and_another_payment_under_it_is_94():
    first = request(C)
    again = first
    other = AuthorizationRequest(**{**{f: getattr(first, f) for f in first.__struct_fields__}, "amount": 999})
    plan, results = decided([first, again, other], snapshot(C))
    assert results[0] == results[1] and results[0].decision == "APPROVED"
    assert (results[2].response_code, results[2].authorization_id) == ("94", results[0].authorization_id)
    assert len(plan.new_rows) == 1 and len(plan.holds) == 2


def test_an_earlier_answer_is_replayed_and_a_different_payment_under_its_id_is_94():
    first = request(C)
    earlier = stand_in_decline(uuid.uuid4())
    stored = {(NETWORK, first.message_id): StoredAnswer(earlier, incoming(first).digest)}
    other = AuthorizationRequest(**{**{f: getattr(first, f) for f in first.__struct_fields__}, "currency": "USD"})
    plan, results = decided([first, other], snapshot(C, answers=stored))
    assert results[0] == earlier
    assert (results[1].response_code, results[1].reason) == ("94", "DUPLICATE_TRANSMISSION")
    assert plan.new_rows == [] and len(plan.holds) == 0


def test_stand_in_declines_91_unless_the_program_approves_within_the_card_limit():
    assert decided([request(C)], snapshot(C), stand_in=True)[1][0].reason == "ISSUER_UNAVAILABLE"
    facts = replace(C, stand_in_approves=True, stand_in_limit=2500, stand_in_used=500)
    plan, results = decided([request(facts, amount=1500), request(facts, amount=600)], snapshot(facts),
                            stand_in=True)
    assert [(r.decision, r.stand_in) for r in results] == [("APPROVED", True), ("DECLINED", True)]
    assert results[1].reason == "STAND_IN_LIMIT_EXCEEDED" and results[1].response_code == "91"
    assert plan.card_updates[C.card_id].stand_in_used == 2000


def test_a_stand_in_payment_declined_for_funds_uses_none_of_the_allowance():
    facts = replace(C, stand_in_approves=True, stand_in_limit=10_000, user_available=500)
    plan, (result,) = decided([request(facts, amount=5000)], snapshot(facts), stand_in=True)
    assert result.reason == "INSUFFICIENT_FUNDS"
    assert C.card_id not in plan.card_updates
    approved, _ = decided([request(facts, amount=400)], snapshot(facts), stand_in=True)
    declined_by_ledger, _ = settle(approved, [(ResultCode.EXCEEDS_CREDITS, 0, 0), (ResultCode.OK, 0, 0)])
    assert approved.card_updates[C.card_id].stand_in_used == 0  # given back: nothing was held


def test_fees_and_conversion_are_priced_and_held_in_one_chain():
    schedule = pricing.decode_schedule({"ecom": {"percentBp": 200}, "currencyConversionBp": 100})
    facts = replace(C, fee_schedule_id=uuid.uuid4())
    plan, (result,) = decided([request(facts, currency="USD", amount=1234)],
                              snapshot(facts, rates={("USD", "EUR"): Decimal("0.5")},
                                       schedules={facts.fee_schedule_id: schedule}))
    billing = 617
    fee, conversion = pricing.transaction_fees(schedule, "ECOM", billing, True, {})
    assert (result.billing_amount, result.fee) == (billing, fee + conversion)
    assert plan.holds.amounts == [billing, billing, fee + conversion]
    assert plan.holds.codes == [TransferCodes.DEPOSIT_HOLD, TransferCodes.USER_HOLD, TransferCodes.FEE]
    assert plan.holds.linked == [True, True, False]


# --- properties -------------------------------------------------------------------------------------

PANS = ["5355220000000018", "5355220000000026", "5355220000000034"]


DEPOSIT = uuid.uuid4()  # one partner deposit behind every card, as in a DEPOSIT program


@st.composite
def batches(draw):
    deposit = draw(st.one_of(st.none(), st.integers(0, 5 * 10**6)))
    cards = {pan: card(pan, state=draw(st.sampled_from([CardState.ACTIVE] * 4 + [CardState.LOCKED])),
                       lock_reason=3, pin_failures=draw(st.integers(0, 2)),
                       verification_failures=draw(st.integers(0, 4)), verification_window_start=NOW,
                       funding_model=draw(st.sampled_from(["DEPOSIT", "CREDIT"])),
                       user_available=draw(st.one_of(st.none(), st.integers(0, 3 * 10**6))),
                       deposit_account=DEPOSIT, deposit_available=deposit)
             for pan in PANS}
    requests = []
    for _ in range(draw(st.integers(1, 12))):
        pan = draw(st.sampled_from(PANS))
        c = cards[pan]
        kind = draw(st.sampled_from(["ok", "cvc", "expiry", "pin", "wrong_pin", "refund", "repeat"]))
        if kind == "repeat" and requests:
            requests.append(draw(st.sampled_from(requests)))
            continue
        changes = {"amount": draw(st.integers(1, 10**6))}
        if kind == "cvc":
            changes["cvc2"] = draw(st.sampled_from(["000", "001"]))
        elif kind == "expiry":
            changes["expiry"] = "2901"
        elif kind in ("pin", "wrong_pin"):
            changes.update(type=TxType.POS, pin_block=pin_block(PIN if kind == "pin" else "1357", pan))
        elif kind == "refund":
            changes["type"] = TxType.REFUND
        requests.append(request(c, pan, **changes))
    return list(cards.values()), requests


@settings(max_examples=200, deadline=None)
@given(batches(), st.booleans())
def test_a_plan_holds_exactly_what_it_approves_and_counts_only_cards_it_may_lock(drawn, stand_in):
    cards, requests = drawn
    snap = snapshot(*cards)
    plan = decide([incoming(r) for r in requests], snap, KEYS, POLICY, stand_in=stand_in)
    assert len(plan.rows) == len(requests)
    # A card's decisions depend on its own facts and requests only: the engine relies on it when it
    # locks the cards a plan updates and decides again with their fresh facts (engine._lock_cards).
    for pan, c in zip(PANS, cards, strict=True):
        alone = decide([incoming(r) for r in requests if r.pan == pan], snap, KEYS, POLICY, stand_in=stand_in)
        assert alone.card_updates.get(c.card_id) == plan.card_updates.get(c.card_id)
    # The balances as read never go below zero: the ledger's own rule, checked before it is asked.
    limits = {c.user_account: c.user_available for c in cards if c.user_available is not None}
    if cards[0].deposit_available is not None:
        limits[DEPOSIT] = cards[0].deposit_available
    for i in range(len(plan.holds)):
        debit, credit, amount = plan.holds.debits[i], plan.holds.credits[i], plan.holds.amounts[i]
        if credit in limits and not plan.holds.pending[i]:
            limits[credit] += amount  # a refund, posted at once
        if debit in limits:
            limits[debit] -= amount
            assert limits[debit] >= 0
    held = 0
    for row in plan.rows:
        indexes = [i for i in (row.deposit_at, row.user_at, row.fee_at) if i is not None]
        if not row.stored or row.decline is not None:
            assert indexes == []
            continue
        c, q = row.card, row.incoming.request
        assert plan.holds.amounts[row.user_at] == row.billing_amount == q.amount
        assert (row.deposit_at is not None) == (c.funding_model == "DEPOSIT" and q.type is not TxType.REFUND)
        accounts = {plan.holds.debits[row.user_at], plan.holds.credits[row.user_at]}
        assert c.user_account in accounts
        held += len(indexes)
    assert held == len(plan.holds)
    # Decisions are per message: every request with one message id and one digest gets one answer.
    by_key: dict = {}
    for row in plan.rows:
        by_key.setdefault((row.incoming.request.message_id, row.incoming.digest), set()).add(answer(row))
    assert all(len(answers) == 1 for answers in by_key.values())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["right", "wrong", "cvc"]), min_size=1, max_size=12), st.integers(0, 2))
def test_wrong_pins_in_a_row_lock_on_the_third_and_card_testing_on_the_fifth(tries, failures_before):
    facts = replace(C, pin_failures=failures_before)
    requests = [request(facts, cvc2=BAD_CVC) if t == "cvc" else request(facts, cvc2=None, type=TxType.POS,
                                           pin_block=pin_block(PIN if t == "right" else "1357"))
                for t in tries]
    _, results = decided(requests, snapshot(facts))
    pins, verification, locked = failures_before, 0, None
    for t, result in zip(tries, results, strict=True):
        if locked is not None:
            assert result.reason == rules.locked(locked).reason
            continue
        if t == "cvc":
            verification += 1
            expected = "SUSPECTED_CARD_TESTING" if verification == 5 else "WRONG_CVC2"
            locked = 7 if verification == 5 else None
        elif t == "wrong":
            pins += 1
            expected = "PIN_TRIES_EXCEEDED" if pins == 3 else "WRONG_PIN"
            locked = 6 if pins == 3 else None
        else:
            pins, expected = 0, "APPROVED"
        assert result.reason == expected
