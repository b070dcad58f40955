"""The network channel: authorizations, reversals and clearings from the payment cloud."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta

from antaca_api import card_transactions, pages
from antaca_api.domain_errors import (
    DomainError,
    FollowUpRefused,
    NotFound,
    ValidationFailed,
)
from antaca_api.errors import ApiError, AuthorizationOutcomeUnknown, ClearPinRefused
from antaca_api.routing import Channel, Context, route
from antaca_api.schema import Body, Page
from antaca_auth import authorization, followups
from antaca_auth.authorization import AuthorizationRequest, MessageId
from antaca_auth.decision import AuthorizationResult
from antaca_auth.engine import OutcomeUnknown
from antaca_auth.followups import FollowUp
from antaca_auth.pans import PAN_PATTERN


@route("POST", "/network/authorizations", channel=Channel.NETWORK, body=AuthorizationRequest,
       response=AuthorizationResult, tags=("network",),
       errors=(ClearPinRefused, AuthorizationOutcomeUnknown),
       summary="Authorize a card payment: APPROVED or DECLINED with DE39 and the failure action code")
async def authorize(ctx: Context, body: AuthorizationRequest) -> AuthorizationResult:
    try:
        result = await ctx.services.engine.authorize(
            ctx.network_id, body, deadline_seconds=ctx.network_deadline_ms / 1000, arrived_at=ctx.arrived_at)
        return result
    except authorization.ClearPinRefused:
        raise ClearPinRefused() from None
    except OutcomeUnknown:
        raise AuthorizationOutcomeUnknown() from None


class Reversal(Body):
    message_id: MessageId
    original_message_id: MessageId
    amount: Annotated[int, Meta(gt=0, le=2**63 - 1)] | None = None  # omitted: the whole hold


class Clearing(Body):
    """A clearing of an authorization, or without one (a force post: give the card's PAN and the currency)."""

    message_id: MessageId
    amount: Annotated[int, Meta(gt=0, le=2**63 - 1)]
    original_message_id: MessageId | None = None
    pan: Annotated[str, Meta(pattern=PAN_PATTERN)] | None = None
    currency: Annotated[str, Meta(pattern=r"^[A-Z]{3}$")] | None = None


class ClearingBatch(Body):
    items: Annotated[list[Clearing], Meta(min_length=1, max_length=1000)]


class ClearingOutcome(Body):
    message_id: str
    result: FollowUp | None = None
    error: dict | None = None  # {"code", "message"} when this record was refused


class ClearingBatchResult(Body):
    items: list[ClearingOutcome]


async def _follow_up(call) -> FollowUp:
    """The follow-up's answer, its domain refusals as API errors."""
    try:
        return await call
    except followups.AuthorizationNotFound:
        raise NotFound("no approved authorization with an open hold (or, for a force post, no card)"
                       " matches") from None
    except followups.FollowUpRefused as exc:
        raise FollowUpRefused(str(exc)) from None


@route("POST", "/network/reversals", channel=Channel.NETWORK, body=Reversal, response=FollowUp,
       tags=("network",), summary="Reverse an authorization, fully or partly: releases the hold")
async def reversal(ctx: Context, body: Reversal) -> FollowUp:
    return await _follow_up(ctx.services.follow_ups.reverse(
        ctx.network_id, body.message_id, body.original_message_id, body.amount))


@route("POST", "/network/clearings", channel=Channel.NETWORK, body=Clearing, response=FollowUp, tags=("network",),
       summary="Clear (capture) an authorization: posts the hold, partly or up to the tolerance above it; "
               "without one (force post) books the amount directly")
async def clearing(ctx: Context, body: Clearing) -> FollowUp:
    return await _follow_up(_clear(ctx, body))


def _clear(ctx: Context, body: Clearing):
    follow_ups = ctx.services.follow_ups
    if body.original_message_id is not None:
        return follow_ups.clear(ctx.network_id, body.message_id, body.original_message_id,
                                body.amount)
    if body.pan is None or body.currency is None:
        raise ValidationFailed("a clearing names its originalMessageId, or (force post) the pan and"
                               " currency")
    return follow_ups.force_post(ctx.network_id, body.message_id, body.pan, body.amount,
                                 body.currency)


@route("POST", "/network/clearings/batch", channel=Channel.NETWORK, body=ClearingBatch, response=ClearingBatchResult,
       tags=("network",), summary="Many clearing records at once; each is booked or refused on its own")
async def clearing_batch(ctx: Context, body: ClearingBatch) -> ClearingBatchResult:
    outcomes = []
    for item in body.items:
        try:
            outcomes.append(ClearingOutcome(message_id=item.message_id, result=await _follow_up(_clear(ctx, item))))
        except (ApiError, DomainError) as exc:
            outcomes.append(ClearingOutcome(message_id=item.message_id,
                                            error={"code": exc.code, "message": exc.message}))
    return ClearingBatchResult(items=outcomes)


class CardTransaction(Body):
    authorization_id: uuid.UUID
    balance_id: uuid.UUID | None
    type: str
    amount: int
    currency: str
    decision: str
    response_code: str
    reason: str
    approved_amount: int
    merchant_name: str | None
    created_at: datetime
    events: list[dict]
    billing_amount: int | None = None  # in the balance's currency, when it differs from the payment's
    transaction_fee: int = 0
    conversion_fee: int = 0
    card_id: uuid.UUID | None = None


class CardTransactions(Page, kw_only=True):
    items: list[CardTransaction]


def transaction_page(rows, page: pages.PageRequest) -> CardTransactions:
    """A page of card transactions as partners and administrators see them."""
    shown, cursor = pages.cut(rows, page, lambda r: (r["seq"],))
    return CardTransactions(items=[
        CardTransaction(
            authorization_id=r["id"], card_id=r["card_id"], balance_id=r["balance_id"],
            type=r["type"], amount=r["amount"], currency=r["currency"], decision=r["decision"],
            response_code=r["response_code"], reason=r["reason"],
            approved_amount=r["approved_amount"], merchant_name=r["merchant_name"],
            created_at=r["created_at"], events=msgspec.json.decode(r["events"]),
            billing_amount=r["billing_amount"], transaction_fee=r["transaction_fee"],
            conversion_fee=r["conversion_fee"])
        for r in shown], next_cursor=cursor)


@route("GET", "/secure/customers/{customerId}/transactions", channel=Channel.PARTNER, response=CardTransactions,
       tags=("network",), summary="A customer's card authorizations with their reversals and clearings")
async def customer_transactions(ctx: Context, _: None) -> CardTransactions:
    customer_id = ctx.path_id("customerId")
    page = pages.request(card_transactions.TRANSACTION_PAGES, ctx.request.query)
    async with ctx.pool.acquire() as conn:
        rows = await card_transactions.for_customer(conn, ctx.partner_id, customer_id, page)
    return transaction_page(rows, page)


@route("GET", "/secure/transactions", channel=Channel.PARTNER, response=CardTransactions,
       tags=("network",), summary="Every card authorization of the partner, its corporations' "
                                  "cards included, oldest first (cursor pagination)")
async def partner_transactions(ctx: Context, _: None) -> CardTransactions:
    page = pages.request(card_transactions.TRANSACTION_PAGES, ctx.request.query)
    async with ctx.pool.acquire() as conn:
        rows = await card_transactions.for_partner(conn, ctx.partner_id, page)
    return transaction_page(rows, page)
