"""Ledger accounts: kinds, balance counters and the balances derived from them."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

import msgspec

AMOUNT_MINOR_UNITS_MAX = 2**63 - 1  # PostgreSQL bigint; every counter and amount fits in it


class AccountKind(enum.StrEnum):
    USER_BALANCE = "user_balance"
    CORPORATE_BALANCE = "corporate_balance"
    PARTNER_DEPOSIT = "partner_deposit"
    PARTNER_CREDIT = "partner_credit"
    FEE_REVENUE = "fee_revenue"
    NETWORK_SETTLEMENT = "network_settlement"
    EXTERNAL_FUNDING = "external_funding"
    # What is owed to the issuer for a network's approved advice the card's funds did not cover.
    ADVICE_RECEIVABLE = "advice_receivable"
    # A partner's position in one currency: a converted transfer between its users' balances goes
    # in on the sender's currency's position and out of the receiver's (no funds limit).
    FX_POSITION = "fx_position"
    # A REMOTE program's partner (docs/ledger.md): its users' payments and fees are held and
    # posted here instead of on a user balance; what the partner owes grows on its debit side.
    PARTNER_REMOTE = "partner_remote"


# Which side an account's balance grows on. Money the issuer holds for someone (user and partner
# balances, revenue, amounts owed to the network) is credit-normal; the external funding account
# mirrors the bank account money arrives in, so it is debit-normal; so is the advice receivable
# (money owed to the issuer grows on its debit side).
DEBIT_NORMAL = frozenset({AccountKind.EXTERNAL_FUNDING, AccountKind.ADVICE_RECEIVABLE,
                          AccountKind.PARTNER_REMOTE})


class Counters(msgspec.Struct, frozen=True):
    """An account's four counters, in minor units."""

    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0


def posted_balance(kind: AccountKind, b: Counters) -> int:
    """Posted balance on the account's normal side."""
    if kind in DEBIT_NORMAL:
        return b.debits_posted - b.credits_posted
    return b.credits_posted - b.debits_posted


def available_balance(kind: AccountKind, b: Counters) -> int:
    """Posted balance less the pending transfers that would reduce it (holds)."""
    if kind in DEBIT_NORMAL:
        return b.debits_posted - b.credits_posted - b.credits_pending
    return credit_normal_available(b)


def credit_normal_available(b: Counters) -> int:
    """A credit-normal account's available balance (the SQL function of the same name,
    sql/0017_available_balance.sql): the ledger's answers give it for both sides of a transfer."""
    return b.credits_posted - b.debits_posted - b.debits_pending


class NewAccount(msgspec.Struct, frozen=True, kw_only=True):
    """An account to create; `id` is chosen by the caller and makes creation idempotent."""

    id: uuid.UUID
    currency: str
    kind: AccountKind
    owner_ref: str | None = None
    debits_must_not_exceed_credits: bool = False
    credits_must_not_exceed_debits: bool = False
    metadata: dict | None = None


class Account(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    currency: str
    kind: AccountKind
    owner_ref: str | None
    debits_must_not_exceed_credits: bool
    credits_must_not_exceed_debits: bool
    balance: Counters
    metadata: dict | None
    created_at: datetime

    @property
    def posted(self) -> int:
        return posted_balance(self.kind, self.balance)

    @property
    def available(self) -> int:
        return available_balance(self.kind, self.balance)


class AccountResultCode(enum.StrEnum):
    OK = "ok"
    EXISTS = "exists"
    EXISTS_WITH_DIFFERENT_FIELDS = "exists_with_different_fields"
    INVALID_ID = "invalid_id"
    ID_MUST_NOT_BE_ZERO = "id_must_not_be_zero"
    INVALID_CURRENCY = "invalid_currency"
    INVALID_KIND = "invalid_kind"
    FLAGS_ARE_MUTUALLY_EXCLUSIVE = "flags_are_mutually_exclusive"


class AccountResult(msgspec.Struct, frozen=True):
    index: int
    id: uuid.UUID | None
    code: AccountResultCode
