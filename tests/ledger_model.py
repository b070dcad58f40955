"""A pure in-memory model of the ledger, written plainly and independently of `antaca_auth.posting`.

The property tests run the same operations on the model and on PostgreSQL and compare.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from antaca_auth.transfers import Transfer, TransferKind

MAX = 2**63 - 1
K = TransferKind


@dataclass
class ModelAccount:
    currency: str
    dmnec: bool = False  # debits must not exceed credits
    cmned: bool = False  # credits must not exceed debits
    dp: int = 0
    cp: int = 0
    dpe: int = 0
    cpe: int = 0

    def counters(self) -> tuple[int, int, int, int]:
        return (self.dp, self.cp, self.dpe, self.cpe)


@dataclass(frozen=True)
class ModelTransfer:
    id: uuid.UUID
    kind: TransferKind
    dr: uuid.UUID
    cr: uuid.UUID
    amount: int
    currency: str
    pending_id: uuid.UUID | None
    timeout: int
    expires_at: datetime | None
    code: int
    reference: str | None
    metadata: dict | None
    dr_after: tuple[int, int, int, int]
    cr_after: tuple[int, int, int, int]


Outcome = tuple[str, tuple | None, tuple | None]  # result code, debit and credit counters after


class LedgerModel:
    def __init__(self) -> None:
        self.accounts: dict[uuid.UUID, ModelAccount] = {}
        self.transfers: dict[uuid.UUID, ModelTransfer] = {}
        self.resolved: dict[uuid.UUID, TransferKind] = {}

    def add_account(self, account_id: uuid.UUID, currency: str, dmnec: bool = False, cmned: bool = False) -> None:
        self.accounts[account_id] = ModelAccount(currency, dmnec, cmned)

    def submit(self, batch: list[Transfer], now: datetime, *, system: bool = False) -> list[Outcome]:
        out: list[Outcome] = []
        i = 0
        while i < len(batch):
            j = i
            while j < len(batch) - 1 and batch[j].linked:
                j += 1
            saved = copy.deepcopy((self.accounts, self.transfers, self.resolved))
            chain: list[Outcome] = []
            for k in range(i, j + 1):
                chain.append(self.one(batch[k], now, system))
                if chain[-1][0] not in ("ok", "exists"):
                    break
            failed = chain[-1][0] not in ("ok", "exists")
            is_open = bool(batch[j].linked)
            if (failed and j > i) or is_open:
                self.accounts, self.transfers, self.resolved = saved
                replaced: list[Outcome] = [("linked_event_failed", None, None)] * (j - i + 1)
                if failed:
                    replaced[len(chain) - 1] = chain[-1]
                else:
                    replaced[-1] = ("linked_event_chain_open", None, None)
                chain = replaced
            out.extend(chain)
            i = j + 1
        return out

    def one(self, t: Transfer, now: datetime, system: bool) -> Outcome:
        resolving = t.kind in (K.POST_PENDING, K.VOID_PENDING, K.EXPIRE_PENDING)
        if t.kind is K.EXPIRE_PENDING and not system:
            return ("invalid_kind", None, None)
        if resolving and t.pending_id == t.id:
            return ("pending_id_must_differ", None, None)
        if t.amount is not None and t.amount <= 0:
            return ("amount_must_be_positive", None, None)
        if t.amount is not None and t.amount > MAX:
            return ("amount_too_large", None, None)
        if not resolving and t.debit_account_id == t.credit_account_id:
            return ("accounts_must_differ", None, None)

        if t.id in self.transfers:
            s = self.transfers[t.id]
            same = (t.kind, t.code, t.timeout, t.reference, t.metadata) == (
                s.kind, s.code, s.timeout, s.reference, s.metadata)
            for mine, theirs in ((t.debit_account_id, s.dr), (t.credit_account_id, s.cr), (t.currency, s.currency),
                                 (t.amount, s.amount), (t.pending_id, s.pending_id)):
                if mine is not None and mine != theirs:
                    same = False
            if same and t.kind is K.POST_PENDING and t.amount is None:
                same = s.amount == self.transfers[s.pending_id].amount
            if not same:
                return ("exists_with_different_fields", None, None)
            return ("exists", s.dr_after, s.cr_after)

        if not resolving:
            if t.debit_account_id not in self.accounts or t.credit_account_id not in self.accounts:
                return ("account_not_found", None, None)
            dr, cr = self.accounts[t.debit_account_id], self.accounts[t.credit_account_id]
            if dr.currency != t.currency or cr.currency != t.currency:
                return ("currency_mismatch", None, None)
            amount, dr_id, cr_id, currency = t.amount, t.debit_account_id, t.credit_account_id, t.currency
            if t.kind is K.SINGLE:
                new_dr = (dr.dp + amount, dr.cp, dr.dpe, dr.cpe)
                new_cr = (cr.dp, cr.cp + amount, cr.dpe, cr.cpe)
            else:
                new_dr = (dr.dp, dr.cp, dr.dpe + amount, dr.cpe)
                new_cr = (cr.dp, cr.cp, cr.dpe, cr.cpe + amount)
            pending = None
        else:
            pending = self.transfers.get(t.pending_id)
            if pending is None:
                return ("pending_not_found", None, None)
            if pending.kind is not K.PENDING:
                return ("not_pending", None, None)
            if t.pending_id in self.resolved:
                if self.resolved[t.pending_id] is K.EXPIRE_PENDING:
                    return ("pending_expired", None, None)
                return ("pending_already_resolved", None, None)
            if t.kind is not K.EXPIRE_PENDING and pending.expires_at is not None and now >= pending.expires_at:
                return ("pending_expired", None, None)
            amount = pending.amount if t.amount is None else t.amount
            if amount > pending.amount:
                return ("amount_exceeds_pending", None, None)
            if t.kind is not K.POST_PENDING and amount != pending.amount:
                return ("amount_must_match_pending", None, None)
            dr_id, cr_id, currency = pending.dr, pending.cr, pending.currency
            dr, cr = self.accounts[dr_id], self.accounts[cr_id]
            posted = amount if t.kind is K.POST_PENDING else 0
            new_dr = (dr.dp + posted, dr.cp, dr.dpe - pending.amount, dr.cpe)
            new_cr = (cr.dp, cr.cp + posted, cr.dpe, cr.cpe - pending.amount)

        if new_dr[0] > MAX or new_dr[2] > MAX or new_dr[0] + new_dr[2] > MAX:
            return ("overflows_debits", None, None)
        if new_cr[1] > MAX or new_cr[3] > MAX or new_cr[1] + new_cr[3] > MAX:
            return ("overflows_credits", None, None)
        if dr.dmnec and new_dr[0] + new_dr[2] > new_dr[1]:
            return ("exceeds_credits", None, None)
        if cr.cmned and new_cr[1] + new_cr[3] > new_cr[0]:
            return ("exceeds_debits", None, None)

        dr.dp, dr.cp, dr.dpe, dr.cpe = new_dr
        cr.dp, cr.cp, cr.dpe, cr.cpe = new_cr
        if pending is not None:
            self.resolved[pending.id] = t.kind
        self.transfers[t.id] = ModelTransfer(
            id=t.id, kind=t.kind, dr=dr_id, cr=cr_id, amount=amount, currency=currency, pending_id=t.pending_id,
            timeout=t.timeout, expires_at=now + timedelta(seconds=t.timeout) if t.timeout else None, code=t.code,
            reference=t.reference, metadata=t.metadata, dr_after=new_dr, cr_after=new_cr)
        return ("ok", new_dr, new_cr)

    def due_holds(self, now: datetime) -> list[ModelTransfer]:
        return [
            p for p in self.transfers.values()
            if p.kind is K.PENDING and p.expires_at is not None and p.expires_at <= now and p.id not in self.resolved
        ]
