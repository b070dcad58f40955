"""Pure decision logic of the ledger: given a batch and the state it touches, decide every transfer.

No I/O here. The repository (`ledger.py`) locks the accounts, loads the state this module needs,
calls `decide_batch`, and writes what it returns in the same database transaction.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from antaca_auth.accounts import MAX_AMOUNT, Balance
from antaca_auth.transfers import (
    MAX_CODE,
    MAX_REFERENCE,
    MAX_TIMEOUT,
    RESOLVING_KINDS,
    ResultCode,
    StoredTransfer,
    Transfer,
    TransferKind,
    TransferResult,
)

_CURRENCY = re.compile(r"^[A-Z]{3}$")
_SUCCESS = (ResultCode.OK, ResultCode.EXISTS)


@dataclass(slots=True)
class AccountState:
    """An account's counters while a batch is decided (the row is locked meanwhile)."""

    id: uuid.UUID
    currency: str
    debits_must_not_exceed_credits: bool
    credits_must_not_exceed_debits: bool
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int

    def balance(self) -> Balance:
        return Balance(self.debits_posted, self.credits_posted, self.debits_pending, self.credits_pending)

    def restore(self, b: Balance) -> None:
        self.debits_posted, self.credits_posted = b.debits_posted, b.credits_posted
        self.debits_pending, self.credits_pending = b.debits_pending, b.credits_pending


@dataclass
class BatchOutcome:
    """What to write for a decided batch."""

    results: list[TransferResult]
    inserts: list[StoredTransfer]
    accounts: list[AccountState]  # accounts whose counters changed, with their final values
    expiries_added: dict[uuid.UUID, datetime] = field(default_factory=dict)
    expiries_removed: set[uuid.UUID] = field(default_factory=set)


def is_id(value: object) -> bool:
    return isinstance(value, uuid.UUID)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_request(t: Transfer, *, allow_expire: bool = False) -> ResultCode | None:
    """Validate a transfer on its own, without the ledger's state; None when well-formed."""
    if not is_id(t.id):
        return ResultCode.INVALID_ID
    if t.id.int == 0:
        return ResultCode.ID_MUST_NOT_BE_ZERO
    if not isinstance(t.kind, TransferKind) or (t.kind is TransferKind.EXPIRE_PENDING and not allow_expire):
        return ResultCode.INVALID_KIND
    if not _is_int(t.code) or not 1 <= t.code <= MAX_CODE:
        return ResultCode.INVALID_CODE
    if t.reference is not None and (not isinstance(t.reference, str) or len(t.reference) > MAX_REFERENCE):
        return ResultCode.REFERENCE_TOO_LONG
    if not _is_int(t.timeout) or not 0 <= t.timeout <= MAX_TIMEOUT:
        return ResultCode.INVALID_TIMEOUT
    if t.timeout and t.kind is not TransferKind.PENDING:
        return ResultCode.TIMEOUT_RESERVED_FOR_PENDING
    if t.kind in RESOLVING_KINDS:
        if t.pending_id is None:
            return ResultCode.MISSING_FIELD
        if not is_id(t.pending_id):
            return ResultCode.PENDING_NOT_FOUND
        if t.pending_id == t.id:
            return ResultCode.PENDING_ID_MUST_DIFFER
    else:
        if t.pending_id is not None:
            return ResultCode.PENDING_ID_MUST_BE_ABSENT
        if t.debit_account_id is None or t.credit_account_id is None or t.amount is None or t.currency is None:
            return ResultCode.MISSING_FIELD
    if t.amount is not None:
        if not _is_int(t.amount) or t.amount <= 0:
            return ResultCode.AMOUNT_MUST_BE_POSITIVE
        if t.amount > MAX_AMOUNT:
            return ResultCode.AMOUNT_TOO_LARGE
    if t.currency is not None and (not isinstance(t.currency, str) or not _CURRENCY.match(t.currency)):
        return ResultCode.INVALID_CURRENCY
    for account_id in (t.debit_account_id, t.credit_account_id):
        if account_id is not None and not is_id(account_id):
            return ResultCode.ACCOUNT_NOT_FOUND
    if t.debit_account_id is not None and t.debit_account_id == t.credit_account_id:
        return ResultCode.ACCOUNTS_MUST_DIFFER
    return None


def same_fields(t: Transfer, s: StoredTransfer, pending_amount: int | None) -> bool:
    """Whether a replayed request asks for exactly what `s` did (omitted derived fields match)."""
    if t.kind != s.kind or t.code != s.code or t.timeout != s.timeout:
        return False
    if t.reference != s.reference or t.metadata != s.metadata:
        return False
    for name in ("debit_account_id", "credit_account_id", "currency", "amount", "pending_id"):
        requested = getattr(t, name)
        if requested is not None and requested != getattr(s, name):
            return False
    if t.kind is TransferKind.POST_PENDING and t.amount is None:
        return s.amount == pending_amount  # "post in full" matches only a full post
    return True


class _Batch:
    """Decides one batch in order; a linked chain that fails is undone through the undo log."""

    def __init__(
        self,
        accounts: Mapping[uuid.UUID, AccountState],
        known: Mapping[uuid.UUID, StoredTransfer],
        resolved: Mapping[uuid.UUID, TransferKind],
        now: datetime,
        allow_expire: bool,
    ) -> None:
        self.accounts = accounts
        self.known = known
        self.resolved = dict(resolved)
        self.now = now
        self.allow_expire = allow_expire
        self.created: dict[uuid.UUID, StoredTransfer] = {}
        self.expiries_added: dict[uuid.UUID, datetime] = {}
        self.expiries_removed: set[uuid.UUID] = set()
        self.undo: list[Callable[[], None]] = []

    def lookup(self, transfer_id: uuid.UUID) -> StoredTransfer | None:
        found = self.created.get(transfer_id)
        return found if found is not None else self.known.get(transfer_id)

    def decide(self, index: int, t: Transfer) -> TransferResult:
        bad = check_request(t, allow_expire=self.allow_expire)
        if bad is not None:
            return TransferResult(index, t.id, bad)
        existing = self.lookup(t.id)
        if existing is not None:
            pending = self.lookup(existing.pending_id) if existing.pending_id else None
            if not same_fields(t, existing, pending.amount if pending else None):
                return TransferResult(index, t.id, ResultCode.EXISTS_WITH_DIFFERENT_FIELDS)
            return TransferResult(
                index, t.id, ResultCode.EXISTS, existing.debit_balance, existing.credit_balance, existing.created_at
            )
        if t.kind in RESOLVING_KINDS:
            return self._resolve(index, t)
        dr = self.accounts.get(t.debit_account_id)
        cr = self.accounts.get(t.credit_account_id)
        if dr is None or cr is None:
            return TransferResult(index, t.id, ResultCode.ACCOUNT_NOT_FOUND)
        if t.currency != dr.currency or t.currency != cr.currency:
            return TransferResult(index, t.id, ResultCode.CURRENCY_MISMATCH)
        if t.kind is TransferKind.SINGLE:
            deltas = (t.amount, 0, t.amount, 0)
        else:
            deltas = (0, t.amount, 0, t.amount)
        expires_at = self.now + timedelta(seconds=t.timeout) if t.timeout else None
        return self._apply(index, t, dr, cr, deltas, t.amount, t.currency, expires_at, None)

    def _resolve(self, index: int, t: Transfer) -> TransferResult:
        p = self.lookup(t.pending_id)
        if p is None:
            return TransferResult(index, t.id, ResultCode.PENDING_NOT_FOUND)
        if p.kind is not TransferKind.PENDING:
            return TransferResult(index, t.id, ResultCode.NOT_PENDING)
        if t.debit_account_id not in (None, p.debit_account_id) or t.credit_account_id not in (
            None,
            p.credit_account_id,
        ):
            return TransferResult(index, t.id, ResultCode.PENDING_HAS_DIFFERENT_ACCOUNTS)
        if t.currency not in (None, p.currency):
            return TransferResult(index, t.id, ResultCode.CURRENCY_MISMATCH)
        resolution = self.resolved.get(p.id)
        if resolution is TransferKind.EXPIRE_PENDING:
            return TransferResult(index, t.id, ResultCode.PENDING_EXPIRED)
        if resolution is not None:
            return TransferResult(index, t.id, ResultCode.PENDING_ALREADY_RESOLVED)
        due = p.expires_at is not None and self.now >= p.expires_at
        if t.kind is TransferKind.EXPIRE_PENDING:
            assert due, "the sweeper expires only holds whose timeout has passed"
        elif due:
            return TransferResult(index, t.id, ResultCode.PENDING_EXPIRED)
        amount = p.amount if t.amount is None else t.amount
        if amount > p.amount:
            return TransferResult(index, t.id, ResultCode.AMOUNT_EXCEEDS_PENDING)
        if t.kind is not TransferKind.POST_PENDING and amount != p.amount:
            return TransferResult(index, t.id, ResultCode.AMOUNT_MUST_MATCH_PENDING)
        dr = self.accounts.get(p.debit_account_id)
        cr = self.accounts.get(p.credit_account_id)
        if dr is None or cr is None:
            return TransferResult(index, t.id, ResultCode.ACCOUNT_NOT_FOUND)
        posted = amount if t.kind is TransferKind.POST_PENDING else 0
        deltas = (posted, -p.amount, posted, -p.amount)
        return self._apply(index, t, dr, cr, deltas, amount, p.currency, None, p)

    def _apply(
        self,
        index: int,
        t: Transfer,
        dr: AccountState,
        cr: AccountState,
        deltas: tuple[int, int, int, int],
        amount: int,
        currency: str,
        expires_at: datetime | None,
        pending: StoredTransfer | None,
    ) -> TransferResult:
        dr_posted, dr_pending, cr_posted, cr_pending = deltas
        new_dp, new_dpe = dr.debits_posted + dr_posted, dr.debits_pending + dr_pending
        new_cp, new_cpe = cr.credits_posted + cr_posted, cr.credits_pending + cr_pending
        if max(new_dp, new_dpe, new_dp + new_dpe) > MAX_AMOUNT:
            return TransferResult(index, t.id, ResultCode.OVERFLOWS_DEBITS)
        if max(new_cp, new_cpe, new_cp + new_cpe) > MAX_AMOUNT:
            return TransferResult(index, t.id, ResultCode.OVERFLOWS_CREDITS)
        if dr.debits_must_not_exceed_credits and new_dp + new_dpe > dr.credits_posted:
            return TransferResult(index, t.id, ResultCode.EXCEEDS_CREDITS)
        if cr.credits_must_not_exceed_debits and new_cp + new_cpe > cr.debits_posted:
            return TransferResult(index, t.id, ResultCode.EXCEEDS_DEBITS)
        assert min(new_dp, new_dpe, new_cp, new_cpe) >= 0, "counters never go below zero"

        before_dr, before_cr = dr.balance(), cr.balance()
        dr.debits_posted, dr.debits_pending = new_dp, new_dpe
        cr.credits_posted, cr.credits_pending = new_cp, new_cpe
        row = StoredTransfer(
            id=t.id,
            kind=t.kind,
            debit_account_id=dr.id,
            credit_account_id=cr.id,
            amount=amount,
            currency=currency,
            pending_id=t.pending_id,
            timeout=t.timeout,
            expires_at=expires_at,
            code=t.code,
            reference=t.reference,
            metadata=t.metadata,
            created_at=self.now,
            debit_balance=dr.balance(),
            credit_balance=cr.balance(),
        )
        self.created[t.id] = row

        def undo_apply() -> None:
            dr.restore(before_dr)
            cr.restore(before_cr)
            del self.created[t.id]

        self.undo.append(undo_apply)
        if expires_at is not None:
            self.expiries_added[t.id] = expires_at
            self.undo.append(lambda: self.expiries_added.pop(t.id))
        if pending is not None:
            self.resolved[pending.id] = t.kind
            self.undo.append(lambda: self.resolved.pop(pending.id))
            if pending.id in self.expiries_added:
                added = self.expiries_added.pop(pending.id)
                self.undo.append(lambda: self.expiries_added.__setitem__(pending.id, added))
            elif pending.expires_at is not None:
                self.expiries_removed.add(pending.id)
                self.undo.append(lambda: self.expiries_removed.discard(pending.id))
        return TransferResult(index, t.id, ResultCode.OK, row.debit_balance, row.credit_balance, self.now)

    def rollback(self, mark: int) -> None:
        while len(self.undo) > mark:
            self.undo.pop()()


def decide_batch(
    transfers: Sequence[Transfer],
    accounts: Mapping[uuid.UUID, AccountState],
    known: Mapping[uuid.UUID, StoredTransfer],
    resolved: Mapping[uuid.UUID, TransferKind],
    now: datetime,
    *,
    allow_expire: bool = False,
) -> BatchOutcome:
    """Decide every transfer of a batch, in order, against locked account state.

    `known` holds stored transfers whose ids the batch names (its own ids and pending ids);
    `resolved` maps a pending id to the kind of transfer that already resolved it.
    `accounts` is updated in place.
    """
    initial = {account_id: state.balance() for account_id, state in accounts.items()}
    batch = _Batch(accounts, known, resolved, now, allow_expire)
    results: list[TransferResult | None] = [None] * len(transfers)
    i, n = 0, len(transfers)
    while i < n:
        end = i
        while end < n - 1 and transfers[end].linked:
            end += 1
        chain_open = bool(transfers[end].linked)
        mark = len(batch.undo)
        failed_at = None
        for k in range(i, end + 1):
            results[k] = batch.decide(k, transfers[k])
            if results[k].code not in _SUCCESS:
                failed_at = k
                break
        if chain_open or (failed_at is not None and end > i):
            batch.rollback(mark)
            for k in range(i, end + 1):
                if k != failed_at:
                    results[k] = TransferResult(k, transfers[k].id, ResultCode.LINKED_EVENT_FAILED)
            if chain_open and failed_at is None:
                results[end] = TransferResult(end, transfers[end].id, ResultCode.LINKED_EVENT_CHAIN_OPEN)
        i = end + 1
    changed = [state for account_id, state in accounts.items() if state.balance() != initial[account_id]]
    return BatchOutcome(
        results=results,  # type: ignore[arg-type]
        inserts=list(batch.created.values()),
        accounts=changed,
        expiries_added=batch.expiries_added,
        expiries_removed=batch.expiries_removed,
    )
