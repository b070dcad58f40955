"""Money between users: a transfer from one customer's balance to another balance of the same
partner (the description's Sender and internal Receiver), in one currency or converted.

One transaction: both balance rows are locked in id order, then one linked ledger batch is
written. In the same currency it is one transfer, sender to receiver. Between currencies it goes
through the partner's FX position accounts: sender to the position in the sender's currency, the
position in the receiver's currency to the receiver, at the rate in force (`fx_rates`), with the
sender's program's currency conversion fee as a third linked transfer to the program's fee
revenue. The batch commits whole or not at all. Each leg is on its balance's statement, so the
transfer shows in both histories.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

import asyncpg

from antaca_api import balances
from antaca_api.domain_errors import (
    BalanceNotActive,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidAmount,
    NotFound,
    RateUnavailable,
    ValidationFailed,
)
from antaca_api.schema import Body
from antaca_auth import fees as pricing
from antaca_auth.accounts import AccountKind
from antaca_auth.charges import charge_id, ensure_revenue_account, record_paid, schedule_in_force
from antaca_auth.codes import TransferCode
from antaca_auth.fees import FeeType
from antaca_auth.invariants import require
from antaca_auth.ledger import Ledger
from antaca_auth.rates import rates_in_force
from antaca_auth.transfers import ResultCode, Transfer

INTERNAL_TRANSFER_NAMESPACE = uuid.UUID("7a4d2c9e-31f8-4b6a-9e0d-5c8b1f2a7e43")
RECEIVING_LEG = "receiving-leg"

# Both balances, locked in id order (the fixed lock order: balance rows before ledger accounts).
BALANCES_FOR_UPDATE = """
    SELECT id, partner_id, customer_id, currency, program_id, state FROM balances
    WHERE id = ANY($1::uuid[]) AND partner_id = $2 AND customer_id IS NOT NULL
    ORDER BY id FOR UPDATE"""
INTERNAL_TRANSFER = "SELECT * FROM internal_transfers WHERE id = $1"
INSERT_INTERNAL_TRANSFER = """
    INSERT INTO internal_transfers (id, partner_id, sender_balance_id, receiver_balance_id, amount,
                                    currency, received_amount, received_currency, rate, fee,
                                    reference)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING *"""


class InternalTransfer(Body):
    """A transfer between two balances as booked."""

    transfer_id: uuid.UUID
    sender_balance_id: uuid.UUID
    receiver_balance_id: uuid.UUID
    amount: int  # debited from the sender, in `currency`
    currency: str
    received_amount: int  # credited to the receiver, in `receivedCurrency`
    received_currency: str
    rate: str | None  # the exchange rate applied (decimal string); null in one currency
    fee: int  # the conversion fee, in `currency`, debited from the sender besides the amount
    reference: str
    created_at: datetime
    replayed: bool = False  # the reference had already been booked: nothing moved this time


def transfer_id_of(sender_balance_id: uuid.UUID, reference: str) -> uuid.UUID:
    """One reference books once per sending balance: it names the transfer."""
    return uuid.uuid5(INTERNAL_TRANSFER_NAMESPACE, f"{sender_balance_id}:{reference}")


def _recorded(row: asyncpg.Record, replayed: bool) -> InternalTransfer:
    rate = row["rate"]
    return InternalTransfer(
        transfer_id=row["id"], sender_balance_id=row["sender_balance_id"],
        receiver_balance_id=row["receiver_balance_id"], amount=row["amount"],
        currency=row["currency"], received_amount=row["received_amount"],
        received_currency=row["received_currency"],
        rate=None if rate is None else format(rate.normalize(), "f"), fee=row["fee"],
        reference=row["reference"], created_at=row["created_at"], replayed=replayed)


async def _lock_balances(conn: asyncpg.Connection, partner_id: uuid.UUID,
                         customer_id: uuid.UUID, sender_id: uuid.UUID,
                         receiver_id: uuid.UUID) -> tuple[asyncpg.Record, asyncpg.Record]:
    rows = {r["id"]: r for r in await conn.fetch(BALANCES_FOR_UPDATE, [sender_id, receiver_id],
                                                  partner_id)}
    sender, receiver = rows.get(sender_id), rows.get(receiver_id)
    if sender is None or sender["customer_id"] != customer_id:
        raise NotFound("no such balance")
    if sender_id == receiver_id:  # after the ownership check: a stranger learns nothing here
        raise ValidationFailed("the receiving balance must differ from the sending one")
    if receiver is None:
        raise NotFound("no such receiving balance")
    return sender, receiver


async def _rate(conn: asyncpg.Connection, sender: str, receiver: str,
                now: datetime) -> Decimal | None:
    if sender == receiver:
        return None
    rates = await rates_in_force(conn, [(sender, receiver)], now)
    if (sender, receiver) not in rates:
        raise RateUnavailable(f"no {sender} to {receiver} exchange rate is in force")
    return rates[(sender, receiver)]


async def _legs(conn: asyncpg.Connection, ledger: Ledger, transfer_id: uuid.UUID,
                sender: asyncpg.Record, receiver: asyncpg.Record, amount: int,
                price: pricing.InternalTransferPrice, reference: str) -> list[Transfer]:
    """The linked ledger transfers moving the money (the fee's is appended by the caller)."""
    if sender["currency"] == receiver["currency"]:
        return [Transfer(id=transfer_id, code=TransferCode.INTERNAL_TRANSFER,
                         debit_account_id=sender["id"], credit_account_id=receiver["id"],
                         amount=amount, currency=sender["currency"], reference=reference,
                         metadata={"counterparty": str(receiver["id"])}, linked=bool(price.fee))]
    partner_id = sender["partner_id"]
    position_in = await balances.partner_account(conn, ledger, partner_id, sender["currency"],
                                                 AccountKind.FX_POSITION)
    position_out = await balances.partner_account(conn, ledger, partner_id,
                                                  receiver["currency"], AccountKind.FX_POSITION)
    return [
        Transfer(id=transfer_id, code=TransferCode.INTERNAL_TRANSFER,
                 debit_account_id=sender["id"], credit_account_id=position_in, amount=amount,
                 currency=sender["currency"], reference=reference,
                 metadata={"counterparty": str(receiver["id"])}, linked=True),
        Transfer(id=uuid.uuid5(transfer_id, RECEIVING_LEG), code=TransferCode.INTERNAL_TRANSFER,
                 debit_account_id=position_out, credit_account_id=receiver["id"],
                 amount=price.received_amount, currency=receiver["currency"], reference=reference,
                 metadata={"counterparty": str(sender["id"])}, linked=bool(price.fee)),
    ]


async def send(pool: asyncpg.Pool, ledger: Ledger, *, partner_id: uuid.UUID,
               customer_id: uuid.UUID, sender_balance_id: uuid.UUID,
               receiver_balance_id: uuid.UUID, amount: int, reference: str,
               now: datetime) -> InternalTransfer:
    """Move `amount` from the customer's balance to another customer balance of the same partner,
    converted when the currencies differ, with its fee, in one transaction; the same reference
    again replays the recorded transfer."""
    transfer_id = transfer_id_of(sender_balance_id, reference)
    async with pool.acquire() as conn, conn.transaction():
        sender, receiver = await _lock_balances(conn, partner_id, customer_id, sender_balance_id,
                                                receiver_balance_id)
        done = await conn.fetchrow(INTERNAL_TRANSFER, transfer_id)
        if done is not None:
            if (done["receiver_balance_id"], done["amount"]) != (receiver_balance_id, amount):
                raise IdempotencyConflict()
            return _recorded(done, replayed=True)
        if any(b["state"] != balances.BalanceState.ACTIVE for b in (sender, receiver)):
            raise BalanceNotActive()
        rate = await _rate(conn, sender["currency"], receiver["currency"], now)
        exponents = await ledger.currencies()
        found = await schedule_in_force(conn, sender["program_id"], now)
        price = pricing.price_internal_transfer(
            None if found is None else found[1], amount, rate, exponents[sender["currency"]],
            exponents[receiver["currency"]])
        if price.received_amount <= 0:
            raise InvalidAmount("the amount converts to nothing in the receiving currency")
        batch = await _legs(conn, ledger, transfer_id, sender, receiver, amount, price, reference)
        await _write(conn, ledger, batch, sender, price, transfer_id, found)
        row = await conn.fetchrow(INSERT_INTERNAL_TRANSFER, transfer_id, partner_id, sender["id"],
                                  receiver["id"], amount, sender["currency"],
                                  price.received_amount, receiver["currency"], rate, price.fee,
                                  reference)
    return _recorded(row, replayed=False)


async def _write(conn: asyncpg.Connection, ledger: Ledger, batch: list[Transfer],
                 sender: asyncpg.Record, price: pricing.InternalTransferPrice,
                 transfer_id: uuid.UUID, found: tuple | None) -> None:
    """Write the legs and the fee as one linked batch, and record the paid fee."""
    cause = f"internal-transfer:{transfer_id}"
    fee_rule = pricing.FEE_RULES[FeeType.CURRENCY_CONVERSION]
    if price.fee:
        require(found is not None, "a conversion fee without a schedule")
        revenue = await ensure_revenue_account(ledger, conn, sender["program_id"],
                                               sender["currency"])
        batch.append(Transfer(id=charge_id(FeeType.CURRENCY_CONVERSION, cause),
                              code=fee_rule.transfer_code, debit_account_id=sender["id"],
                              credit_account_id=revenue, amount=price.fee,
                              currency=sender["currency"], reference=cause))
    codes = {r.code for r in (await ledger.write_batch(conn, batch)).results}
    if codes & {ResultCode.OVERFLOWS_CREDITS, ResultCode.OVERFLOWS_DEBITS}:
        raise InvalidAmount("the receiving balance cannot take this amount")
    if ResultCode.EXCEEDS_CREDITS in codes:
        raise InsufficientFunds("the balance cannot cover the amount and its fee")
    require(codes == {ResultCode.OK}, f"an internal transfer was refused: {sorted(codes)}")
    if price.fee:
        await record_paid(conn, charge=batch[-1].id, program_id=sender["program_id"],
                          schedule_id=found[0], fee_type=FeeType.CURRENCY_CONVERSION,
                          cause=cause, balance_id=sender["id"], card_id=None, amount=price.fee,
                          currency=sender["currency"], transfer_id=batch[-1].id)
