"""Money transfers out of a balance to a bank account (IBAN), with the program's transfer fee."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from msgspec import Meta

from antaca_api import balances as repo
from antaca_api import iban
from antaca_auth.charges import charge_id, ensure_revenue_account, record_paid, schedule_in_force
from antaca_api.errors import BalanceNotActive, IdempotencyConflict, InsufficientFunds, InvalidIban, NotFound
from antaca_api.fields import Amount, Name, Reference
from antaca_api.routing import Channel, Context, route
from antaca_api.schema import Body
from antaca_auth import fees as pricing
from antaca_auth.accounts import AccountKind
from antaca_auth.codes import TransferCode
from antaca_auth.fees import FeeType
from antaca_auth.transfers import ResultCode, Transfer

TRANSFER_NAMESPACE = uuid.UUID("2e8c4a1f-7b3d-4f92-a6e5-0c9d8b7a6f15")


class NewMoneyTransfer(Body):
    amount: Amount
    iban: Annotated[str, Meta(min_length=15, max_length=42)]
    beneficiary_name: Name
    reference: Reference  # idempotency: the same reference books once


class MoneyTransfer(Body):
    transfer_id: uuid.UUID
    balance_id: uuid.UUID
    amount: int
    fee: int
    currency: str
    iban: str
    beneficiary_name: str
    reference: str
    created_at: datetime
    replayed: bool = False


@route("POST", "/secure/customers/{customerId}/balances/{balanceId}/transfers", channel=Channel.PARTNER,
       body=NewMoneyTransfer, response=MoneyTransfer, status=201,
       summary="Send money from a balance to an IBAN; the amount plus the program's transfer fee must be available",
       tags=("balances",))
async def send_money(ctx: Context, body: NewMoneyTransfer) -> MoneyTransfer:
    customer_id, balance_id = ctx.path_id("customerId"), ctx.path_id("balanceId")
    account = iban.normalize(body.iban)
    if not iban.is_valid(account):
        raise InvalidIban()
    ledger, now = ctx.services.ledger, ctx.services.clock()
    transfer_id = uuid.uuid5(TRANSFER_NAMESPACE, f"{balance_id}:{body.reference}")
    async with ctx.pool.acquire() as conn, conn.transaction():
        # One transfer at a time per balance: the reference check below is then exact.
        balance = await conn.fetchrow(
            """SELECT id, currency, program_id, state FROM balances
               WHERE id = $1 AND customer_id = $2 AND partner_id = $3 FOR UPDATE""",
            balance_id, customer_id, ctx.partner_id)
        if balance is None:
            raise NotFound("no such balance")
        done = await conn.fetchrow("SELECT * FROM money_transfers WHERE id = $1", transfer_id)
        if done is not None:
            asked = (body.amount, account, body.beneficiary_name)
            if (done["amount"], done["iban"], done["beneficiary_name"]) != asked:
                raise IdempotencyConflict()
            return MoneyTransfer(transfer_id=done["id"], balance_id=balance_id, amount=done["amount"], fee=done["fee"],
                                 currency=done["currency"], iban=done["iban"],
                                 beneficiary_name=done["beneficiary_name"], reference=done["reference"],
                                 created_at=done["created_at"], replayed=True)
        if balance["state"] != repo.BalanceState.ACTIVE:
            raise BalanceNotActive()
        currency = balance["currency"]
        payout = await repo.partner_account(conn, ledger, ctx.partner_id, currency, AccountKind.EXTERNAL_FUNDING)
        found = await schedule_in_force(conn, balance["program_id"], now)
        fee = 0
        if found is not None:
            fee = pricing.transaction_fee(pricing.spec_for(found[1], FeeType.MONEY_TRANSFER), body.amount)
            if fee and pricing.waiver_for(found[1], FeeType.MONEY_TRANSFER, {}) is not None:
                fee = 0
        cause = f"money-transfer:{transfer_id}"
        batch = [Transfer(id=transfer_id, code=TransferCode.MONEY_TRANSFER, debit_account_id=balance_id,
                          credit_account_id=payout, amount=body.amount, currency=currency,
                          reference=body.reference, linked=bool(fee))]
        if fee:
            revenue = await ensure_revenue_account(ledger, conn, balance["program_id"], currency)
            batch.append(Transfer(id=charge_id(FeeType.MONEY_TRANSFER, cause),
                                  code=pricing.FEE_RULES[FeeType.MONEY_TRANSFER].transfer_code,
                                  debit_account_id=balance_id, credit_account_id=revenue, amount=fee,
                                  currency=currency, reference=cause))
        results = (await ledger.write_batch(conn, batch)).results
        if any(r.code is not ResultCode.OK for r in results):
            raise InsufficientFunds("the balance cannot cover the amount and its fee")
        if fee:
            await record_paid(conn, charge=batch[1].id, program_id=balance["program_id"], schedule_id=found[0],
                              fee_type=FeeType.MONEY_TRANSFER, cause=cause, balance_id=balance_id, card_id=None,
                              amount=fee, currency=currency, transfer_id=batch[1].id)
        row = await conn.fetchrow(
            """INSERT INTO money_transfers (id, balance_id, iban, beneficiary_name, amount, fee, currency, reference)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *""",
            transfer_id, balance_id, account, body.beneficiary_name, body.amount, fee, currency, body.reference)
    return MoneyTransfer(transfer_id=transfer_id, balance_id=balance_id, amount=body.amount, fee=fee,
                         currency=currency, iban=account, beneficiary_name=body.beneficiary_name,
                         reference=body.reference, created_at=row["created_at"])
