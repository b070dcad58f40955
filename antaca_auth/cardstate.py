"""Card states, lock reasons and the transitions between them (pure rules, no I/O).

    PENDING --generated--> ACTIVE                (virtual, asynchronous)
    PENDING --failed-----> FAILED                (final)
    ORDERED --linked-----> INACTIVE              (physical: the processor's report links it)
    INACTIVE --activate--> ACTIVE
    ACTIVE | INACTIVE --lock(reason)--> LOCKED   (remembers the state it left)
    LOCKED --unlock------> the state it left     (refused for irreversible reasons)
    LOCKED --lock(reason)--> LOCKED              (a new reason replaces a reversible one)
    ACTIVE | INACTIVE | LOCKED --replaced--> LOCKED(8)  (final: the card has a successor)
    any but REMOVED --remove--> REMOVED          (final)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class CardState(enum.StrEnum):
    PENDING = "PENDING"
    FAILED = "FAILED"
    ORDERED = "ORDERED"
    INACTIVE = "INACTIVE"
    ACTIVE = "ACTIVE"
    LOCKED = "LOCKED"
    REMOVED = "REMOVED"


@dataclass(frozen=True)
class LockReason:
    code: int
    name: str
    irreversible: bool
    action_code: str | None  # the failure action code the authorization engine answers


LOCK_REASONS: dict[int, LockReason] = {r.code: r for r in (
    LockReason(1, "CARD_LOST", True, "2008"),
    LockReason(2, "CARD_STOLEN", True, "2009"),
    LockReason(3, "PENDING_QUERY", False, "1000"),
    LockReason(4, "CARD_CONSOLIDATION", False, "1016"),
    LockReason(5, "CARD_INACTIVE", True, "1018"),
    LockReason(6, "PIN_TRIES_EXCEEDED", False, "1006"),
    LockReason(7, "SUSPECTED_FRAUD", False, "1002"),
    LockReason(8, "CARD_REPLACED", True, "1011"),
    # The product lists no network action code for 11; the engine declines it as PIN tries exceeded.
    LockReason(11, "OFFLINE_PIN_ATTEMPTS_EXCEEDED", False, "1006"),
)}

# Locks for wrong PINs (online, 6; offline, 11): unlocking one resets the card's wrong-PIN count.
PIN_TRIES_LOCK_REASONS = frozenset({6, 11})
# The engine locks a card for suspected fraud (7) after repeated wrong CVC2s or expiry dates (card
# testing): unlocking it resets that count too, or the next mistake would lock it again at once.
CARD_TESTING_LOCK_REASONS = frozenset({7})

# Reasons a card network or acquirer may send on the network channel (the product's "lock outside").
NETWORK_LOCK_REASONS = frozenset({1, 2, 3, 4, 5, 6, 7, 8})


class CardTransitionError(Exception):
    """A card operation that its current state does not allow."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class CardStatus:
    """A card's state and, when locked, why and what it was before."""

    state: CardState
    lock_reason: int | None = None
    state_before_lock: CardState | None = None


def _refuse(code: str, message: str) -> CardTransitionError:
    return CardTransitionError(code, message)


def _refuse_if_removed(s: CardStatus) -> None:
    """A removed card refuses every operation as removed, whatever the operation would need."""
    if s.state is CardState.REMOVED:
        raise _refuse("CARD_REMOVED", "the card is removed")


def activate(s: CardStatus) -> CardStatus:
    _refuse_if_removed(s)
    if s.state is not CardState.INACTIVE:
        raise _refuse("CARD_NOT_INACTIVE", f"only an INACTIVE card can be activated, this one is {s.state}")
    return CardStatus(CardState.ACTIVE)


def lock(s: CardStatus, reason: int) -> CardStatus:
    if reason not in LOCK_REASONS:
        raise _refuse("INVALID_LOCK_REASON", f"unknown lock reason {reason}")
    _refuse_if_removed(s)
    if s.state in (CardState.ACTIVE, CardState.INACTIVE):
        return CardStatus(CardState.LOCKED, reason, s.state)
    if s.state is CardState.LOCKED:
        if LOCK_REASONS[s.lock_reason].irreversible:
            raise _refuse("CARD_LOCK_IRREVERSIBLE", "the card is locked for good; its reason cannot change")
        return CardStatus(CardState.LOCKED, reason, s.state_before_lock)
    raise _refuse("CARD_NOT_LOCKABLE", f"a {s.state} card cannot be locked")


CARD_REPLACED_LOCK_REASON = 8


def replaced(s: CardStatus) -> CardStatus:
    """A card that a new one replaces is locked for good with reason 8 (its authorizations answer
    1011). Any other lock gives way to it, an irreversible one included (the card is lost or
    stolen and now replaced): the replacement is what the network must be told."""
    if s.state is CardState.LOCKED and s.lock_reason == CARD_REPLACED_LOCK_REASON:
        raise _refuse("CARD_ALREADY_REPLACED", "the card is already replaced")
    if s.state in (CardState.ACTIVE, CardState.INACTIVE):
        return CardStatus(CardState.LOCKED, CARD_REPLACED_LOCK_REASON, s.state)
    if s.state is CardState.LOCKED:
        return CardStatus(CardState.LOCKED, CARD_REPLACED_LOCK_REASON, s.state_before_lock)
    raise _refuse("CARD_NOT_REPLACEABLE", f"a {s.state} card cannot be replaced")


def unlock(s: CardStatus) -> CardStatus:
    _refuse_if_removed(s)
    if s.state is not CardState.LOCKED:
        raise _refuse("CARD_NOT_LOCKED", "the card is not locked")
    reason = LOCK_REASONS[s.lock_reason]
    if reason.irreversible:
        raise _refuse("CARD_LOCK_IRREVERSIBLE", f"a card locked as {reason.name} cannot be unlocked")
    return CardStatus(s.state_before_lock or CardState.ACTIVE)


def remove(s: CardStatus) -> CardStatus:
    _refuse_if_removed(s)
    return CardStatus(CardState.REMOVED)


def generated(s: CardStatus) -> CardStatus:
    if s.state is not CardState.PENDING:
        raise _refuse("CARD_NOT_PENDING", "only a PENDING card is generated")
    return CardStatus(CardState.ACTIVE)


def failed(s: CardStatus) -> CardStatus:
    if s.state is not CardState.PENDING:
        raise _refuse("CARD_NOT_PENDING", "only a PENDING card can fail generation")
    return CardStatus(CardState.FAILED)


def linked(s: CardStatus) -> CardStatus:
    if s.state is not CardState.ORDERED:
        raise _refuse("CARD_NOT_ORDERED", "only an ORDERED card is linked")
    return CardStatus(CardState.INACTIVE)


def usable_for_data(s: CardStatus) -> bool:
    """Whether full card data, CVV reset and PIN set may be used: the card exists for its holder."""
    return s.state in (CardState.ACTIVE, CardState.INACTIVE, CardState.LOCKED)


TRIVIAL_PINS_MIN, TRIVIAL_PINS_MAX = 4, 12


def pin_problem(pin: str) -> str | None:
    """Why a PIN is refused, or None: 4-12 digits, not one repeated digit, not a plain sequence."""
    if not pin.isdigit() or not TRIVIAL_PINS_MIN <= len(pin) <= TRIVIAL_PINS_MAX:
        return "the PIN must have 4 to 12 digits"
    if len(set(pin)) == 1:
        return "the PIN must not repeat one digit"
    steps = {(int(b) - int(a)) % 10 for a, b in zip(pin, pin[1:], strict=False)}
    if steps in ({1}, {9}):
        return "the PIN must not be a sequence"
    return None
