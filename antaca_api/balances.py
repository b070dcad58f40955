"""Balances (the product's "accounts"): a ledger account plus its owner and state.

Users' and corporations' money lives in ledger accounts that can never go below zero; the
`balances` row says whose it is and whether it may move (ACTIVE, BLOCKED, CLOSED).
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from antaca_api import pages
from antaca_api.customers import get_customer, require_verified
from antaca_api.domain_errors import (
    BalanceNotActive,
    BalanceNotEmpty,
    IdempotencyConflict,
    InsufficientFunds,
    InsufficientPartnerCredit,
    InvalidStateTransition,
    NotFound,
    ProgramCurrencyMismatch,
    UnsupportedCurrency,
)
from antaca_auth import charges, events
from antaca_auth.accounts import (
    AccountKind,
    Counters,
    NewAccount,
    available_balance,
    posted_balance,
)
from antaca_auth.charges import charge_flat
from antaca_auth.codes import TransferCode
from antaca_auth.fees import FeeType
from antaca_auth.invariants import require
from antaca_auth.ledger import Ledger, Statement
from antaca_auth.thresholds import check_crossings
from antaca_auth.transfers import ResultCode, Transfer

log = logging.getLogger(__name__)

RELOAD_NAMESPACE = uuid.UUID("0f5d7a52-3c1b-4f7e-8d0e-6f1b2a9c4e11")

# Reads the balance a request names, NOT_FOUND when it is not the caller's to use.
FindBalance = Callable[[asyncpg.Connection], Awaitable[asyncpg.Record]]
CardsByBalance = dict[uuid.UUID, list[asyncpg.Record]]


class BalanceState(enum.StrEnum):
    ACTIVE = "ACTIVE"
    BLOCKED = "BLOCKED"
    CLOSED = "CLOSED"


# Which state changes are allowed, and by which action.
TRANSITIONS: dict[str, tuple[set[BalanceState], BalanceState]] = {
    "block": ({BalanceState.ACTIVE}, BalanceState.BLOCKED),
    "unblock": ({BalanceState.BLOCKED}, BalanceState.ACTIVE),
    "close": ({BalanceState.ACTIVE, BalanceState.BLOCKED}, BalanceState.CLOSED),
}


# The partner event of each state a balance can be moved to (antaca_auth/events.py).
BALANCE_EVENT_TYPES = {BalanceState.BLOCKED: events.BALANCE_BLOCKED,
                       BalanceState.ACTIVE: events.BALANCE_UNBLOCKED,
                       BalanceState.CLOSED: events.BALANCE_CLOSED}


def next_state(action: str, current: BalanceState) -> BalanceState:
    """The state after `action`, or InvalidStateTransition."""
    allowed_from, target = TRANSITIONS[action]
    if current not in allowed_from:
        raise InvalidStateTransition(f"cannot {action} a {current} balance")
    return target


def can_close(balance: Counters) -> bool:
    """Only an empty balance with nothing pending either way can be closed."""
    return balance.debits_posted == balance.credits_posted and balance.debits_pending == balance.credits_pending == 0


BALANCE_VIEW = """
    SELECT b.id, b.partner_id, b.customer_id, b.corporation_id, b.currency, b.state, b.created_at, b.seq,
           a.id AS account_id, a.kind, a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending
    FROM balances b JOIN accounts a ON a.id = b.account_id"""

CUSTOMER_BALANCE = BALANCE_VIEW + " WHERE b.id = $1 AND b.customer_id = $2 AND b.partner_id = $3"
CUSTOMER_BALANCES = BALANCE_VIEW + """ WHERE b.customer_id = $1 AND b.partner_id = $2 AND b.seq > $3
    ORDER BY b.seq LIMIT $4"""
# The partner's balances, its customers' and its corporations' alike, in opening order.
PARTNER_BALANCES = BALANCE_VIEW + """ WHERE b.partner_id = $1 AND b.seq > $2
    ORDER BY b.seq LIMIT $3"""
BALANCE_PAGES = pages.Keyset("balances", tuple[int])
# A balance's transactions: its ledger statement, by ledger sequence (antaca_auth/ledger.py).
STATEMENT_PAGES = pages.Keyset("balance-transactions", tuple[int])
PARTNER_BALANCE = BALANCE_VIEW + " WHERE b.id = $1 AND b.partner_id = $2"
CORPORATE_BALANCE = BALANCE_VIEW + """
    WHERE b.id = $1 AND b.partner_id = $2 AND b.corporation_id IS NOT NULL"""
CORPORATION_BALANCES = BALANCE_VIEW + """
    WHERE b.corporation_id = $1 AND b.partner_id = $2 AND b.seq > $3 ORDER BY b.seq LIMIT $4"""
BALANCE_BY_ID = BALANCE_VIEW + " WHERE b.id = $1"

CARDS_UNDER = """
    SELECT id, balance_id, kind, state, bin, last4 FROM cards
    WHERE balance_id = ANY($1::uuid[]) AND state <> ALL($2::text[]) ORDER BY seq"""


def counters(row: asyncpg.Record) -> Counters:
    return Counters(row["debits_posted"], row["credits_posted"], row["debits_pending"], row["credits_pending"])


def amounts(row: asyncpg.Record) -> tuple[int, int]:
    """(posted, available) of a balance row from BALANCE_VIEW."""
    kind, b = AccountKind(row["kind"]), counters(row)
    return posted_balance(kind, b), available_balance(kind, b)


async def check_currency(ledger: Ledger, currency: str) -> None:
    if currency not in await ledger.currencies():
        raise UnsupportedCurrency()


async def open_balance(
    conn: asyncpg.Connection,
    ledger: Ledger,
    *,
    partner_id: uuid.UUID,
    currency: str,
    customer_id: uuid.UUID | None = None,
    corporation_id: uuid.UUID | None = None,
    program_id: uuid.UUID | None = None,
    at: datetime | None = None,
) -> uuid.UUID:
    """Create a balance at zero for a customer or a corporation, in the caller's transaction, and charge
    its program's account creation fee (unpaid until money arrives, as the balance starts empty).

    The program is the one named, else the partner's only program in the currency (else none: no fees).
    """
    require((customer_id is None) != (corporation_id is None), "a balance has exactly one owner")
    await check_currency(ledger, currency)
    balance_id = uuid.uuid4()
    kind = AccountKind.USER_BALANCE if customer_id else AccountKind.CORPORATE_BALANCE
    owner = f"customer:{customer_id}" if customer_id else f"corporation:{corporation_id}"
    (result,) = await ledger.create_accounts_in(
        conn,
        [NewAccount(id=balance_id, currency=currency, kind=kind, owner_ref=owner, debits_must_not_exceed_credits=True)],
    )
    require(result.code == "ok", f"a balance's account could not be created: {result.code}")
    if program_id is None:
        programs = await conn.fetch("SELECT id FROM card_programs WHERE partner_id = $1 AND currency = $2",
                                    partner_id, currency)
        program_id = programs[0]["id"] if len(programs) == 1 else None
    elif await conn.fetchval("SELECT currency FROM card_programs WHERE id = $1 AND partner_id = $2",
                             program_id, partner_id) != currency:
        raise ProgramCurrencyMismatch("the card program is not the partner's or not in the balance's currency")
    await conn.execute(
        """INSERT INTO balances (id, partner_id, customer_id, corporation_id, account_id, currency, program_id)
           VALUES ($1, $2, $3, $4, $1, $5, $6)""",
        balance_id, partner_id, customer_id, corporation_id, currency, program_id,
    )
    await events.record(conn, partner_id, events.BALANCE_OPENED, balance_id, {
        "balanceId": balance_id, "currency": currency, "customerId": customer_id,
        "corporationId": corporation_id, "programId": program_id})
    await charge_flat(conn, ledger, program_id=program_id, fee_type=FeeType.BALANCE_CREATION,
                      cause=f"balance:{balance_id}", balance_id=balance_id, account_id=balance_id, currency=currency,
                      card_id=None, at=at or datetime.now(UTC))
    return balance_id


async def locked_balance(conn: asyncpg.Connection, balance_id: uuid.UUID, *, share: bool) -> asyncpg.Record:
    """The balance row, locked (before any ledger account: the fixed lock order)."""
    row = await conn.fetchrow(
        f"SELECT id, state, account_id, currency, partner_id FROM balances WHERE id = $1 "
        f"FOR {'SHARE' if share else 'UPDATE'}",
        balance_id,
    )
    if row is None:
        raise NotFound("no such balance")
    return row


async def require_active(conn: asyncpg.Connection, balance_id: uuid.UUID) -> asyncpg.Record:
    """Lock the balance against state changes for this transaction and check it is ACTIVE."""
    row = await locked_balance(conn, balance_id, share=True)
    if row["state"] != BalanceState.ACTIVE:
        raise BalanceNotActive()
    return row


async def change_state(conn: asyncpg.Connection, balance_id: uuid.UUID, action: str) -> BalanceState:
    """Apply block/unblock/close to a balance, in the caller's transaction."""
    row = await locked_balance(conn, balance_id, share=False)
    target = next_state(action, BalanceState(row["state"]))
    if target is BalanceState.CLOSED:
        # Lock the account too, so no transfer slips in between the check and the close.
        account = await conn.fetchrow(
            "SELECT debits_posted, credits_posted, debits_pending, credits_pending FROM accounts WHERE id = $1 "
            "FOR UPDATE",
            row["account_id"],
        )
        if not can_close(counters(account)):
            raise BalanceNotEmpty()
    await conn.execute("UPDATE balances SET state = $2, updated_at = now() WHERE id = $1", balance_id, str(target))
    await events.record(conn, row["partner_id"], BALANCE_EVENT_TYPES[target], balance_id, {
        "balanceId": balance_id, "state": str(target), "previousState": row["state"]})
    return target


def partner_account_id(partner_id: uuid.UUID, kind: AccountKind, currency: str) -> uuid.UUID:
    """The ledger id of a partner's account of a kind and currency: deterministic, so two first uses at
    once create the same account, idempotently."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"antaca:partner:{partner_id}:{kind}:{currency}")


async def partner_account(
    conn: asyncpg.Connection, ledger: Ledger, partner_id: uuid.UUID, currency: str, kind: AccountKind
) -> uuid.UUID:
    """The partner's ledger account of this kind and currency, created on first use."""
    account_id = await conn.fetchval(
        "SELECT account_id FROM partner_accounts WHERE partner_id = $1 AND currency = $2 AND kind = $3",
        partner_id, currency, str(kind),
    )
    if account_id is not None:
        return account_id
    account_id = partner_account_id(partner_id, kind, currency)
    flags = kind in (AccountKind.PARTNER_DEPOSIT, AccountKind.PARTNER_CREDIT)
    await ledger.create_accounts_in(
        conn,
        [NewAccount(id=account_id, currency=currency, kind=kind, owner_ref=f"partner:{partner_id}",
                    debits_must_not_exceed_credits=flags)],
    )
    await conn.execute(
        """INSERT INTO partner_accounts (partner_id, currency, kind, account_id) VALUES ($1, $2, $3, $4)
           ON CONFLICT DO NOTHING""",
        partner_id, currency, str(kind), account_id,
    )
    return account_id


async def customer_balance(conn: asyncpg.Connection | asyncpg.Pool, partner_id: uuid.UUID,
                           customer_id: uuid.UUID, balance_id: uuid.UUID) -> asyncpg.Record:
    """A customer's balance row (BALANCE_VIEW); another customer's or partner's is NOT_FOUND."""
    row = await conn.fetchrow(CUSTOMER_BALANCE, balance_id, customer_id, partner_id)
    if row is None:
        raise NotFound("no such balance")
    return row


async def partner_balance(conn: asyncpg.Connection | asyncpg.Pool, partner_id: uuid.UUID,
                          balance_id: uuid.UUID) -> asyncpg.Record:
    """Any of the partner's balances (customer or corporate); another partner's is NOT_FOUND."""
    row = await conn.fetchrow(PARTNER_BALANCE, balance_id, partner_id)
    if row is None:
        raise NotFound("no such balance")
    return row


async def balance_by_id(conn: asyncpg.Connection, balance_id: uuid.UUID) -> asyncpg.Record:
    """A balance row (BALANCE_VIEW) the caller has already checked it may see."""
    return await conn.fetchrow(BALANCE_BY_ID, balance_id)


async def cards_under(conn: asyncpg.Connection, balance_ids: list[uuid.UUID],
                      hidden: list[str]) -> dict[uuid.UUID, list[asyncpg.Record]]:
    """Each balance's cards in issue order, leaving out those in the `hidden` states."""
    by_balance: dict[uuid.UUID, list[asyncpg.Record]] = {}
    for row in await conn.fetch(CARDS_UNDER, balance_ids, hidden):
        by_balance.setdefault(row["balance_id"], []).append(row)
    return by_balance


async def open_customer_balance(
    conn: asyncpg.Connection, ledger: Ledger, *, partner_id: uuid.UUID, customer_id: uuid.UUID,
    currency: str, program_id: uuid.UUID | None, at: datetime,
) -> asyncpg.Record:
    """Open a balance for a VERIFIED customer, in the caller's transaction; returns its row."""
    await require_verified(conn, partner_id, customer_id)
    balance_id = await open_balance(conn, ledger, partner_id=partner_id, currency=currency,
                                    customer_id=customer_id, program_id=program_id, at=at)
    return await customer_balance(conn, partner_id, customer_id, balance_id)


async def customer_balances(
    conn: asyncpg.Connection, partner_id: uuid.UUID, customer_id: uuid.UUID, hidden: list[str],
    page: pages.PageRequest,
) -> tuple[list[asyncpg.Record], dict[uuid.UUID, list[asyncpg.Record]]]:
    """A page of the customer's balance rows in opening order (`page.fetch` rows at most), and
    each one's cards (cards_under)."""
    await get_customer(conn, partner_id, customer_id)
    after = page.after_key(0)
    rows = await conn.fetch(CUSTOMER_BALANCES, customer_id, partner_id, after, page.fetch)
    return rows, await cards_under(conn, [row["id"] for row in rows], hidden)


async def partner_balances(
    conn: asyncpg.Connection, partner_id: uuid.UUID, hidden: list[str], page: pages.PageRequest,
) -> tuple[list[asyncpg.Record], dict[uuid.UUID, list[asyncpg.Record]]]:
    """A page of the partner's balances (customers' and corporations') and their cards."""
    after = page.after_key(0)
    rows = await conn.fetch(PARTNER_BALANCES, partner_id, after, page.fetch)
    return rows, await cards_under(conn, [row["id"] for row in rows], hidden)


async def customer_balance_with_cards(
    conn: asyncpg.Connection, partner_id: uuid.UUID, customer_id: uuid.UUID, balance_id: uuid.UUID,
    hidden: list[str],
) -> tuple[asyncpg.Record, list[asyncpg.Record]]:
    """One of the customer's balance rows and its cards (cards_under)."""
    row = await customer_balance(conn, partner_id, customer_id, balance_id)
    cards = await cards_under(conn, [row["id"]], hidden)
    return row, cards.get(row["id"], [])


async def customer_statement(
    pool: asyncpg.Pool, ledger: Ledger, *, partner_id: uuid.UUID, customer_id: uuid.UUID,
    balance_id: uuid.UUID, page: pages.PageRequest,
) -> tuple[asyncpg.Record, Statement]:
    """A customer's balance row and a page of its ledger statement (statement_page)."""
    async with pool.acquire() as conn:
        row = await customer_balance(conn, partner_id, customer_id, balance_id)
    return row, await statement_page(ledger, row["account_id"], page)


async def statement_page(ledger: Ledger, account_id: uuid.UUID,
                         page: pages.PageRequest) -> Statement:
    """A page of an account's ledger statement in commit order (a STATEMENT_PAGES or another
    ledger-sequence keyset): `page.fetch` entries at most, for `pages.cut`."""
    statement = await ledger.statement(account_id, after=page.after_key(0), limit=page.fetch)
    require(statement is not None, "a balance's ledger account exists")
    return statement


async def change_customer_balance_state(
    conn: asyncpg.Connection, partner_id: uuid.UUID, customer_id: uuid.UUID, balance_id: uuid.UUID,
    action: str,
) -> asyncpg.Record:
    """Block, unblock or close a customer's balance, in the caller's transaction; its new row."""
    await customer_balance(conn, partner_id, customer_id, balance_id)
    await change_state(conn, balance_id, action)
    return await customer_balance(conn, partner_id, customer_id, balance_id)


@dataclass(frozen=True)
class ReloadOutcome:
    """What a reload booked: its transfer, whether it was a replay, and the balance after it."""

    transaction_id: uuid.UUID
    replayed: bool  # the reference had already been booked: nothing moved this time
    balance: asyncpg.Record


async def reload_customer_balance(
    pool: asyncpg.Pool, ledger: Ledger, *, partner_id: uuid.UUID, customer_id: uuid.UUID,
    balance_id: uuid.UUID, amount: int, reference: str,
) -> ReloadOutcome:
    """Top up a customer's balance (reload_balance)."""
    return await reload_balance(
        pool, ledger, lambda conn: customer_balance(conn, partner_id, customer_id, balance_id),
        partner_id=partner_id, balance_id=balance_id, amount=amount, reference=reference)


async def reload_corporate_balance(
    pool: asyncpg.Pool, ledger: Ledger, *, partner_id: uuid.UUID, balance_id: uuid.UUID,
    amount: int, reference: str,
) -> ReloadOutcome:
    """Top up one of the partner's corporate balances (reload_balance)."""
    return await reload_balance(
        pool, ledger, lambda conn: corporate_balance(conn, partner_id, balance_id),
        partner_id=partner_id, balance_id=balance_id, amount=amount, reference=reference)


async def reload_balance(
    pool: asyncpg.Pool, ledger: Ledger, find: FindBalance, *, partner_id: uuid.UUID,
    balance_id: uuid.UUID, amount: int, reference: str,
) -> ReloadOutcome:
    """Top up a balance `find` reads (NOT_FOUND when it is not the caller's), idempotently per
    reference, from the partner's credit balance (CREDIT-model programs in its currency) or else
    its external funding account."""
    # Imported here: partner_balances imports this module.
    from antaca_api.partner_balances import credit_account

    async with pool.acquire() as conn:
        row = await find(conn)
        credit = await credit_account(conn, partner_id, row["currency"])
        if credit is None:
            async with conn.transaction():
                funding = await partner_account(conn, ledger, partner_id, row["currency"],
                                                AccountKind.EXTERNAL_FUNDING)
    transfer = Transfer(
        id=uuid.uuid5(RELOAD_NAMESPACE, f"{balance_id}:{reference}"),
        code=TransferCode.BALANCE_RELOAD, debit_account_id=credit or funding,
        credit_account_id=row["account_id"], amount=amount, currency=row["currency"],
        reference=reference,
    )
    async with pool.acquire() as conn, conn.transaction():
        # The balance row before any ledger account: the lock order.
        await require_active(conn, balance_id)
        (result,) = (await ledger.write_batch(conn, [transfer])).results
        if result.code is ResultCode.EXISTS_WITH_DIFFERENT_FIELDS:
            raise IdempotencyConflict()
        if result.code is ResultCode.EXCEEDS_CREDITS and credit is not None:
            raise InsufficientPartnerCredit()
        if result.code in (ResultCode.EXCEEDS_CREDITS, ResultCode.OVERFLOWS_CREDITS,
                           ResultCode.OVERFLOWS_DEBITS):
            raise InsufficientFunds("the balance cannot take this amount")
        require(result.code in (ResultCode.OK, ResultCode.EXISTS), f"a reload was refused: {result.code}")
        if credit is not None:
            await check_crossings(conn, [credit])
    # Money arrived: unpaid fees are collected now, in their own transaction (fee revenue accounts
    # are locked after the balance's, never while the top-up holds its funding account).
    try:
        await charges.collect_unpaid(pool, ledger, balance_id)
    except (asyncpg.PostgresError, OSError):  # the top-up stands; the fee job's sweep collects
        log.exception("collecting unpaid fees after a top-up failed")
    async with pool.acquire() as conn:
        balance = await find(conn)
    return ReloadOutcome(transaction_id=transfer.id, replayed=result.code is ResultCode.EXISTS,
                         balance=balance)


# --- corporate balances ----------------------------------------------------------------------


async def corporate_balance(conn: asyncpg.Connection | asyncpg.Pool, partner_id: uuid.UUID,
                            balance_id: uuid.UUID) -> asyncpg.Record:
    """One of the partner's corporate balance rows (BALANCE_VIEW); a customer's balance, another
    partner's or an unknown one is NOT_FOUND."""
    row = await conn.fetchrow(CORPORATE_BALANCE, balance_id, partner_id)
    if row is None:
        raise NotFound("no such balance")
    return row


async def corporation_balances(conn: asyncpg.Connection, partner_id: uuid.UUID,
                               corporation_id: uuid.UUID, hidden: list[str],
                               page: pages.PageRequest,
                               ) -> tuple[list[asyncpg.Record], CardsByBalance]:
    """A page (BALANCE_PAGES) of a corporation's balance rows the caller has checked it may
    list, in opening order, and each one's cards (cards_under)."""
    rows = await conn.fetch(CORPORATION_BALANCES, corporation_id, partner_id, page.after_key(0),
                            page.fetch)
    return rows, await cards_under(conn, [row["id"] for row in rows], hidden)


async def partner_balance_with_cards(
    conn: asyncpg.Connection, partner_id: uuid.UUID, balance_id: uuid.UUID, hidden: list[str],
) -> tuple[asyncpg.Record, list[asyncpg.Record]]:
    """One of the partner's balance rows (customer or corporate) and its cards (cards_under)."""
    row = await partner_balance(conn, partner_id, balance_id)
    cards = await cards_under(conn, [row["id"]], hidden)
    return row, cards.get(row["id"], [])


async def corporate_statement(
    pool: asyncpg.Pool, ledger: Ledger, *, partner_id: uuid.UUID, balance_id: uuid.UUID,
    page: pages.PageRequest,
) -> tuple[asyncpg.Record, Statement]:
    """A corporate balance row and a page of its ledger statement (statement_page)."""
    row = await corporate_balance(pool, partner_id, balance_id)
    return row, await statement_page(ledger, row["account_id"], page)


async def change_corporate_balance_state(
    conn: asyncpg.Connection, partner_id: uuid.UUID, balance_id: uuid.UUID, action: str,
) -> asyncpg.Record:
    """Block, unblock or close one of the partner's corporate balances, in the caller's
    transaction; its new row."""
    await corporate_balance(conn, partner_id, balance_id)
    await change_state(conn, balance_id, action)
    return await corporate_balance(conn, partner_id, balance_id)
BALANCE_PARTNER = "SELECT partner_id FROM balances WHERE id = $1"


async def partner_of_balance(conn: asyncpg.Connection, balance_id: uuid.UUID) -> uuid.UUID | None:
    """The partner a user's or corporation's balance belongs to, or None for an unknown one."""
    return await conn.fetchval(BALANCE_PARTNER, balance_id)
