"""The follow-ups' pure decisions, without a database: what a reversal releases and holds again,
what a clearing captures on each hold, the tolerance, and the transfer chains that book them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from antaca_auth.accounts import Counters
from antaca_auth.followups import (
    FollowUpRefused,
    HoldIds,
    check_clearing,
    clearing_limit,
    clearing_targets,
    clearing_transfers,
    decide_release,
    force_post_transfers,
    message_lock_key,
    rehold_amounts,
    reversal_transfers,
)
from antaca_auth.transfers import StoredTransfer, TransferKind

AMOUNT_MINOR_UNITS_MAX = 2**63 - 1  # the ledger's largest amount, minor units
amounts = st.integers(1, AMOUNT_MINOR_UNITS_MAX)
tolerances = st.integers(0, 100)
uuids = st.uuids()


def hold(amount: int, code: int = 1) -> StoredTransfer:
    return StoredTransfer(id=uuid.uuid4(), kind=TransferKind.PENDING, debit_account_id=uuid.uuid4(),
                          credit_account_id=uuid.uuid4(), amount=amount, currency="EUR",
                          pending_id=None, timeout=60, expires_at=None, code=code, reference="r",
                          metadata=None, created_at=datetime(2026, 1, 1, tzinfo=UTC),
                          debit_counters=Counters(), credit_counters=Counters())


hold_ids = st.builds(HoldIds, deposit=st.one_of(st.none(), uuids), user=uuids,
                     fee=st.one_of(st.none(), uuids))


# --- reversals -------------------------------------------------------------------------------
@given(held=amounts, data=st.data(), converted=st.booleans())
def test_released_and_rest_make_the_hold(held, data, converted):
    requested = data.draw(st.one_of(st.none(), st.integers(1, held)))
    release = decide_release(held, requested, converted)
    assert release.released + release.rest == held
    assert 0 < release.released <= held and release.rest >= 0
    assert release.released == (held if requested is None else requested)


@given(held=st.integers(1, AMOUNT_MINOR_UNITS_MAX - 2), above=st.integers(1, 1000))
def test_a_reversal_above_the_hold_is_refused(held, above):
    with pytest.raises(FollowUpRefused):
        decide_release(held, held + above + 1, converted=True)
    with pytest.raises(FollowUpRefused):
        decide_release(held, held + above, converted=False)


@given(held=st.integers(1, AMOUNT_MINOR_UNITS_MAX - 1))
def test_the_last_converted_part_one_above_what_is_left_releases_what_is_left(held):
    assert decide_release(held, held + 1, converted=True) == (held, 0)


@pytest.mark.parametrize("requested", [0, -1])
def test_a_reversal_of_nothing_is_refused(requested):
    with pytest.raises(FollowUpRefused):
        decide_release(100, requested, converted=True)


@given(ids=hold_ids, rest=st.integers(0, AMOUNT_MINOR_UNITS_MAX), fee_on_rest=st.integers(0, 10**6),
       fee_held=st.integers(0, 10**6))
def test_what_is_held_again_is_the_rest_and_never_more_fee(ids, rest, fee_on_rest, fee_held):
    again = rehold_amounts(ids, rest, fee_on_rest, fee_held)
    assert set(again) == set(ids.in_booking_order())
    assert again[ids.user] == rest
    if ids.deposit is not None:
        assert again[ids.deposit] == rest
    if ids.fee is not None:
        assert again[ids.fee] == (min(fee_on_rest, fee_held) if rest else 0) <= fee_held


def test_a_full_reversal_keeps_no_fee_held():
    """A fee with a fixed part or a minimum is not 0 on 0: pricing the rest of a full reversal
    gave the fee again, and the fee stayed held after the payment was released."""
    ids = HoldIds(uuid.uuid4(), uuid.uuid4(), uuid.uuid4())
    assert set(rehold_amounts(ids, 0, fee_on_rest=50, fee_held=50).values()) == {0}


def test_negative_amounts_are_never_held_again():
    with pytest.raises(ValueError):
        rehold_amounts(HoldIds(None, uuid.uuid4(), None), -1, 0, 0)


# --- clearings and the tolerance --------------------------------------------------------------
@given(held=amounts, tolerance=tolerances)
def test_the_limit_is_the_hold_plus_the_tolerance_rounded_down(held, tolerance):
    limit = clearing_limit(held, tolerance)
    assert held <= limit
    assert limit * 100 <= held * (100 + tolerance) < (limit + 1) * 100


@given(held=amounts, tolerance=tolerances)
def test_exactly_at_the_tolerance_is_accepted_and_one_above_refused(held, tolerance):
    limit = clearing_limit(held, tolerance)
    check_clearing(limit, held, tolerance)
    with pytest.raises(FollowUpRefused):
        check_clearing(limit + 1, held, tolerance)


def test_the_documented_twenty_percent():
    check_clearing(1200, 1000, 20)
    with pytest.raises(FollowUpRefused):
        check_clearing(1201, 1000, 20)
    with pytest.raises(FollowUpRefused):
        check_clearing(0, 1000, 20)


@given(ids=hold_ids, held=amounts, tolerance=tolerances, data=st.data(),
       fee_total=st.integers(0, 10**6))
def test_targets_stay_within_the_tolerance_bound(ids, held, tolerance, data, fee_total):
    billing = data.draw(st.integers(1, clearing_limit(held, tolerance)))
    check_clearing(billing, held, tolerance)
    targets = clearing_targets(ids, billing, fee_total)
    assert set(targets) == set(ids.in_booking_order())
    for hold_id in (ids.user, ids.deposit):
        if hold_id is not None:
            assert 0 < targets[hold_id] == billing <= clearing_limit(held, tolerance)
    if ids.fee is not None:
        assert targets[ids.fee] == fee_total


# --- the transfer chains ------------------------------------------------------------------------
def assert_one_chain(batch) -> None:
    assert [t.linked for t in batch] == [True] * (len(batch) - 1) + [False]
    assert len({t.id for t in batch}) == len(batch)


@given(held=st.lists(st.integers(1, 10**9), min_size=1, max_size=3), data=st.data())
def test_a_reversal_voids_every_hold_and_holds_its_new_amount_again(held, data):
    holds = [hold(amount) for amount in held]
    again = {h.id: data.draw(st.integers(0, h.amount)) for h in holds}
    batch, new_ids = reversal_transfers(holds, again, hold_seconds=60)
    assert_one_chain(batch)
    voided = [t.pending_id for t in batch if t.kind is TransferKind.VOID_PENDING]
    assert voided == [h.id for h in holds]
    held_again = {t.id: t for t in batch if t.kind is TransferKind.PENDING}
    assert set(new_ids) == {h.id for h in holds if again[h.id] > 0}
    for h in holds:
        if again[h.id] > 0:
            new = held_again[new_ids[h.id]]
            assert (new.amount, new.debit_account_id, new.credit_account_id, new.timeout) == (
                again[h.id], h.debit_account_id, h.credit_account_id, 60)


@given(held=st.lists(st.integers(1, 10**9), min_size=1, max_size=3), data=st.data())
def test_a_clearing_books_each_target_exactly(held, data):
    holds = [hold(amount) for amount in held]
    targets = {h.id: data.draw(st.integers(0, clearing_limit(h.amount, 20))) for h in holds}
    batch, posts = clearing_transfers(holds, targets)
    assert_one_chain(batch)
    for h in holds:
        resolved = [t for t in batch if t.pending_id == h.id]
        assert len(resolved) == 1  # each hold is resolved once
        above = [t for t in batch if t.kind is TransferKind.SINGLE
                 and t.debit_account_id == h.debit_account_id]
        if targets[h.id] == 0:
            assert resolved[0].kind is TransferKind.VOID_PENDING and not above
            continue
        assert posts[h.id] == resolved[0].id
        assert resolved[0].amount + sum(t.amount for t in above) == targets[h.id]
        assert resolved[0].amount <= h.amount


def test_a_force_post_books_both_legs_or_refuses():
    deposit, user = uuid.uuid4(), uuid.uuid4()
    card = {"funding_model": "DEPOSIT", "deposit": deposit, "user_account": user}
    both = force_post_transfers(card, "m" * 300, 700, "EUR")
    assert_one_chain(both)
    assert [(t.debit_account_id, t.amount) for t in both] == [(deposit, 700), (user, 700)]
    assert both[1].credit_account_id == deposit and len(both[0].reference) == 256
    card = {"funding_model": "CREDIT", "deposit": None, "user_account": user}
    (credit,) = force_post_transfers(card, "m", 700, "EUR")
    assert (credit.debit_account_id, credit.amount, credit.linked) == (user, 700, False)
    with pytest.raises(FollowUpRefused):
        force_post_transfers({**card, "funding_model": "DEPOSIT"}, "m", 700, "EUR")


# --- the message lock -------------------------------------------------------------------------
@given(network=uuids, message=st.text(min_size=1, max_size=64))
def test_a_message_lock_key_is_a_stable_bigint_per_network_and_message(network, message):
    key = message_lock_key(network, message)
    assert -(2**63) <= key < 2**63  # a PostgreSQL bigint
    assert key == message_lock_key(uuid.UUID(bytes=network.bytes), str(message))
    assert key != message_lock_key(network, message + "x")


def test_the_same_message_id_on_another_network_is_another_lock():
    assert message_lock_key(uuid.UUID(int=1), "m-1") != message_lock_key(uuid.UUID(int=2), "m-1")
