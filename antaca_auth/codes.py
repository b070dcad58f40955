"""Business reasons carried in a transfer's `code` (the ledger itself gives them no meaning)."""

from __future__ import annotations

import enum


class TransferCode(enum.IntEnum):
    BALANCE_RELOAD = 1  # a partner loads a user's or corporation's balance
    PARTNER_RELOAD = 2  # money arriving on a partner's deposit or credit balance
    CARD_PAYMENT_DEPOSIT = 10  # a card payment charged to the partner's deposit
    CARD_PAYMENT = 11  # a card payment on the user's balance (held, then cleared)
    CARD_REFUND = 12  # a merchant's refund to the card


def code_name(code: int) -> str:
    """The name of a code for statements; unknown codes show as numbers."""
    try:
        return TransferCode(code).name
    except ValueError:
        return str(code)
