"""Balances: open, read, reload, block/unblock/close, and their transaction history."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Literal

import asyncpg

from antaca_api import balances as repo
from antaca_api import partner_balances
from antaca_auth import charges
from antaca_api.customers import get_customer, require_verified
from antaca_api.errors import IdempotencyConflict, InsufficientFunds, InsufficientPartnerCredit, NotFound
from antaca_api.fields import Amount, Currency, Reference
from antaca_api.routing import Channel, Context, route
from antaca_api.schema import Body, Page
from antaca_auth.accounts import AccountKind, available_balance, posted_balance
from antaca_auth.codes import TransferCode, code_name
from antaca_auth.thresholds import check_crossings
from antaca_auth.transfers import ResultCode, Transfer

log = logging.getLogger(__name__)

RELOAD_NAMESPACE = uuid.UUID("0f5d7a52-3c1b-4f7e-8d0e-6f1b2a9c4e11")


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


class Balances(Body):
    items: list[BalanceView]


def balance_view(row: asyncpg.Record, cards: list[BalanceCard] = ()) -> BalanceView:
    posted, available = repo.amounts(row)
    return BalanceView(
        balance_id=row["id"], currency=row["currency"], posted=posted, available=available,
        state=repo.BalanceState(row["state"]), created_at=row["created_at"], customer_id=row["customer_id"],
        dc_corporation_id=row["corporation_id"], cards=list(cards),
    )


async def cards_under(ctx: Context, conn: asyncpg.Connection, balance_ids: list[uuid.UUID]) -> dict:
    """Each balance's cards; the app does not see ordered physical cards until they are linked."""
    hidden = ["REMOVED", "ORDERED"] if ctx.customer is not None else ["REMOVED"]
    rows = await conn.fetch(
        """SELECT id, balance_id, kind, state, bin, last4 FROM cards
           WHERE balance_id = ANY($1::uuid[]) AND state <> ALL($2::text[]) ORDER BY seq""",
        balance_ids, hidden,
    )
    by_balance: dict[uuid.UUID, list[BalanceCard]] = {}
    for r in rows:
        masked = None if r["bin"] is None else f"{r['bin']}******{r['last4']}"
        by_balance.setdefault(r["balance_id"], []).append(
            BalanceCard(card_id=r["id"], kind=r["kind"], status=r["state"], masked_pan=masked))
    return by_balance


async def _customer_balance(
    conn: asyncpg.Connection, partner_id: uuid.UUID, customer_id: uuid.UUID, balance_id: uuid.UUID
) -> asyncpg.Record:
    row = await conn.fetchrow(
        repo.BALANCE_VIEW + " WHERE b.id = $1 AND b.customer_id = $2 AND b.partner_id = $3",
        balance_id, customer_id, partner_id,
    )
    if row is None:
        raise NotFound("no such balance")
    return row


async def _open(ctx: Context, customer_id: uuid.UUID, body: NewBalance) -> BalanceView:
    async with ctx.transaction() as conn:
        await require_verified(conn, ctx.partner_id, customer_id)
        balance_id = await repo.open_balance(
            conn, ctx.services.ledger, partner_id=ctx.partner_id, currency=body.currency, customer_id=customer_id,
            program_id=body.program_id, at=ctx.services.clock(),
        )
        return balance_view(await _customer_balance(conn, ctx.partner_id, customer_id, balance_id))


async def _list(ctx: Context, customer_id: uuid.UUID) -> Balances:
    async with ctx.pool.acquire() as conn:
        await get_customer(conn, ctx.partner_id, customer_id)
        rows = await conn.fetch(
            repo.BALANCE_VIEW + " WHERE b.customer_id = $1 AND b.partner_id = $2 ORDER BY b.seq",
            customer_id, ctx.partner_id,
        )
        cards = await cards_under(ctx, conn, [r["id"] for r in rows])
    return Balances(items=[balance_view(r, cards.get(r["id"], [])) for r in rows])


async def _get(ctx: Context, customer_id: uuid.UUID) -> BalanceView:
    async with ctx.pool.acquire() as conn:
        row = await _customer_balance(conn, ctx.partner_id, customer_id, ctx.path_id("balanceId"))
        cards = await cards_under(ctx, conn, [row["id"]])
    return balance_view(row, cards.get(row["id"], []))


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


class Transactions(Page, kw_only=True):
    items: list[Transaction]


async def _transactions(ctx: Context, customer_id: uuid.UUID) -> Transactions:
    limit = ctx.query_int("limit", 50, low=1, high=500)
    after = ctx.query_int("cursor", 0, low=0, high=2**62)
    async with ctx.pool.acquire() as conn:
        row = await _customer_balance(conn, ctx.partner_id, customer_id, ctx.path_id("balanceId"))
    statement = await ctx.services.ledger.statement(row["account_id"], after=after, limit=limit)
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
       tags=("balances",))
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
       response=ReloadResult,
       summary="Top up a balance (idempotent per reference): from the partner credit balance when the partner's "
               "programs in this currency are CREDIT-model, else from the partner's external funding",
       tags=("balances",))
async def reload(ctx: Context, body: Reload) -> ReloadResult:
    customer_id, balance_id = ctx.path_id("customerId"), ctx.path_id("balanceId")
    ledger = ctx.services.ledger
    async with ctx.pool.acquire() as conn:
        row = await _customer_balance(conn, ctx.partner_id, customer_id, balance_id)
        credit = await partner_balances.credit_account(conn, ctx.partner_id, row["currency"])
        if credit is None:
            async with conn.transaction():
                funding = await repo.partner_account(conn, ledger, ctx.partner_id, row["currency"],
                                                     AccountKind.EXTERNAL_FUNDING)
    transfer = Transfer(
        id=uuid.uuid5(RELOAD_NAMESPACE, f"{balance_id}:{body.reference}"), code=TransferCode.BALANCE_RELOAD,
        debit_account_id=credit or funding, credit_account_id=row["account_id"], amount=body.amount,
        currency=row["currency"], reference=body.reference,
    )
    async with ctx.pool.acquire() as conn, conn.transaction():
        await repo.require_active(conn, balance_id)  # the balance row before any ledger account: the lock order
        (result,) = (await ledger.write_batch(conn, [transfer])).results
        if result.code is ResultCode.EXISTS_WITH_DIFFERENT_FIELDS:
            raise IdempotencyConflict()
        if result.code is ResultCode.EXCEEDS_CREDITS and credit is not None:
            raise InsufficientPartnerCredit()
        if result.code in (ResultCode.EXCEEDS_CREDITS, ResultCode.OVERFLOWS_CREDITS, ResultCode.OVERFLOWS_DEBITS):
            raise InsufficientFunds("the balance cannot take this amount")
        assert result.code in (ResultCode.OK, ResultCode.EXISTS), result.code
        if credit is not None:
            await check_crossings(conn, [credit])
    # Money arrived: unpaid fees are collected now, in their own transaction (fee revenue accounts are
    # locked after the balance's, never while the top-up holds its funding account).
    try:
        await charges.collect_unpaid(ctx.pool, ledger, balance_id)
    except (asyncpg.PostgresError, OSError):  # the top-up stands; the fee job's sweep collects later
        log.exception("collecting unpaid fees after a top-up failed")
    async with ctx.pool.acquire() as conn:
        view = balance_view(await _customer_balance(conn, ctx.partner_id, customer_id, balance_id))
    return ReloadResult(transaction_id=transfer.id, amount=body.amount, reference=body.reference,
                        replayed=result.code is ResultCode.EXISTS, balance=view)


async def _change_state(ctx: Context, action: str) -> BalanceView:
    customer_id, balance_id = ctx.path_id("customerId"), ctx.path_id("balanceId")
    async with ctx.transaction() as conn:
        await _customer_balance(conn, ctx.partner_id, customer_id, balance_id)
        await repo.change_state(conn, balance_id, action)
        return balance_view(await _customer_balance(conn, ctx.partner_id, customer_id, balance_id))


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
       summary="Get any of the partner's balances (customer or corporate)", tags=("balances",))
async def get_partner_balance(ctx: Context, _: None) -> BalanceView:
    row = await ctx.pool.fetchrow(repo.BALANCE_VIEW + " WHERE b.id = $1 AND b.partner_id = $2",
                                  ctx.path_id("balanceId"), ctx.partner_id)
    if row is None:
        raise NotFound("no such balance")
    return balance_view(row)


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
       summary="My balance's transaction history", tags=("balances",))
async def transactions_mine(ctx: Context, _: None) -> Transactions:
    return await _transactions(ctx, ctx.customer.customer_id)
