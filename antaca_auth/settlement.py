"""The network settlement accounts and the transfer codes of card payments (shared by the engine and
the follow-ups that clear or release what it held)."""

from __future__ import annotations

import functools
import uuid

from antaca_auth.codes import TransferCode

SETTLEMENT_NAMESPACE = uuid.UUID("3b8f2f64-6a0e-4f5e-9c59-5b7d2f9d8a10")


class TransferCodes:
    DEPOSIT_HOLD = TransferCode.CARD_PAYMENT_DEPOSIT
    USER_HOLD = TransferCode.CARD_PAYMENT
    REFUND = TransferCode.CARD_REFUND
    FEE = TransferCode.FEE_TRANSACTION


@functools.cache
def settlement_account(currency: str) -> uuid.UUID:
    """The network settlement account of a currency (one per currency, created on first use)."""
    return uuid.uuid5(SETTLEMENT_NAMESPACE, currency)


@functools.cache
def advice_receivable_account(currency: str) -> uuid.UUID:
    """The issuer's advice receivable of a currency: the holds of a network's approved advice that
    the card's own funds could not cover (one per currency, created on first use)."""
    return uuid.uuid5(SETTLEMENT_NAMESPACE, f"advice_receivable:{currency}")
