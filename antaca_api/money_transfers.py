"""Money transfers out of a balance to a bank account (IBAN), with the program's transfer fee."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from antaca_api import balances, iban
from antaca_api.domain_errors import (
    BalanceNotActive,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidIban,
    NotFound,
)
from antaca_api.schema import Body
from antaca_auth import fees as pricing
from antaca_auth.accounts import AccountKind
from antaca_auth.charges import (
    charge_id,
    ensure_revenue_account,
    record_paid,
    schedule_in_force,
)
from antaca_auth.codes import TransferCode
from antaca_auth.fees import FeeType
from antaca_auth.ledger import Ledger
from antaca_auth.transfers import ResultCode, Transfer

TRANSFER_NAMESPACE = uuid.UUID("2e8c4a1f-7b3d-4f92-a6e5-0c9d8b7a6f15")

# The row lock makes one transfer at a time per balance: the reference check after it is exact.
BALANCE_OF_CUSTOMER_FOR_UPDATE = """
    SELECT id, currency, program_id, state FROM balances
    WHERE id = $1 AND customer_id = $2 AND partner_id = $3 FOR UPDATE"""
MONEY_TRANSFER = "SELECT * FROM money_transfers WHERE id = $1"
INSERT_MONEY_TRANSFER = """
    INSERT INTO money_transfers (id, balance_id, iban, beneficiary_name, amount, fee, currency,
                                 reference)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *"""


class MoneyTransfer(Body):
    """An IBAN payout as booked (also the partner channel's answer)."""

    transfer_id: uuid.UUID
    balance_id: uuid.UUID
    amount: int
    fee: int
    currency: str
    iban: str
    beneficiary_name: str
    reference: str
    created_at: datetime
    replayed: bool = False  # the reference had already been booked: nothing moved this time


def transfer_id_of(balance_id: uuid.UUID, reference: str) -> uuid.UUID:
    """One reference books once per balance: it names the transfer."""
    return uuid.uuid5(TRANSFER_NAMESPACE, f"{balance_id}:{reference}")


def _recorded(row: asyncpg.Record, balance_id: uuid.UUID, replayed: bool) -> MoneyTransfer:
    return MoneyTransfer(transfer_id=row["id"], balance_id=balance_id, amount=row["amount"],
                         fee=row["fee"], currency=row["currency"], iban=row["iban"],
                         beneficiary_name=row["beneficiary_name"], reference=row["reference"],
                         created_at=row["created_at"], replayed=replayed)


def _fee(schedule: tuple | None, amount: int) -> int:
    """The program's money transfer fee on the amount; 0 without a schedule or when waived."""
    if schedule is None:
        return 0
    fee = pricing.transaction_fee(pricing.spec_for(schedule[1], FeeType.MONEY_TRANSFER), amount)
    if fee and pricing.waiver_for(schedule[1], FeeType.MONEY_TRANSFER, {}) is not None:
        return 0
    return fee


async def send(pool: asyncpg.Pool, ledger: Ledger, *, partner_id: uuid.UUID,
               customer_id: uuid.UUID, balance_id: uuid.UUID, amount: int, iban_text: str,
               beneficiary_name: str, reference: str, now: datetime) -> MoneyTransfer:
    """Pay the amount from the partner's customer's balance to the IBAN, with its fee, in one
    transaction; the same reference again replays the recorded transfer."""
    account = iban.normalize(iban_text)
    if not iban.is_valid(account):
        raise InvalidIban()
    transfer_id = transfer_id_of(balance_id, reference)
    async with pool.acquire() as conn, conn.transaction():
        balance = await conn.fetchrow(BALANCE_OF_CUSTOMER_FOR_UPDATE, balance_id, customer_id,
                                      partner_id)
        if balance is None:
            raise NotFound("no such balance")
        done = await conn.fetchrow(MONEY_TRANSFER, transfer_id)
        if done is not None:
            if (done["amount"], done["iban"], done["beneficiary_name"]) != (amount, account,
                                                                             beneficiary_name):
                raise IdempotencyConflict()
            return _recorded(done, balance_id, replayed=True)
        if balance["state"] != balances.BalanceState.ACTIVE:
            raise BalanceNotActive()
        currency, program_id = balance["currency"], balance["program_id"]
        payout = await balances.partner_account(conn, ledger, partner_id, currency,
                                                AccountKind.EXTERNAL_FUNDING)
        found = await schedule_in_force(conn, program_id, now)
        fee = _fee(found, amount)
        cause = f"money-transfer:{transfer_id}"
        batch = [Transfer(id=transfer_id, code=TransferCode.MONEY_TRANSFER,
                          debit_account_id=balance_id, credit_account_id=payout, amount=amount,
                          currency=currency, reference=reference, linked=bool(fee))]
        if fee:
            revenue = await ensure_revenue_account(ledger, conn, program_id, currency)
            batch.append(Transfer(id=charge_id(FeeType.MONEY_TRANSFER, cause),
                                  code=pricing.FEE_RULES[FeeType.MONEY_TRANSFER].transfer_code,
                                  debit_account_id=balance_id, credit_account_id=revenue,
                                  amount=fee, currency=currency, reference=cause))
        results = (await ledger.write_batch(conn, batch)).results
        if any(r.code is not ResultCode.OK for r in results):
            raise InsufficientFunds("the balance cannot cover the amount and its fee")
        if fee:
            await record_paid(conn, charge=batch[1].id, program_id=program_id,
                              schedule_id=found[0], fee_type=FeeType.MONEY_TRANSFER, cause=cause,
                              balance_id=balance_id, card_id=None, amount=fee, currency=currency,
                              transfer_id=batch[1].id)
        row = await conn.fetchrow(INSERT_MONEY_TRANSFER, transfer_id, balance_id, account,
                                  beneficiary_name, amount, fee, currency, reference)
    return _recorded(row, balance_id, replayed=False)
