"""Money transfers out of a balance to a bank account (IBAN), with the program's transfer fee."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from antaca_api import money_transfers
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
