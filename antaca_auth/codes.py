"""Business reasons carried in a transfer's `code` (the ledger itself gives them no meaning)."""

from __future__ import annotations

import enum


class TransferCode(enum.IntEnum):
    BALANCE_RELOAD = 1  # a partner loads a user's or corporation's balance
    PARTNER_RELOAD = 2  # money arriving on a partner's deposit or credit balance
    CARD_PAYMENT_DEPOSIT = 10  # a card payment charged to the partner's deposit
    CARD_PAYMENT = 11  # a card payment on the user's balance (held, then cleared)
    CARD_REFUND = 12  # a merchant's refund to the card
    MONEY_TRANSFER = 13  # an outgoing (IBAN) transfer from a balance
    INTERNAL_TRANSFER = 14  # between two balances of a partner (user to user), each leg of it
    FEE_BALANCE_CREATION = 20  # fees: from the user's balance to the program's fee revenue
    FEE_CARD_CREATION = 21
    FEE_CARD_RECURRING = 22
    FEE_TRANSACTION = 23  # POS, e-commerce or ATM fee plus any conversion fee, held then posted
    FEE_MONEY_TRANSFER = 24
    FEE_REFUND = 29  # a fee given back (e.g. the creation fee of a card that could not be made)


def code_name(code: int) -> str:
    """The name of a code for statements; unknown codes show as numbers."""
    try:
        return TransferCode(code).name
    except ValueError:
        return str(code)
