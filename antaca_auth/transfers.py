"""Transfers: what a client asks for, what the ledger stores, and the typed result of each."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

import msgspec

from antaca_auth.accounts import Counters


class TransferKind(enum.StrEnum):
    SINGLE = "single"  # posted at once
    PENDING = "pending"  # a hold: reserves funds on both accounts
    POST_PENDING = "post_pending"  # captures a pending transfer, fully or partly
    VOID_PENDING = "void_pending"  # releases a pending transfer
    EXPIRE_PENDING = "expire_pending"  # written only by the ledger's expiry sweeper


RESOLVING_KINDS = frozenset({TransferKind.POST_PENDING, TransferKind.VOID_PENDING, TransferKind.EXPIRE_PENDING})

MAX_CODE = 65535
MAX_TIMEOUT = 2**31 - 1  # seconds
MAX_REFERENCE = 256


class Transfer(msgspec.Struct, frozen=True, kw_only=True):
    """A transfer request. `id` is chosen by the client: replaying it is idempotent.

    For post/void, accounts, currency and amount may be omitted: they come from the pending
    transfer (an omitted amount posts it in full). `linked` chains this transfer to the next
    one in the batch: the chain commits whole or not at all.
    """

    id: uuid.UUID
    code: int
    kind: TransferKind = TransferKind.SINGLE
    debit_account_id: uuid.UUID | None = None
    credit_account_id: uuid.UUID | None = None
    amount: int | None = None
    currency: str | None = None
    pending_id: uuid.UUID | None = None
    timeout: int = 0
    reference: str | None = None
    metadata: dict[str, Any] | None = None
    linked: bool = False


class StoredTransfer(msgspec.Struct, frozen=True, kw_only=True):
    """A committed transfer row, with both accounts' counters right after it."""

    id: uuid.UUID
    kind: TransferKind
    debit_account_id: uuid.UUID
    credit_account_id: uuid.UUID
    amount: int
    currency: str
    pending_id: uuid.UUID | None
    timeout: int
    expires_at: datetime | None
    code: int
    reference: str | None
    metadata: dict[str, Any] | None
    created_at: datetime
    debit_counters: Counters
    credit_counters: Counters


class ResultCode(enum.StrEnum):
    OK = "ok"
    EXISTS = "exists"
    EXISTS_WITH_DIFFERENT_FIELDS = "exists_with_different_fields"
    LINKED_EVENT_FAILED = "linked_event_failed"
    LINKED_EVENT_CHAIN_OPEN = "linked_event_chain_open"
    # malformed requests
    INVALID_ID = "invalid_id"
    ID_MUST_NOT_BE_ZERO = "id_must_not_be_zero"
    INVALID_KIND = "invalid_kind"
    MISSING_FIELD = "missing_field"
    AMOUNT_MUST_BE_POSITIVE = "amount_must_be_positive"
    AMOUNT_TOO_LARGE = "amount_too_large"
    INVALID_CURRENCY = "invalid_currency"
    INVALID_CODE = "invalid_code"
    INVALID_TIMEOUT = "invalid_timeout"
    TIMEOUT_RESERVED_FOR_PENDING = "timeout_reserved_for_pending"
    PENDING_ID_MUST_BE_ABSENT = "pending_id_must_be_absent"
    PENDING_ID_MUST_DIFFER = "pending_id_must_differ"
    REFERENCE_TOO_LONG = "reference_too_long"
    ACCOUNTS_MUST_DIFFER = "accounts_must_differ"
    # against the ledger's state
    ACCOUNT_NOT_FOUND = "account_not_found"
    CURRENCY_MISMATCH = "currency_mismatch"
    PENDING_NOT_FOUND = "pending_not_found"
    NOT_PENDING = "not_pending"
    PENDING_HAS_DIFFERENT_ACCOUNTS = "pending_has_different_accounts"
    PENDING_ALREADY_RESOLVED = "pending_already_resolved"
    PENDING_EXPIRED = "pending_expired"
    AMOUNT_EXCEEDS_PENDING = "amount_exceeds_pending"
    AMOUNT_MUST_MATCH_PENDING = "amount_must_match_pending"  # a void releases the whole hold
    OVERFLOWS_DEBITS = "overflows_debits"
    OVERFLOWS_CREDITS = "overflows_credits"
    EXCEEDS_CREDITS = "exceeds_credits"
    EXCEEDS_DEBITS = "exceeds_debits"


class TransferResult(msgspec.Struct, frozen=True):
    """The outcome of one transfer of a batch; balances are set for `ok` and `exists`."""

    index: int
    id: Any
    code: ResultCode
    debit_counters: Counters | None = None
    credit_counters: Counters | None = None
    created_at: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.code is ResultCode.OK
