"""Balances: open, read, reload, block/unblock/close, and their transaction history."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

import asyncpg

from antaca_api import balances as repo
from antaca_api import pages
from antaca_api.fields import Amount, Currency, Reference
from antaca_api.routing import Channel, Context, route
from antaca_api.schema import Body, Page
from antaca_auth.accounts import AccountKind, available_balance, posted_balance
from antaca_auth.codes import code_name


class NewBalance(Body):
    currency: Currency
    program_id: uuid.UUID | None = None  # whose fee schedule applies; default: the partner's only program in it


class BalanceCard(Body):
    card_id: uuid.UUID
    kind: str
    status: str
    masked_pan: str | None = None


class BalanceView(Body):
    balance_id: uuid.UUID
    currency: str
    posted: int  # minor units
    available: int  # posted minus holds
    state: repo.BalanceState
    created_at: datetime
    customer_id: uuid.UUID | None = None
    dc_corporation_id: uuid.UUID | None = None
    cards: list[BalanceCard] = []  # the cards issued under it (removed ones left out)


class Balances(Page, kw_only=True):
    items: list[BalanceView]


def balance_view(row: asyncpg.Record, cards: list[BalanceCard] = ()) -> BalanceView:
    posted, available = repo.amounts(row)
    return BalanceView(
        balance_id=row["id"], currency=row["currency"], posted=posted, available=available,
        state=repo.BalanceState(row["state"]), created_at=row["created_at"], customer_id=row["customer_id"],
        dc_corporation_id=row["corporation_id"], cards=list(cards),
    )


def hidden_card_states(ctx: Context) -> list[str]:
    """The app does not see ordered physical cards until they are linked."""
    return ["REMOVED", "ORDERED"] if ctx.customer is not None else ["REMOVED"]


def card_views(rows: list[asyncpg.Record]) -> list[BalanceCard]:
    return [
        BalanceCard(card_id=r["id"], kind=r["kind"], status=r["state"],
                    masked_pan=None if r["bin"] is None else f"{r['bin']}******{r['last4']}")
        for r in rows
    ]


async def _open(ctx: Context, customer_id: uuid.UUID, body: NewBalance) -> BalanceView:
    async with ctx.transaction() as conn:
        return balance_view(await repo.open_customer_balance(
            conn, ctx.services.ledger, partner_id=ctx.partner_id, customer_id=customer_id,
            currency=body.currency, program_id=body.program_id, at=ctx.services.clock()))


def _balance_page(rows, cards, page: pages.PageRequest) -> Balances:
    shown, cursor = pages.cut(rows, page, lambda r: (r["seq"],))
    return Balances(items=[balance_view(r, card_views(cards.get(r["id"], []))) for r in shown],
                    next_cursor=cursor)


async def _list(ctx: Context, customer_id: uuid.UUID) -> Balances:
    page = pages.request(repo.BALANCE_PAGES, ctx.request.query)
    async with ctx.pool.acquire() as conn:
        rows, cards = await repo.customer_balances(conn, ctx.partner_id, customer_id,
                                                   hidden_card_states(ctx), page)
    return _balance_page(rows, cards, page)


@route("GET", "/secure/balances", channel=Channel.PARTNER, response=Balances, tags=("balances",),
       summary="Every balance of the partner, its customers' and its corporations', in opening "
               "order (cursor pagination)")
async def list_partner_balances(ctx: Context, _: None) -> Balances:
    page = pages.request(repo.BALANCE_PAGES, ctx.request.query)
    async with ctx.pool.acquire() as conn:
        rows, cards = await repo.partner_balances(conn, ctx.partner_id, ["REMOVED"], page)
    return _balance_page(rows, cards, page)


async def _get(ctx: Context, customer_id: uuid.UUID) -> BalanceView:
    async with ctx.pool.acquire() as conn:
        row, cards = await repo.customer_balance_with_cards(
            conn, ctx.partner_id, customer_id, ctx.path_id("balanceId"), hidden_card_states(ctx))
    return balance_view(row, card_views(cards))


class Transaction(Body):
    transaction_id: uuid.UUID
    type: str  # the business reason, e.g. BALANCE_RELOAD
    kind: Literal["single", "pending", "post_pending", "void_pending", "expire_pending"]
    direction: Literal["CREDIT", "DEBIT"]
    amount: int
    currency: str
    reference: str | None
    created_at: datetime
    posted_after: int
    available_after: int


STATEMENT_PAGE_SIZE_MAX = 500


class Transactions(Page, kw_only=True):
    items: list[Transaction]


async def _transactions(ctx: Context, customer_id: uuid.UUID) -> Transactions:
    limit = ctx.page_size()
    after = ctx.query_int("cursor", 0, low=0, high=2**62)
    row, statement = await repo.customer_statement(
        ctx.pool, ctx.services.ledger, partner_id=ctx.partner_id, customer_id=customer_id,
        balance_id=ctx.path_id("balanceId"), after=after, limit=limit)
    return transactions_view(row, statement)


def transactions_view(row: asyncpg.Record, statement) -> Transactions:
    """A balance's ledger statement page as its transaction history."""
    kind = AccountKind(row["kind"])
    items = [
        Transaction(
            transaction_id=e.transfer.id, type=code_name(e.transfer.code), kind=str(e.transfer.kind),
            direction="DEBIT" if e.side == "debit" else "CREDIT", amount=e.transfer.amount,
            currency=e.transfer.currency, reference=e.transfer.reference, created_at=e.transfer.created_at,
            posted_after=posted_balance(kind, e.balance), available_after=available_balance(kind, e.balance),
        )
        for e in statement.entries
    ]
    return Transactions(items=items, next_cursor=None if statement.next_after is None else str(statement.next_after))


# --- partner channel -------------------------------------------------------------------------


@route("POST", "/secure/customers/{customerId}/balances", channel=Channel.PARTNER, body=NewBalance,
       response=BalanceView, status=201, summary="Open a balance for a VERIFIED customer", tags=("balances",))
async def open_for_customer(ctx: Context, body: NewBalance) -> BalanceView:
    return await _open(ctx, ctx.path_id("customerId"), body)


@route("GET", "/secure/customers/{customerId}/balances", channel=Channel.PARTNER, response=Balances,
       summary="List a customer's balances", tags=("balances",))
async def list_for_customer(ctx: Context, _: None) -> Balances:
    return await _list(ctx, ctx.path_id("customerId"))


@route("GET", "/secure/customers/{customerId}/balances/{balanceId}", channel=Channel.PARTNER,
       response=BalanceView, summary="Get a customer's balance", tags=("balances",))
async def get_for_customer(ctx: Context, _: None) -> BalanceView:
    return await _get(ctx, ctx.path_id("customerId"))


@route("GET", "/secure/customers/{customerId}/balances/{balanceId}/transactions", channel=Channel.PARTNER,
       response=Transactions, summary="A balance's transaction history, oldest first (cursor pagination)",
       tags=("balances",), page_size_max=STATEMENT_PAGE_SIZE_MAX)
async def transactions_for_customer(ctx: Context, _: None) -> Transactions:
    return await _transactions(ctx, ctx.path_id("customerId"))


class Reload(Body):
    amount: Amount
    reference: Reference


class ReloadResult(Body):
    transaction_id: uuid.UUID
    amount: int
    reference: str
    replayed: bool  # true when this reference had already been booked: nothing moved this time
    balance: BalanceView


@route("POST", "/secure/customers/{customerId}/balances/{balanceId}/reload", channel=Channel.PARTNER, body=Reload,
       response=ReloadResult, idempotent=True,
       summary="Top up a balance (idempotent per reference): from the partner credit balance when the partner's "
               "programs in this currency are CREDIT-model, else from the partner's external funding",
       tags=("balances",))
async def reload(ctx: Context, body: Reload) -> ReloadResult:
    outcome = await repo.reload_customer_balance(
        ctx.pool, ctx.services.ledger, partner_id=ctx.partner_id,
        customer_id=ctx.path_id("customerId"), balance_id=ctx.path_id("balanceId"),
        amount=body.amount, reference=body.reference)
    return ReloadResult(transaction_id=outcome.transaction_id, amount=body.amount,
                        reference=body.reference, replayed=outcome.replayed,
                        balance=balance_view(outcome.balance))


async def _change_state(ctx: Context, action: str) -> BalanceView:
    async with ctx.transaction() as conn:
        return balance_view(await repo.change_customer_balance_state(
            conn, ctx.partner_id, ctx.path_id("customerId"), ctx.path_id("balanceId"), action))


for _action, _summary in (
    ("block", "Block a balance: no reload or spending until unblocked"),
    ("unblock", "Unblock a blocked balance"),
    ("close", "Close a balance (final; only at zero with nothing pending)"),
):
    async def _handler(ctx: Context, _: None, _action: str = _action) -> BalanceView:
        return await _change_state(ctx, _action)

    route("POST", f"/secure/customers/{{customerId}}/balances/{{balanceId}}/{_action}", channel=Channel.PARTNER,
          response=BalanceView, summary=_summary, tags=("balances",))(_handler)


@route("GET", "/secure/balances/{balanceId}", channel=Channel.PARTNER, response=BalanceView,
       summary="Get any of the partner's balances (customer or corporate) with its cards",
       tags=("balances",))
async def get_partner_balance(ctx: Context, _: None) -> BalanceView:
    async with ctx.pool.acquire() as conn:
        row, cards = await repo.partner_balance_with_cards(conn, ctx.partner_id,
                                                           ctx.path_id("balanceId"), ["REMOVED"])
    return balance_view(row, card_views(cards))


# --- customer channel ------------------------------------------------------------------------


@route("POST", "/customers/me/balances", channel=Channel.CUSTOMER, body=NewBalance, response=BalanceView,
       status=201, summary="Open a balance (the customer must be VERIFIED)", tags=("balances",))
async def open_mine(ctx: Context, body: NewBalance) -> BalanceView:
    return await _open(ctx, ctx.customer.customer_id, body)


@route("GET", "/customers/me/balances", channel=Channel.CUSTOMER, response=Balances, summary="My balances",
       tags=("balances",))
async def list_mine(ctx: Context, _: None) -> Balances:
    return await _list(ctx, ctx.customer.customer_id)


@route("GET", "/customers/me/balances/{balanceId}", channel=Channel.CUSTOMER, response=BalanceView,
       summary="One of my balances", tags=("balances",))
async def get_mine(ctx: Context, _: None) -> BalanceView:
    return await _get(ctx, ctx.customer.customer_id)


@route("GET", "/customers/me/balances/{balanceId}/transactions", channel=Channel.CUSTOMER, response=Transactions,
       summary="My balance's transaction history", tags=("balances",),
       page_size_max=STATEMENT_PAGE_SIZE_MAX)
async def transactions_mine(ctx: Context, _: None) -> Transactions:
    return await _transactions(ctx, ctx.customer.customer_id)
