"""Authorization decisions: the checks a card payment passes before money is held (pure logic).

Each decline carries its ISO 8583 response code (DE39) and, where the product defines one, its
four-digit failure action code. The ledger's answer (deposit and user funds) is mapped here too.
"""

from __future__ import annotations

import enum
import hmac
import uuid
from collections.abc import Container
from dataclasses import dataclass
from datetime import date
from typing import Annotated

import msgspec
from msgspec import Meta

from antaca_auth.cardkeys import CardKeys
from antaca_auth.cardstate import LOCK_REASONS, CardState

MAX_PIN_FAILURES = 3  # the third wrong PIN in a row locks the card (reason 6)


class TxType(enum.StrEnum):
    POS = "POS"
    ECOM = "ECOM"
    ATM = "ATM"
    REFUND = "REFUND"


MessageId = Annotated[str, Meta(min_length=1, max_length=64)]
Short = Annotated[str, Meta(min_length=1, max_length=64)]


class AuthorizationRequest(msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """What the card network sends (ISO 8583 fields by name)."""

    message_id: MessageId  # idempotency key, per network
    pan: Annotated[str, Meta(pattern=r"^[0-9]{13,19}$")]
    expiry: Annotated[str, Meta(pattern=r"^[0-9]{2}(0[1-9]|1[0-2])$", description="YYMM (DE14)")]
    amount: Annotated[int, Meta(gt=0, le=2**63 - 1, description="minor units")]
    currency: Annotated[str, Meta(pattern=r"^[A-Z]{3}$")]
    type: TxType
    cvc2: Annotated[str, Meta(pattern=r"^[0-9]{3,4}$")] | None = None
    pin: Annotated[str, Meta(pattern=r"^[0-9]{4,12}$")] | None = None
    mcc: Annotated[str, Meta(pattern=r"^[0-9]{4}$")] | None = None
    merchant_id: Short | None = None
    merchant_name: Annotated[str, Meta(max_length=100)] | None = None
    merchant_country: Annotated[str, Meta(pattern=r"^[A-Z]{2,3}$")] | None = None
    terminal_id: Short | None = None


@dataclass(frozen=True)
class Decline:
    response_code: str  # DE39
    reason: str
    action_code: str | None = None


UNKNOWN_CARD = Decline("14", "UNKNOWN_CARD")
CARD_REMOVED = Decline("57", "CARD_REMOVED")
CARD_NOT_ACTIVE = Decline("57", "CARD_NOT_ACTIVATED")
EXPIRED_CARD = Decline("54", "EXPIRED_CARD")
WRONG_EXPIRY = Decline("54", "WRONG_EXPIRY")
WRONG_CVC2 = Decline("N7", "WRONG_CVC2")
PIN_REQUIRED = Decline("55", "PIN_REQUIRED")
WRONG_PIN = Decline("55", "WRONG_PIN")
PIN_TRIES_EXCEEDED = Decline("75", "PIN_TRIES_EXCEEDED", "1006")
BALANCE_BLOCKED = Decline("62", "BALANCE_BLOCKED")
INSUFFICIENT_FUNDS = Decline("51", "INSUFFICIENT_FUNDS")
INSUFFICIENT_DEPOSIT = Decline("51", "INSUFFICIENT_PARTNER_DEPOSIT")
CURRENCY_NOT_SUPPORTED = Decline("57", "CURRENCY_NOT_SUPPORTED")
INVALID_AMOUNT = Decline("13", "INVALID_AMOUNT")

# DE39 for each lock reason: lost 41, stolen 43, the others a restricted card.
LOCK_RESPONSE = {1: "41", 2: "43", 6: "75", 11: "75"}


def locked(reason: int) -> Decline:
    info = LOCK_REASONS[reason]
    return Decline(LOCK_RESPONSE.get(reason, "62"), f"CARD_LOCKED_{info.name}", info.action_code)


@dataclass(frozen=True)
class CardFacts:
    """What the engine reads about a card for a decision."""

    card_id: uuid.UUID
    state: CardState
    lock_reason: int | None
    expiry: str  # YYMM
    cvc_counter: int
    pin_salt: bytes | None
    pin_verification: bytes | None
    pin_failures: int
    program_currency: str
    funding_model: str
    balance_id: uuid.UUID
    balance_state: str
    user_account: uuid.UUID
    deposit_account: uuid.UUID | None


@dataclass(frozen=True)
class CardCheck:
    """The outcome of the card checks: a decline or None, and the card's PIN failure count after it."""

    decline: Decline | None
    pin_failures: int
    lock_now: bool = False  # the third wrong PIN: lock the card with reason 6


def expired(expiry: str, today: date) -> bool:
    """A card is valid to the last day of its expiry month."""
    year, month = 2000 + int(expiry[:2]), int(expiry[2:])
    return (today.year, today.month) > (year, month)


def check_card(request: AuthorizationRequest, card: CardFacts | None, keys: CardKeys, today: date,
               convertible: Container[tuple[str, str]] = ()) -> CardCheck:
    """Every check before money: card, expiry, CVC2, PIN, balance, currency; in the product's order.

    A payment in another currency than the program's passes when `convertible` has a rate for it.
    """
    if card is None:
        return CardCheck(UNKNOWN_CARD, 0)
    failures = card.pin_failures
    if card.state is CardState.REMOVED:
        return CardCheck(CARD_REMOVED, failures)
    if card.state is CardState.LOCKED:
        return CardCheck(locked(card.lock_reason), failures)
    if card.state is not CardState.ACTIVE:
        return CardCheck(CARD_NOT_ACTIVE, failures)
    if not hmac.compare_digest(request.expiry, card.expiry):
        return CardCheck(WRONG_EXPIRY, failures)
    if expired(card.expiry, today):
        return CardCheck(EXPIRED_CARD, failures)
    if request.cvc2 is not None and not keys.cvc2_matches(request.pan, card.expiry, card.cvc_counter, request.cvc2):
        return CardCheck(WRONG_CVC2, failures)
    if request.type is TxType.ATM and request.pin is None:
        return CardCheck(PIN_REQUIRED, failures)
    if request.pin is not None:
        if card.pin_verification is None or not keys.pin_matches(card.card_id, request.pin, card.pin_salt,
                                                                 card.pin_verification):
            failures += 1
            if failures >= MAX_PIN_FAILURES:
                return CardCheck(PIN_TRIES_EXCEEDED, failures, lock_now=True)
            return CardCheck(WRONG_PIN, failures)
        failures = 0
    if card.balance_state != "ACTIVE":
        return CardCheck(BALANCE_BLOCKED, failures)
    if request.currency != card.program_currency and (request.currency, card.program_currency) not in convertible:
        return CardCheck(CURRENCY_NOT_SUPPORTED, failures)
    return CardCheck(None, failures)
