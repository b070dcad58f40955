"""Partner deposit and credit balances: created, read, re-thresholded and reloaded by admins; read by
the partner itself."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import asyncpg
from msgspec import Meta

from antaca_api import pages
from antaca_api import partner_balances as repo
from antaca_api.fields import Amount, Currency, Reference
from antaca_api.partner_balances import PartnerBalanceKind
from antaca_api.routing import ADMIN_ONLY, Channel, Context, route
from antaca_api.schema import Body, Page
from antaca_auth.accounts import AccountKind, Counters, available_balance, posted_balance

Threshold = Annotated[int, Meta(ge=0, le=2**63 - 1, description="minor units; alerts fire below it")]


class NewPartnerBalance(Body):
    kind: PartnerBalanceKind
    currency: Currency
    low_balance_threshold: Threshold | None = None


class PartnerBalance(Body):
    balance_id: uuid.UUID
    partner_id: uuid.UUID
    kind: PartnerBalanceKind
    currency: str
    posted: int
    available: int  # posted minus what authorizations hold
    low_balance_threshold: int | None
    below_threshold: bool  # an alert was sent and the balance has not been reloaded above the threshold since
    created_at: datetime


class PartnerBalances(Page, kw_only=True):
    items: list[PartnerBalance]


def view(row: asyncpg.Record) -> PartnerBalance:
    kind = AccountKind(row["kind"])
    counters = Counters(row["debits_posted"], row["credits_posted"], row["debits_pending"], row["credits_pending"])
    return PartnerBalance(
        balance_id=row["account_id"], partner_id=row["partner_id"], kind=repo.KIND_OF[row["kind"]],
        currency=row["currency"], posted=posted_balance(kind, counters), available=available_balance(kind, counters),
        low_balance_threshold=row["low_balance_threshold"], below_threshold=row["below_threshold"],
        created_at=row["created_at"])


@route("POST", "/admin/partners/{partnerId}/balances", channel=Channel.ADMIN, roles=ADMIN_ONLY,
       body=NewPartnerBalance, response=PartnerBalance, status=201,
       summary="Create a partner deposit or credit balance (one of each kind per currency)",
       tags=("partner balances",))
async def create_partner_balance(ctx: Context, body: NewPartnerBalance) -> PartnerBalance:
    partner_id = ctx.path_id("partnerId")
    async with ctx.transaction() as conn:
        row = await repo.open_for_partner(conn, ctx.services.ledger, partner_id, body.kind,
                                          body.currency, body.low_balance_threshold)
        ctx.audit_target = f"partner-balance:{row['account_id']}"
    return view(row)


@route("GET", "/admin/partners/{partnerId}/balances", channel=Channel.ADMIN, response=PartnerBalances,
       summary="A partner's deposit and credit balances", tags=("partner balances",))
async def list_partner_balances(ctx: Context, _: None) -> PartnerBalances:
    partner_id = ctx.path_id("partnerId")
    page = pages.request(repo.PARTNER_BALANCE_PAGES, ctx.request.query)
    async with ctx.pool.acquire() as conn:
        rows = await repo.balances_of_partner(conn, partner_id, page)
    return _page(rows, page)


@route("GET", "/admin/partners/{partnerId}/balances/{balanceId}", channel=Channel.ADMIN, response=PartnerBalance,
       summary="One partner deposit or credit balance", tags=("partner balances",))
async def get_partner_balance(ctx: Context, _: None) -> PartnerBalance:
    async with ctx.pool.acquire() as conn:
        return view(await repo.find(conn, ctx.path_id("partnerId"), ctx.path_id("balanceId")))


class ThresholdChange(Body):
    low_balance_threshold: Threshold | None


@route("PUT", "/admin/partners/{partnerId}/balances/{balanceId}/threshold", channel=Channel.ADMIN,
       roles=ADMIN_ONLY, body=ThresholdChange, response=PartnerBalance,
       summary="Set or clear the low-balance alert threshold", tags=("partner balances",))
async def set_threshold(ctx: Context, body: ThresholdChange) -> PartnerBalance:
    partner_id, account_id = ctx.path_id("partnerId"), ctx.path_id("balanceId")
    ctx.audit_target = f"partner-balance:{account_id}"
    async with ctx.transaction() as conn:
        row = await repo.change_threshold(conn, partner_id, account_id, body.low_balance_threshold)
    return view(row)


class PartnerReload(Body):
    amount: Amount
    bank_reference: Reference  # the incoming bank transfer's reference: the same one books once


class PartnerReloadResult(Body):
    transaction_id: uuid.UUID
    amount: int
    bank_reference: str
    replayed: bool  # this bank reference had already been booked: nothing moved this time
    balance: PartnerBalance


@route("POST", "/admin/partners/{partnerId}/balances/{balanceId}/reload", channel=Channel.ADMIN, roles=ADMIN_ONLY,
       body=PartnerReload, response=PartnerReloadResult, idempotent=True,
       summary="Book the partner's bank transfer onto its deposit or credit balance (idempotent per bank reference)",
       tags=("partner balances",))
async def reload_partner_balance(ctx: Context, body: PartnerReload) -> PartnerReloadResult:
    partner_id, account_id = ctx.path_id("partnerId"), ctx.path_id("balanceId")
    ctx.audit_target = f"partner-balance:{account_id}"
    booked = await repo.reload(ctx.pool, ctx.services.ledger, partner_id, account_id, body.amount,
                               body.bank_reference, transaction=ctx.transaction)
    return PartnerReloadResult(transaction_id=booked.transfer_id, amount=body.amount,
                               bank_reference=body.bank_reference, replayed=booked.replayed,
                               balance=view(booked.balance))


@route("GET", "/secure/partner/balances", channel=Channel.PARTNER, response=PartnerBalances,
       summary="The calling partner's own deposit and credit balances", tags=("partner balances",))
async def my_partner_balances(ctx: Context, _: None) -> PartnerBalances:
    page = pages.request(repo.PARTNER_BALANCE_PAGES, ctx.request.query)
    async with ctx.pool.acquire() as conn:
        return _page(await repo.list_for(conn, ctx.partner_id, page), page)


def _page(rows, page: pages.PageRequest) -> PartnerBalances:
    shown, cursor = pages.cut(rows, page, lambda r: (r["currency"], r["kind"]))
    return PartnerBalances(items=[view(r) for r in shown], next_cursor=cursor)
