"""Customer service on the admin channel: search customers, read a customer's file (KYC
history, balances, masked cards, transactions), and decide a manual KYC review."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from msgspec import Meta

from antaca_api import card_transactions, customer_service, pages
from antaca_api import customers as repo
from antaca_api.customers import ReviewDecision
from antaca_api.domain_errors import ValidationFailed
from antaca_api.kyc import KycStatus
from antaca_api.routes.balances import (
    BalanceView,
    Transactions,
    balance_view,
    card_views,
    transactions_view,
)
from antaca_api.routes.customers import Customer, customer_view
from antaca_api.routes.network import CardTransactions, transaction_page
from antaca_api.routing import ADMIN_MANAGER, PAGE_SIZE_MAX, Channel, Context, route
from antaca_api.schema import Body, Page


class AdminCustomer(Customer, kw_only=True):
    partner_id: uuid.UUID


class AdminCustomers(Page, kw_only=True):
    items: list[AdminCustomer]


def admin_customer_view(row) -> AdminCustomer:
    return AdminCustomer(**{f: getattr(customer_view(row), f) for f in Customer.__struct_fields__},
                         partner_id=row["partner_id"])


def _query_uuid(ctx: Context, name: str) -> uuid.UUID | None:
    raw = ctx.request.query.get(name)
    if raw is None:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ValidationFailed(f"query parameter {name} must be a UUID") from None


SEARCH_PARAMETERS = tuple(
    {"name": name, "in": "query", "required": False, "schema": schema} for name, schema in (
        ("email", {"type": "string"}), ("phone", {"type": "string"}), ("name", {"type": "string"}),
        ("partnerId", {"type": "string", "format": "uuid"})))


@route("GET", "/admin/customers", channel=Channel.ADMIN, response=AdminCustomers,
       page_size_max=repo.SEARCH_PAGE_SIZE_MAX, query=SEARCH_PARAMETERS,
       summary="Search customers by e-mail, phone, name (part of it) and partner; every criterion "
               "given must match (cursor pagination)", tags=("customer service",))
async def search_customers(ctx: Context, _: None) -> AdminCustomers:
    limit = ctx.page_size()
    after = ctx.query_int("cursor", 0, low=0, high=2**62)
    query = ctx.request.query
    rows = await repo.search(ctx.pool, partner_scope=ctx.admin.partner_id,
                             partner_id=_query_uuid(ctx, "partnerId"), email=query.get("email"),
                             phone=query.get("phone"), name=query.get("name"), after=after,
                             limit=limit)
    return AdminCustomers(items=[admin_customer_view(r) for r in rows],
                          next_cursor=str(rows[-1]["seq"]) if len(rows) == limit else None)


class AdminKycEvent(Body):
    status: KycStatus
    source: str  # ANTACA_KYC (the provider), PARTNER, REGISTRATION or MANUAL_REVIEW
    reason: str | None
    created_at: datetime
    admin_id: uuid.UUID | None = None  # the reviewer, for MANUAL_REVIEW


class CustomerFile(Body):
    customer: AdminCustomer
    kyc_history: list[AdminKycEvent]
    balances: list[BalanceView]  # with their cards, masked PAN only


def kyc_views(rows) -> list[AdminKycEvent]:
    return [AdminKycEvent(status=KycStatus(r["status"]), source=r["source"], reason=r["reason"],
                          created_at=r["created_at"], admin_id=r["admin_id"]) for r in rows]


@route("GET", "/admin/customers/{customerId}", channel=Channel.ADMIN, response=CustomerFile,
       summary="A customer's file: data, KYC history, balances and their cards (masked)",
       tags=("customer service",))
async def customer_file(ctx: Context, _: None) -> CustomerFile:
    async with ctx.pool.acquire() as conn:
        found = await customer_service.customer_file(conn, ctx.admin.partner_id,
                                                     ctx.path_id("customerId"))
    return CustomerFile(
        customer=admin_customer_view(found.customer), kyc_history=kyc_views(found.kyc_history),
        balances=[balance_view(b, card_views(found.cards.get(b["id"], [])))
                  for b in found.balances])


@route("GET", "/admin/customers/{customerId}/transactions", channel=Channel.ADMIN,
       response=CardTransactions,
       summary="A customer's card authorizations with their reversals and clearings",
       tags=("customer service",))
async def customer_transactions(ctx: Context, _: None) -> CardTransactions:
    page = pages.request(card_transactions.TRANSACTION_PAGES, ctx.request.query)
    async with ctx.pool.acquire() as conn:
        rows = await customer_service.customer_transactions(conn, ctx.admin.partner_id,
                                                            ctx.path_id("customerId"), page)
    return transaction_page(rows, page)


@route("GET", "/admin/customers/{customerId}/balances/{balanceId}/transactions",
       channel=Channel.ADMIN, response=Transactions, page_size_max=PAGE_SIZE_MAX,
       summary="One of the customer's balances: its ledger history, oldest first "
               "(cursor pagination)", tags=("customer service",))
async def balance_transactions(ctx: Context, _: None) -> Transactions:
    limit = ctx.page_size()
    after = ctx.query_int("cursor", 0, low=0, high=2**62)
    row, statement = await customer_service.balance_statement(
        ctx.pool, ctx.services.ledger, ctx.admin.partner_id, ctx.path_id("customerId"),
        ctx.path_id("balanceId"), after=after, limit=limit)
    return transactions_view(row, statement)


class KycReview(Body):
    decision: ReviewDecision
    reason: Annotated[str, Meta(min_length=1, max_length=500)] | None = None  # REJECT needs one


class KycReviewResult(Body):
    customer: AdminCustomer
    kyc_history: list[AdminKycEvent]


@route("POST", "/admin/customers/{customerId}/kyc", channel=Channel.ADMIN, roles=ADMIN_MANAGER,
       body=KycReview, response=KycReviewResult,
       summary="Manual KYC review: approve (VERIFIED) or reject with a reason (REJECTED); audited",
       tags=("customer service",))
async def review_kyc(ctx: Context, body: KycReview) -> KycReviewResult:
    customer_id = ctx.path_id("customerId")
    ctx.audit_target = f"customer:{customer_id}"
    async with ctx.transaction() as conn:
        customer, history = await repo.review_kyc(conn, ctx.admin.partner_id, customer_id,
                                                  body.decision, body.reason, ctx.admin.admin_id)
    return KycReviewResult(customer=admin_customer_view(customer), kyc_history=kyc_views(history))
