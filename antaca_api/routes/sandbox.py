"""Sandbox simulation on the partner channel (only with ANTACA_SANDBOX=1; docs/partners.md).

Each route has the sandbox build the network message for the partner's card
(antaca_api/sandbox.py) and runs it through the network channel's own handlers
(antaca_api/routes/network.py) under the sandbox network's identity: the answer is the one a
card network would get.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Annotated

import msgspec
from msgspec import Meta

from antaca_api import sandbox
from antaca_api.domain_errors import (
    CardDataUnavailable,
    FollowUpRefused,
    NotFound,
    ValidationFailed,
)
from antaca_api.errors import AuthorizationOutcomeUnknown, EncryptionRequired
from antaca_api.routes import network
from antaca_api.routing import Channel, Context, route
from antaca_api.schema import Body
from antaca_auth.accounts import AMOUNT_MINOR_UNITS_MAX
from antaca_auth.authorization import MessageId, TxType
from antaca_auth.decision import AuthorizationResult
from antaca_auth.followups import FollowUp

Amount = Annotated[int, Meta(gt=0, le=AMOUNT_MINOR_UNITS_MAX, description="minor units")]
Currency = Annotated[str, Meta(pattern=r"^[A-Z]{3}$")]
MerchantName = Annotated[str, Meta(min_length=1, max_length=100)]


class SimulatedAuthorizationBody(Body):
    """A payment with one of the partner's cards; card data the network would send is filled in."""

    card_id: uuid.UUID
    amount: Amount
    currency: Currency
    type: Annotated[TxType, Meta(description="POS, ECOM or ATM; REFUND as /secure/simulate/refunds"
                                 )] = TxType.ECOM
    # Left out: the card's own CVC2 (ECOM) and expiry. Given: sent instead, to see a decline.
    cvc2: Annotated[str, Meta(pattern=r"^[0-9]{3,4}$")] | None = None
    expiry: Annotated[str, Meta(pattern=r"^[0-9]{2}(0[1-9]|1[0-2])$",
                                description="YYMM")] | None = None
    # Enciphered into an ISO 9564 format 4 PIN block under the sandbox network's zone PIN key.
    # A body with a PIN must arrive as a JWE (Encrypted-Request: true).
    pin: Annotated[str, Meta(pattern=r"^[0-9]{4,12}$")] | None = None
    mcc: Annotated[str, Meta(pattern=r"^[0-9]{4}$")] | None = None
    merchant_name: MerchantName | None = None
    merchant_country: Annotated[str, Meta(pattern=r"^[A-Z]{2,3}$")] | None = None
    pos_entry_mode: Annotated[str, Meta(pattern=r"^[0-9]{3}$")] | None = None


class SimulatedRefundBody(Body):
    """A merchant's refund to one of the partner's cards."""

    card_id: uuid.UUID
    amount: Amount
    currency: Currency
    merchant_name: MerchantName | None = None


class SimulatedReversalBody(Body):
    card_id: uuid.UUID
    original_message_id: MessageId  # the messageId a simulated authorization answered
    amount: Amount | None = None  # left out: the whole hold


class SimulatedClearingBody(Body):
    """A clearing of a simulated authorization, or without one (a force post: give the currency)."""

    card_id: uuid.UUID
    amount: Amount
    original_message_id: MessageId | None = None
    currency: Currency | None = None


# What the handlers may answer besides their success (docs/partners.md "Sandbox").
PAYMENT_ERRORS = (NotFound, CardDataUnavailable, EncryptionRequired, AuthorizationOutcomeUnknown)
FOLLOW_UP_ERRORS = (NotFound, CardDataUnavailable, FollowUpRefused, ValidationFailed)


class SimulatedAuthorization(AuthorizationResult, frozen=True, rename="camel"):
    """The network channel's answer, and the message id to reverse or clear it by."""

    message_id: str = ""


def _network_context(ctx: Context, sandbox_network: sandbox.SandboxNetwork) -> Context:
    """The request as the network channel sees a call of the sandbox network."""
    return dataclasses.replace(ctx, network_id=sandbox_network.network_id,
                               network_deadline_ms=sandbox_network.deadline_ms)


async def _authorize(ctx: Context, card_id: uuid.UUID,
                     payment: sandbox.Payment) -> SimulatedAuthorization:
    sandbox_network, message = await sandbox.payment_message(ctx.services, ctx.partner_id, card_id,
                                                             payment)
    result = await network.authorize(_network_context(ctx, sandbox_network), message)
    return SimulatedAuthorization(**msgspec.structs.asdict(result), message_id=message.message_id)


@route("POST", "/secure/simulate/authorizations", channel=Channel.PARTNER,
       body=SimulatedAuthorizationBody, response=SimulatedAuthorization, tags=("sandbox",),
       # Not idempotent: its body may carry a PIN, and an Idempotency-Key keeps a hash of the body.
       sandbox=True, idempotent=False, errors=PAYMENT_ERRORS,
       summary="Sandbox: authorize a payment with one of the partner's cards through the real "
               "network path; the network's answer")
async def simulate_authorization(ctx: Context, body: SimulatedAuthorizationBody
                                 ) -> SimulatedAuthorization:
    if body.type is TxType.REFUND:
        return await simulate_refund(ctx, SimulatedRefundBody(
            card_id=body.card_id, amount=body.amount, currency=body.currency,
            merchant_name=body.merchant_name))
    if body.pin is not None and ctx.request.headers.get("Encrypted-Request", "").lower() != "true":
        raise EncryptionRequired("a simulation with a PIN must arrive as a JWE with "
                                 "Encrypted-Request: true")
    fields = msgspec.structs.asdict(body)
    del fields["card_id"]
    return await _authorize(ctx, body.card_id, sandbox.Payment(**fields))


@route("POST", "/secure/simulate/refunds", channel=Channel.PARTNER, body=SimulatedRefundBody,
       response=SimulatedAuthorization, tags=("sandbox",), sandbox=True, idempotent=True,
       errors=PAYMENT_ERRORS,
       summary="Sandbox: a merchant's refund to one of the partner's cards, as the network "
               "sends it; the network's answer")
async def simulate_refund(ctx: Context, body: SimulatedRefundBody) -> SimulatedAuthorization:
    return await _authorize(ctx, body.card_id, sandbox.Payment(
        amount=body.amount, currency=body.currency, type=TxType.REFUND,
        merchant_name=body.merchant_name))


@route("POST", "/secure/simulate/reversals", channel=Channel.PARTNER, body=SimulatedReversalBody,
       response=FollowUp, tags=("sandbox",), sandbox=True, idempotent=True,
       errors=FOLLOW_UP_ERRORS,
       summary="Sandbox: reverse a simulated authorization, fully or partly, as the network does")
async def simulate_reversal(ctx: Context, body: SimulatedReversalBody) -> FollowUp:
    sandbox_network, _ = await sandbox.follow_up_target(ctx.services, ctx.partner_id, body.card_id)
    original = sandbox.check_message_of_card(body.card_id, body.original_message_id)
    return await network.reversal(_network_context(ctx, sandbox_network), network.Reversal(
        message_id=sandbox.message_id(body.card_id), original_message_id=original,
        amount=body.amount))


@route("POST", "/secure/simulate/clearings", channel=Channel.PARTNER, body=SimulatedClearingBody,
       response=FollowUp, tags=("sandbox",), sandbox=True, idempotent=True,
       errors=FOLLOW_UP_ERRORS,
       summary="Sandbox: clear a simulated authorization (or force post without one), as the "
               "network does")
async def simulate_clearing(ctx: Context, body: SimulatedClearingBody) -> FollowUp:
    sandbox_network, card = await sandbox.follow_up_target(ctx.services, ctx.partner_id,
                                                           body.card_id)
    message = sandbox.message_id(body.card_id)
    if body.original_message_id is not None:
        clearing = network.Clearing(
            message_id=message, amount=body.amount,
            original_message_id=sandbox.check_message_of_card(body.card_id,
                                                              body.original_message_id))
    elif body.currency is None:
        raise ValidationFailed("a simulated clearing names its originalMessageId, or (a force "
                               "post) its currency")
    else:
        clearing = network.Clearing(message_id=message, amount=body.amount, pan=card.pan,
                                    currency=body.currency)
    return await network.clearing(_network_context(ctx, sandbox_network), clearing)
