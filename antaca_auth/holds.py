"""A batch of new transfers kept as columns: the authorization engine's holds on their way to the ledger.

The engine writes up to three transfers per payment (the partner deposit charge, the user's hold, the
fee's hold), a thousand or more per batch. Kept as columns they go to PostgreSQL as arrays in one
call (`Ledger.write_new`) without a Python object per transfer; `transfers()` builds the objects
only when the ledger's sequential path must decide the batch.
"""

from __future__ import annotations

import uuid

from antaca_auth.accounts import AMOUNT_MINOR_UNITS_MAX
from antaca_auth.ids import new_id
from antaca_auth.invariants import require
from antaca_auth.transfers import Transfer, TransferKind


class NewTransfers:
    """Columns of new SINGLE or PENDING transfers, in batch order; `linked` chains one to the next."""

    __slots__ = ("ids", "debits", "credits", "amounts", "pending", "codes", "timeouts", "references",
                 "currencies", "linked")

    def __init__(self) -> None:
        self.ids: list[uuid.UUID] = []
        self.debits: list[uuid.UUID] = []
        self.credits: list[uuid.UUID] = []
        self.amounts: list[int] = []
        self.pending: list[bool] = []
        self.codes: list[int] = []
        self.timeouts: list[int] = []
        self.references: list[str | None] = []
        self.currencies: list[str] = []
        self.linked: list[bool] = []

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, code: int, debit: uuid.UUID, credit: uuid.UUID, amount: int, currency: str, *,
            pending: bool, timeout: int = 0, reference: str | None = None, linked: bool = False) -> int:
        """Append a transfer with a new id; returns its index in the batch."""
        require(0 < amount <= AMOUNT_MINOR_UNITS_MAX and debit != credit,
                "a transfer moves a positive, bounded amount between two accounts")
        require(pending or not timeout, "only a hold has a timeout")
        self.ids.append(new_id())
        self.debits.append(debit)
        self.credits.append(credit)
        self.amounts.append(amount)
        self.pending.append(pending)
        self.codes.append(code)
        self.timeouts.append(timeout)
        self.references.append(reference)
        self.currencies.append(currency)
        self.linked.append(linked)
        return len(self.ids) - 1

    def link(self, index: int) -> None:
        """Chain transfer `index` to the one added after it."""
        self.linked[index] = True

    def transfers(self) -> list[Transfer]:
        """The same batch as ledger transfer requests."""
        return [
            Transfer(id=i, code=code, kind=TransferKind.PENDING if pending else TransferKind.SINGLE,
                     debit_account_id=dr, credit_account_id=cr, amount=amount, currency=currency, timeout=timeout,
                     reference=reference, linked=linked)
            for i, dr, cr, amount, pending, code, timeout, reference, currency, linked in zip(
                self.ids, self.debits, self.credits, self.amounts, self.pending, self.codes, self.timeouts,
                self.references, self.currencies, self.linked, strict=True)
        ]
