"""Money transfers out of a balance: to a bank account (IBAN), with the program's transfer fee, and
to another balance of the same partner (user to user), converted when the currencies differ."""

from __future__ import annotations

import uuid
from typing import Annotated

from msgspec import Meta

from antaca_api import internal_transfers, money_transfers
from antaca_api.fields import Amount, Name, Reference
from antaca_api.routing import Channel, Context, route
from antaca_api.schema import Body


class NewMoneyTransfer(Body):
    amount: Amount
    iban: Annotated[str, Meta(min_length=15, max_length=42)]
    beneficiary_name: Name
    reference: Reference  # idempotency: the same reference books once


@route("POST", "/secure/customers/{customerId}/balances/{balanceId}/transfers", channel=Channel.PARTNER,
       body=NewMoneyTransfer, response=money_transfers.MoneyTransfer, status=201,
       summary="Send money from a balance to an IBAN; the amount plus the program's transfer fee must be available",
       tags=("balances",))
async def send_money(ctx: Context, body: NewMoneyTransfer) -> money_transfers.MoneyTransfer:
    customer_id, balance_id = ctx.path_id("customerId"), ctx.path_id("balanceId")
    sent = await money_transfers.send(
        ctx.pool, ctx.services.ledger, partner_id=ctx.partner_id, customer_id=customer_id,
        balance_id=balance_id, amount=body.amount, iban_text=body.iban,
        beneficiary_name=body.beneficiary_name, reference=body.reference, now=ctx.services.clock())
    return sent


class NewInternalTransfer(Body):
    receiver_balance_id: uuid.UUID  # a customer balance of the same partner
    amount: Amount  # in the sending balance's currency
    reference: Reference  # idempotency: the same reference books once per sending balance


async def _send_internal(ctx: Context, customer_id: uuid.UUID,
                         body: NewInternalTransfer) -> internal_transfers.InternalTransfer:
    return await internal_transfers.send(
        ctx.pool, ctx.services.ledger, partner_id=ctx.partner_id, customer_id=customer_id,
        sender_balance_id=ctx.path_id("balanceId"), receiver_balance_id=body.receiver_balance_id,
        amount=body.amount, reference=body.reference, now=ctx.services.clock())


INTERNAL_SUMMARY = ("Send money to another customer balance of the same partner; between "
                    "currencies converted at the rate in force, with the program's conversion fee")


@route("POST", "/secure/customers/{customerId}/balances/{balanceId}/internal-transfers",
       channel=Channel.PARTNER, body=NewInternalTransfer,
       response=internal_transfers.InternalTransfer, status=201, summary=INTERNAL_SUMMARY,
       tags=("balances",))
async def send_internal(ctx: Context,
                        body: NewInternalTransfer) -> internal_transfers.InternalTransfer:
    return await _send_internal(ctx, ctx.path_id("customerId"), body)


@route("POST", "/customers/me/balances/{balanceId}/internal-transfers", channel=Channel.CUSTOMER,
       body=NewInternalTransfer, response=internal_transfers.InternalTransfer, status=201,
       summary=INTERNAL_SUMMARY, tags=("balances",))
async def send_internal_mine(ctx: Context,
                             body: NewInternalTransfer) -> internal_transfers.InternalTransfer:
    return await _send_internal(ctx, ctx.customer.customer_id, body)
