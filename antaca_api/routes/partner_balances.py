"""Partner deposit and credit balances: created, read, re-thresholded and reloaded by admins; read by
the partner itself."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import asyncpg
from msgspec import Meta

from antaca_api import pages
from antaca_api import partner_balances as repo
from antaca_api.fields import Amount, Currency, Email, Reference
from antaca_api.partner_balances import Approval, LineCategory, PartnerBalanceKind
from antaca_api.routing import ADMIN_ONLY, Channel, Context, route
from antaca_api.schema import Body, Page
from antaca_auth.accounts import AccountKind, Counters, available_balance, posted_balance
from antaca_auth.codes import code_name

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
    approval: Approval = Approval.APPROVED  # PENDING: opened by the partner, not yet approved
    alert_emails: list[str] | None = None  # None: alerts go to the partner's contact e-mail


class PartnerBalances(Page, kw_only=True):
    items: list[PartnerBalance]


def view(row: asyncpg.Record) -> PartnerBalance:
    kind = AccountKind(row["kind"])
    counters = Counters(row["debits_posted"], row["credits_posted"], row["debits_pending"], row["credits_pending"])
    return PartnerBalance(
        balance_id=row["account_id"], partner_id=row["partner_id"], kind=repo.KIND_OF[row["kind"]],
        currency=row["currency"], posted=posted_balance(kind, counters), available=available_balance(kind, counters),
        low_balance_threshold=row["low_balance_threshold"], below_threshold=row["below_threshold"],
        created_at=row["created_at"], approval=repo.Approval(row["approval"]),
        alert_emails=None if row["alert_emails"] is None else list(row["alert_emails"]))


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


@route("POST", "/secure/partner/balances", channel=Channel.PARTNER, body=NewPartnerBalance,
       response=PartnerBalance, status=201,
       summary="Open the calling partner's own deposit or credit balance in the currency of one of "
               "its programs (PENDING until an administrator approves it, when the service asks "
               "for approval)", tags=("partner balances",))
async def open_my_partner_balance(ctx: Context, body: NewPartnerBalance) -> PartnerBalance:
    async with ctx.transaction() as conn:
        row = await repo.open_own(conn, ctx.services.ledger, ctx.partner_id, body.kind,
                                  body.currency, body.low_balance_threshold,
                                  approval_required=ctx.services.settings.partner_balance_approval)
    return view(row)


@route("GET", "/secure/partner/balances/{balanceId}", channel=Channel.PARTNER,
       response=PartnerBalance, summary="One of the calling partner's own balances: its level",
       tags=("partner balances",))
async def my_partner_balance(ctx: Context, _: None) -> PartnerBalance:
    async with ctx.pool.acquire() as conn:
        return view(await repo.find(conn, ctx.partner_id, ctx.path_id("balanceId")))


class AlertSettings(Body):
    low_balance_threshold: Threshold | None
    # None: the partner's contact e-mail; []: no e-mail (the webhook still fires).
    alert_emails: Annotated[list[Email], Meta(max_length=repo.ALERT_EMAILS_MAX_COUNT)] | None = None


@route("PUT", "/secure/partner/balances/{balanceId}/alerts", channel=Channel.PARTNER,
       body=AlertSettings, response=PartnerBalance,
       summary="Set the own balance's low-balance threshold and the e-mails its alert goes to",
       tags=("partner balances",))
async def set_my_alerts(ctx: Context, body: AlertSettings) -> PartnerBalance:
    async with ctx.transaction() as conn:
        row = await repo.change_alerts(conn, ctx.partner_id, ctx.path_id("balanceId"),
                                       body.low_balance_threshold, body.alert_emails)
    return view(row)


class StatementLine(Body):
    transaction_id: uuid.UUID
    category: LineCategory
    type: str  # the business reason, e.g. CARD_PAYMENT_DEPOSIT
    kind: Literal["single", "pending", "post_pending", "void_pending", "expire_pending"]
    direction: Literal["CREDIT", "DEBIT"]
    amount: int
    posted_change: int  # what the line did to the posted level (holds and releases: 0)
    currency: str
    reference: str | None
    created_at: datetime
    posted_after: int
    available_after: int


class PartnerStatement(Page, kw_only=True):
    balance: PartnerBalance
    items: list[StatementLine]


async def _statement(ctx: Context, partner_id: uuid.UUID) -> PartnerStatement:
    limit = ctx.page_size()
    row, page = await repo.statement(ctx.pool, ctx.services.ledger, partner_id,
                                     ctx.path_id("balanceId"),
                                     cursor=ctx.request.query.get("cursor"), limit=limit)
    kind = AccountKind(row["kind"])
    items = [StatementLine(
        transaction_id=e.transfer.id, category=repo.line_category(e.transfer.code, e.transfer.kind),
        type=code_name(e.transfer.code), kind=str(e.transfer.kind),
        direction="DEBIT" if e.side == "debit" else "CREDIT", amount=e.transfer.amount,
        posted_change=repo.posted_change(e.side, str(e.transfer.kind), e.transfer.amount),
        currency=e.transfer.currency, reference=e.transfer.reference,
        created_at=e.transfer.created_at, posted_after=posted_balance(kind, e.balance),
        available_after=available_balance(kind, e.balance)) for e in page.entries]
    cursor = None if page.next_after is None else repo.encode_cursor(page.next_after)
    return PartnerStatement(balance=view(row), items=items, next_cursor=cursor)


@route("GET", "/secure/partner/balances/{balanceId}/statement", channel=Channel.PARTNER,
       response=PartnerStatement, page_size_max=repo.STATEMENT_PAGE_SIZE_MAX,
       summary="The own balance's statement: every charge, reload, release and fee, oldest first "
               "(opaque cursor pagination: pass nextCursor back as cursor)",
       tags=("partner balances",))
async def my_statement(ctx: Context, _: None) -> PartnerStatement:
    return await _statement(ctx, ctx.partner_id)


@route("GET", "/admin/partners/{partnerId}/balances/{balanceId}/statement", channel=Channel.ADMIN,
       response=PartnerStatement, page_size_max=repo.STATEMENT_PAGE_SIZE_MAX,
       summary="A partner balance's statement, oldest first (opaque cursor pagination)",
       tags=("partner balances",))
async def partner_statement(ctx: Context, _: None) -> PartnerStatement:
    return await _statement(ctx, ctx.path_id("partnerId"))


@route("POST", "/admin/partners/{partnerId}/balances/{balanceId}/approve", channel=Channel.ADMIN,
       roles=ADMIN_ONLY, response=PartnerBalance,
       summary="Approve a balance the partner opened itself (it takes reloads from then on)",
       tags=("partner balances",))
async def approve_partner_balance(ctx: Context, _: None) -> PartnerBalance:
    partner_id, account_id = ctx.path_id("partnerId"), ctx.path_id("balanceId")
    ctx.audit_target = f"partner-balance:{account_id}"
    async with ctx.transaction() as conn:
        return view(await repo.approve(conn, partner_id, account_id))


def _page(rows, page: pages.PageRequest) -> PartnerBalances:
    shown, cursor = pages.cut(rows, page, lambda r: (r["currency"], r["kind"]))
    return PartnerBalances(items=[view(r) for r in shown], next_cursor=cursor)
