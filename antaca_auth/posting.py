"""Pure decision logic of the ledger: given a batch and the state it touches, decide every transfer.

No I/O here. The repository (`ledger.py`) locks the accounts, loads the state this module needs,
calls `decide_batch`, and writes what it returns in the same database transaction.

This is the hot path of the authorization engine (a batch of 512 authorizations is 1,024
transfers), so it avoids per-transfer objects it does not need: a new transfer becomes one
plain tuple in `ROW_COLUMNS` order (what `ledger.py` copies into `transfers`), and a linked
chain is undone from a log of plain tuples rather than closures.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import msgspec

from antaca_auth.accounts import AMOUNT_MINOR_UNITS_MAX, Counters
from antaca_auth.invariants import require
from antaca_auth.transfers import (
    MAX_CODE,
    MAX_REFERENCE,
    MAX_TIMEOUT,
    ResultCode,
    StoredTransfer,
    Transfer,
    TransferKind,
    TransferResult,
)

_CURRENCY = re.compile(r"^[A-Z]{3}$")
_GOOD_CURRENCIES: set[str] = set()  # strings that matched _CURRENCY already
_SUCCESS = (ResultCode.OK, ResultCode.EXISTS)

# The columns of a new `transfers` row, in the order of the tuples in `BatchOutcome.inserts`.
ROW_COLUMNS = (
    "id", "kind", "debit_account_id", "credit_account_id", "amount", "currency", "pending_id", "timeout",
    "expires_at", "code", "reference", "metadata", "created_at",
    "dr_debits_posted", "dr_credits_posted", "dr_debits_pending", "dr_credits_pending",
    "cr_debits_posted", "cr_credits_posted", "cr_debits_pending", "cr_credits_pending",
)  # fmt: skip


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

    def balance(self) -> Counters:
        return Counters(self.debits_posted, self.credits_posted, self.debits_pending, self.credits_pending)

    def restore(self, b: Counters) -> None:
        self.debits_posted, self.credits_posted = b.debits_posted, b.credits_posted
        self.debits_pending, self.credits_pending = b.debits_pending, b.credits_pending


@dataclass
class BatchOutcome:
    """What to write for a decided batch."""

    results: list[TransferResult]
    inserts: list[tuple]  # new transfers rows, in decision order, columns as in ROW_COLUMNS
    accounts: list[AccountState]  # accounts whose counters changed, with their final values
    # New holds with a timeout, with their expiry (a hold resolved in the same batch is not here).
    expiries_added: list[tuple[uuid.UUID, datetime]] = field(default_factory=list)


_UUID = uuid.UUID


def is_id(value: object) -> bool:
    return isinstance(value, _UUID)


def _is_int(value: object) -> bool:
    return value.__class__ is int or (isinstance(value, int) and not isinstance(value, bool))


_SINGLE = TransferKind.SINGLE
_PENDING = TransferKind.PENDING
_POST = TransferKind.POST_PENDING
_VOID = TransferKind.VOID_PENDING
_EXPIRE = TransferKind.EXPIRE_PENDING
_encode_json = msgspec.json.Encoder().encode
_OK = ResultCode.OK
_NOT_ZERO = ResultCode.ID_MUST_NOT_BE_ZERO


def check_request(t: Transfer, *, allow_expire: bool = False) -> ResultCode | None:
    """Validate a transfer on its own, without the ledger's state; None when well-formed."""
    tid = t.id
    if not isinstance(tid, _UUID):
        return ResultCode.INVALID_ID
    if tid.int == 0:
        return _NOT_ZERO
    kind = t.kind
    if not isinstance(kind, TransferKind) or (kind is _EXPIRE and not allow_expire):
        return ResultCode.INVALID_KIND
    code = t.code
    if not (code.__class__ is int or _is_int(code)) or not 1 <= code <= MAX_CODE:
        return ResultCode.INVALID_CODE
    reference = t.reference
    if reference is not None and (not isinstance(reference, str) or len(reference) > MAX_REFERENCE):
        return ResultCode.REFERENCE_TOO_LONG
    timeout = t.timeout
    if not (timeout.__class__ is int or _is_int(timeout)) or not 0 <= timeout <= MAX_TIMEOUT:
        return ResultCode.INVALID_TIMEOUT
    if timeout and kind is not _PENDING:
        return ResultCode.TIMEOUT_RESERVED_FOR_PENDING
    dr, cr, amount, currency = t.debit_account_id, t.credit_account_id, t.amount, t.currency
    if kind is _POST or kind is _VOID or kind is _EXPIRE:
        pending_id = t.pending_id
        if pending_id is None:
            return ResultCode.MISSING_FIELD
        if not isinstance(pending_id, _UUID):
            return ResultCode.PENDING_NOT_FOUND
        if pending_id == tid:
            return ResultCode.PENDING_ID_MUST_DIFFER
    else:
        if t.pending_id is not None:
            return ResultCode.PENDING_ID_MUST_BE_ABSENT
        if dr is None or cr is None or amount is None or currency is None:
            return ResultCode.MISSING_FIELD
    if amount is not None:
        if not (amount.__class__ is int or _is_int(amount)) or amount <= 0:
            return ResultCode.AMOUNT_MUST_BE_POSITIVE
        if amount > AMOUNT_MINOR_UNITS_MAX:
            return ResultCode.AMOUNT_TOO_LARGE
    if currency is not None and not (currency.__class__ is str and currency in _GOOD_CURRENCIES):
        if not isinstance(currency, str) or not _CURRENCY.match(currency):
            return ResultCode.INVALID_CURRENCY
        if currency.__class__ is str:
            _GOOD_CURRENCIES.add(currency)  # bounded: only strings that match _CURRENCY
    if (dr is not None and not isinstance(dr, _UUID)) or (cr is not None and not isinstance(cr, _UUID)):
        return ResultCode.ACCOUNT_NOT_FOUND
    if dr is not None and cr is not None and dr.int == cr.int:
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


def _stored(row: tuple, metadata: dict | None, debit_counters: Counters, credit_counters: Counters) -> StoredTransfer:
    """A transfer created earlier in this batch, as it will be stored."""
    return StoredTransfer(
        id=row[0],
        kind=row[1],
        debit_account_id=row[2],
        credit_account_id=row[3],
        amount=row[4],
        currency=row[5],
        pending_id=row[6],
        timeout=row[7],
        expires_at=row[8],
        code=row[9],
        reference=row[10],
        metadata=metadata,
        created_at=row[12],
        debit_counters=debit_counters,
        credit_counters=credit_counters,
    )


# Undo log operations (a failed linked chain is rolled back by replaying its log backwards).
_U_COUNTERS, _U_CREATED, _U_EXPIRY_ADDED, _U_RESOLVED, _U_EXPIRY_READDED = range(5)


class _Batch:
    """Decides one batch in order; a linked chain that fails is undone through the undo log.

    Dictionaries are keyed by `uuid.int`: the standard library's UUID hashes in Python code,
    an int in C, and the batch looks ids up several times per transfer.
    """

    def __init__(
        self,
        accounts: Mapping[uuid.UUID, AccountState],
        known: Mapping[uuid.UUID, StoredTransfer],
        resolved: Mapping[uuid.UUID, TransferKind],
        now: datetime,
        allow_expire: bool,
    ) -> None:
        self.accounts = {account_id.int: state for account_id, state in accounts.items()}
        # Stored transfers the batch names, then every transfer the batch creates. A created one
        # is kept as (row, metadata, debit balance, credit balance) until someone looks it up.
        self.seen: dict[int, StoredTransfer | tuple] = {transfer_id.int: s for transfer_id, s in known.items()}
        self.resolved = {pending_id.int: kind for pending_id, kind in resolved.items()}
        self.now = now
        self.allow_expire = allow_expire
        self.rows: list[tuple] = []
        self.expiries_added: dict[int, tuple[uuid.UUID, datetime]] = {}
        self.undo: list[tuple] = []
        self.initial: dict[int, tuple[AccountState, int, int, int, int]] = {}  # by id(state): first counters
        self._expiry: dict[int, datetime] = {}

    def lookup(self, transfer_id: uuid.UUID) -> StoredTransfer | None:
        found = self.seen.get(transfer_id.int)
        if found.__class__ is tuple:
            return _stored(*found)
        return found

    def decide(self, index: int, t: Transfer) -> TransferResult:
        bad = check_request(t, allow_expire=self.allow_expire)
        if bad is not None:
            return TransferResult(index, t.id, bad)
        tid = t.id
        if tid.int in self.seen:
            existing = self.lookup(tid)
            pending = self.lookup(existing.pending_id) if existing.pending_id else None
            if not same_fields(t, existing, pending.amount if pending else None):
                return TransferResult(index, tid, ResultCode.EXISTS_WITH_DIFFERENT_FIELDS)
            return TransferResult(
                index, tid, ResultCode.EXISTS, existing.debit_counters, existing.credit_counters, existing.created_at
            )
        kind = t.kind
        if kind is _POST or kind is _VOID or kind is _EXPIRE:
            return self._resolve(index, t)
        accounts = self.accounts
        dr = accounts.get(t.debit_account_id.int)
        cr = accounts.get(t.credit_account_id.int)
        if dr is None or cr is None:
            return TransferResult(index, tid, ResultCode.ACCOUNT_NOT_FOUND)
        currency = t.currency
        if currency != dr.currency or currency != cr.currency:
            return TransferResult(index, tid, ResultCode.CURRENCY_MISMATCH)
        amount = t.amount
        timeout = t.timeout
        if timeout:
            expires_at = self._expiry.get(timeout)
            if expires_at is None:
                expires_at = self._expiry[timeout] = self.now + timedelta(seconds=timeout)
        else:
            expires_at = None
        if kind is _SINGLE:
            return self._apply(index, t, dr, cr, amount, 0, amount, 0, amount, currency, expires_at, None)
        return self._apply(index, t, dr, cr, 0, amount, 0, amount, amount, currency, expires_at, None)

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
        resolution = self.resolved.get(p.id.int)
        if resolution is TransferKind.EXPIRE_PENDING:
            return TransferResult(index, t.id, ResultCode.PENDING_EXPIRED)
        if resolution is not None:
            return TransferResult(index, t.id, ResultCode.PENDING_ALREADY_RESOLVED)
        due = p.expires_at is not None and self.now >= p.expires_at
        if t.kind is TransferKind.EXPIRE_PENDING:
            require(due, "the sweeper expires only holds whose timeout has passed")
        elif due:
            return TransferResult(index, t.id, ResultCode.PENDING_EXPIRED)
        amount = p.amount if t.amount is None else t.amount
        if amount > p.amount:
            return TransferResult(index, t.id, ResultCode.AMOUNT_EXCEEDS_PENDING)
        if t.kind is not TransferKind.POST_PENDING and amount != p.amount:
            return TransferResult(index, t.id, ResultCode.AMOUNT_MUST_MATCH_PENDING)
        dr = self.accounts.get(p.debit_account_id.int)
        cr = self.accounts.get(p.credit_account_id.int)
        if dr is None or cr is None:
            return TransferResult(index, t.id, ResultCode.ACCOUNT_NOT_FOUND)
        posted = amount if t.kind is TransferKind.POST_PENDING else 0
        return self._apply(index, t, dr, cr, posted, -p.amount, posted, -p.amount, amount, p.currency, None, p)

    def _apply(
        self,
        index: int,
        t: Transfer,
        dr: AccountState,
        cr: AccountState,
        dr_posted: int,
        dr_pending: int,
        cr_posted: int,
        cr_pending: int,
        amount: int,
        currency: str,
        expires_at: datetime | None,
        pending: StoredTransfer | None,
    ) -> TransferResult:
        d_dp, d_cp, d_dpe, d_cpe = dr.debits_posted, dr.credits_posted, dr.debits_pending, dr.credits_pending
        c_dp, c_cp, c_dpe, c_cpe = cr.debits_posted, cr.credits_posted, cr.debits_pending, cr.credits_pending
        new_dp, new_dpe = d_dp + dr_posted, d_dpe + dr_pending
        new_cp, new_cpe = c_cp + cr_posted, c_cpe + cr_pending
        if new_dp + new_dpe > AMOUNT_MINOR_UNITS_MAX or new_dp > AMOUNT_MINOR_UNITS_MAX or new_dpe > AMOUNT_MINOR_UNITS_MAX:
            return TransferResult(index, t.id, ResultCode.OVERFLOWS_DEBITS)
        if new_cp + new_cpe > AMOUNT_MINOR_UNITS_MAX or new_cp > AMOUNT_MINOR_UNITS_MAX or new_cpe > AMOUNT_MINOR_UNITS_MAX:
            return TransferResult(index, t.id, ResultCode.OVERFLOWS_CREDITS)
        if dr.debits_must_not_exceed_credits and new_dp + new_dpe > d_cp:
            return TransferResult(index, t.id, ResultCode.EXCEEDS_CREDITS)
        if cr.credits_must_not_exceed_debits and new_cp + new_cpe > c_dp:
            return TransferResult(index, t.id, ResultCode.EXCEEDS_DEBITS)
        require(new_dp >= 0 and new_dpe >= 0 and new_cp >= 0 and new_cpe >= 0,
                "counters never go below zero")

        initial, undo = self.initial, self.undo
        key = id(dr)
        if key not in initial:
            initial[key] = (dr, d_dp, d_cp, d_dpe, d_cpe)
        key = id(cr)
        if key not in initial:
            initial[key] = (cr, c_dp, c_cp, c_dpe, c_cpe)
        undo.append((_U_COUNTERS, dr, d_dp, d_cp, d_dpe, d_cpe))
        undo.append((_U_COUNTERS, cr, c_dp, c_cp, c_dpe, c_cpe))
        dr.debits_posted = new_dp
        dr.debits_pending = new_dpe
        cr.credits_posted = new_cp
        cr.credits_pending = new_cpe
        tid = t.id
        key = tid.int
        now = self.now
        metadata = t.metadata
        row = (
            tid, t.kind, dr.id, cr.id, amount, currency, t.pending_id, t.timeout, expires_at, t.code, t.reference,
            None if metadata is None else _encode_json(metadata).decode(), now,
            new_dp, d_cp, new_dpe, d_cpe, c_dp, new_cp, c_dpe, new_cpe,
        )  # fmt: skip
        self.rows.append(row)
        debit_counters = Counters(new_dp, d_cp, new_dpe, d_cpe)
        credit_counters = Counters(c_dp, new_cp, c_dpe, new_cpe)
        self.seen[key] = (row, metadata, debit_counters, credit_counters)
        undo.append((_U_CREATED, key))
        if expires_at is not None:
            self.expiries_added[key] = (tid, expires_at)
            undo.append((_U_EXPIRY_ADDED, key))
        if pending is not None:
            pid = pending.id.int
            self.resolved[pid] = t.kind
            undo.append((_U_RESOLVED, pid))
            if pid in self.expiries_added:  # a hold of this batch: never listed for the sweeper
                undo.append((_U_EXPIRY_READDED, pid, self.expiries_added.pop(pid)))
        return TransferResult(index, tid, _OK, debit_counters, credit_counters, now)

    def rollback(self, rows_mark: int) -> None:
        """Undo everything the current chain did (its log starts empty)."""
        undo = self.undo
        while undo:
            entry = undo.pop()
            op = entry[0]
            if op == _U_COUNTERS:
                _, state, dp, cp, dpe, cpe = entry
                state.debits_posted, state.credits_posted, state.debits_pending, state.credits_pending = dp, cp, dpe, cpe
            elif op == _U_CREATED:
                del self.seen[entry[1]]
            elif op == _U_EXPIRY_ADDED:
                del self.expiries_added[entry[1]]
            elif op == _U_RESOLVED:
                del self.resolved[entry[1]]
            else:
                self.expiries_added[entry[1]] = entry[2]
        del self.rows[rows_mark:]


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
    batch = _Batch(accounts, known, resolved, now, allow_expire)
    decide = batch.decide
    undo = batch.undo
    results: list[TransferResult | None] = [None] * len(transfers)
    i, n = 0, len(transfers)
    while i < n:
        t = transfers[i]
        if not t.linked:  # a chain of one: a transfer that fails changes nothing, so no undo
            results[i] = decide(i, t)
            undo.clear()
            i += 1
            continue
        end = i
        while end < n - 1 and transfers[end].linked:
            end += 1
        chain_open = bool(transfers[end].linked)
        undo.clear()
        rows_mark = len(batch.rows)
        failed_at = None
        for k in range(i, end + 1):
            result = results[k] = decide(k, transfers[k])
            if result.code is not _OK and result.code is not ResultCode.EXISTS:
                failed_at = k
                break
        if chain_open or (failed_at is not None and end > i):
            batch.rollback(rows_mark)
            for k in range(i, end + 1):
                if k != failed_at:
                    results[k] = TransferResult(k, transfers[k].id, ResultCode.LINKED_EVENT_FAILED)
            if chain_open and failed_at is None:
                results[end] = TransferResult(end, transfers[end].id, ResultCode.LINKED_EVENT_CHAIN_OPEN)
        undo.clear()
        i = end + 1
    changed = [
        state
        for state, dp, cp, dpe, cpe in batch.initial.values()
        if (state.debits_posted, state.credits_posted, state.debits_pending, state.credits_pending) != (dp, cp, dpe, cpe)
    ]
    return BatchOutcome(
        results=results,  # type: ignore[arg-type]
        inserts=batch.rows,
        accounts=changed,
        expiries_added=list(batch.expiries_added.values()),
    )
