"""Property tests: generated PANs, and the card state machine against a model of the product's rules."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from antaca_auth import cardstate
from antaca_auth.cardstate import CardState, CardStatus, CardTransitionError
from antaca_auth.pans import (
    PAN_LENGTH_MAX,
    PAN_LENGTH_MIN,
    generate_pan,
    luhn_check_digit,
    luhn_valid,
    mask_pan,
)


@given(bin_prefix=st.text("0123456789", min_size=6, max_size=11), extra=st.integers(2, 8))
def test_generated_pans_are_in_range_and_luhn_valid(bin_prefix, extra):
    length = min(PAN_LENGTH_MAX, max(PAN_LENGTH_MIN, len(bin_prefix) + extra))
    pan = generate_pan(bin_prefix, length)
    assert pan.startswith(bin_prefix) and len(pan) == length and pan.isdigit()
    assert luhn_valid(pan)
    assert mask_pan(pan).startswith(pan[:6]) and mask_pan(pan).endswith(pan[-4:]) and "*" in mask_pan(pan)


def test_pan_lengths_are_14_to_19():
    for length in (PAN_LENGTH_MIN, PAN_LENGTH_MAX):
        assert len(generate_pan("535522", length)) == length
    for length in (PAN_LENGTH_MIN - 1, PAN_LENGTH_MAX + 1):
        with pytest.raises(AssertionError):
            generate_pan("535522", length)


@given(st.text("0123456789", min_size=12, max_size=18), st.integers(0, 9))
def test_luhn_detects_any_single_digit_error(body, wrong):
    pan = body + luhn_check_digit(body)
    position = len(body) // 2
    if wrong != int(pan[position]):
        assert not luhn_valid(pan[:position] + str(wrong) + pan[position + 1:])


@settings(max_examples=30)
@given(st.integers(1, 30))
def test_pans_drawn_from_a_range_repeat_only_by_chance(n):
    """Draws are random: with 10^9 numbers in range, n draws collide only with negligible probability."""
    pans = {generate_pan("53552200", 16) for _ in range(n)}
    assert len(pans) == n


# The product's rules, written as a plain table: (state, operation) -> next state, None = refused.
IRREVERSIBLE = {1, 2, 5, 8}


def expected(state: CardState, before_lock: CardState | None, reason: int | None, op: str, arg: int | None):
    """What the product allows: the next (state, reason), or None when refused."""
    if op == "remove":
        return None if state is CardState.REMOVED else (CardState.REMOVED, None)
    if op == "activate":
        return (CardState.ACTIVE, None) if state is CardState.INACTIVE else None
    if op == "lock":
        if state in (CardState.ACTIVE, CardState.INACTIVE):
            return (CardState.LOCKED, arg)
        if state is CardState.LOCKED and reason not in IRREVERSIBLE:
            return (CardState.LOCKED, arg)
        return None
    if op == "unlock":
        if state is CardState.LOCKED and reason not in IRREVERSIBLE:
            return (before_lock, None)
        return None
    if op == "generated":
        return (CardState.ACTIVE, None) if state is CardState.PENDING else None
    if op == "failed":
        return (CardState.FAILED, None) if state is CardState.PENDING else None
    if op == "linked":
        return (CardState.INACTIVE, None) if state is CardState.ORDERED else None
    raise AssertionError(op)


OPERATIONS = {
    "remove": lambda s, _: cardstate.remove(s),
    "activate": lambda s, _: cardstate.activate(s),
    "lock": lambda s, reason: cardstate.lock(s, reason),
    "unlock": lambda s, _: cardstate.unlock(s),
    "generated": lambda s, _: cardstate.generated(s),
    "failed": lambda s, _: cardstate.failed(s),
    "linked": lambda s, _: cardstate.linked(s),
}


class CardMachine(RuleBasedStateMachine):
    """Random operation sequences: every outcome matches the table, no forbidden state is reached."""

    @initialize(start=st.sampled_from([CardState.PENDING, CardState.ORDERED]))
    def new_card(self, start):
        self.status = CardStatus(start)
        self.before_lock: CardState | None = None
        self.ever_irreversible = False

    @rule(op=st.sampled_from(sorted(OPERATIONS)), reason=st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 11]))
    def operate(self, op, reason):
        want = expected(self.status.state, self.before_lock, self.status.lock_reason, op, reason)
        try:
            after = OPERATIONS[op](self.status, reason)
        except CardTransitionError:
            assert want is None, (self.status, op, reason)
            return
        assert want is not None, (self.status, op, reason)
        assert (after.state, after.lock_reason) == want
        if after.state is CardState.LOCKED and self.status.state is not CardState.LOCKED:
            self.before_lock = self.status.state
        if after.lock_reason in IRREVERSIBLE:
            self.ever_irreversible = True
        self.status = after

    @invariant()
    def never_forbidden(self):
        s = self.status
        if self.ever_irreversible:
            # once locked for good, a card is LOCKED for that reason or REMOVED, never usable again
            assert s.state in (CardState.LOCKED, CardState.REMOVED)
        assert (s.state is CardState.LOCKED) == (s.lock_reason is not None)
        if s.state is CardState.LOCKED:
            assert s.state_before_lock in (CardState.ACTIVE, CardState.INACTIVE)


TestCardMachine = CardMachine.TestCase
TestCardMachine.settings = settings(max_examples=300, stateful_step_count=30, deadline=None)


def test_pin_rules():
    refused = ["1234", "0000", "4321", "7890", "123", "1234567890123", "12a4", "98765", "2222222"]
    accepted = ["4821", "1357", "9021", "482193", "102938475601"]
    assert all(cardstate.pin_problem(p) for p in refused)
    assert not any(cardstate.pin_problem(p) for p in accepted)
