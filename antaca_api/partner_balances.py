"""Partner deposit and credit balances: ledger accounts that never go below zero, with a
low-balance threshold, reloaded by admins when the partner's bank transfer arrives."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import asyncpg

from antaca_api import pages
from antaca_api.balances import check_currency, partner_account_id, statement_page
from antaca_api.domain_errors import (
    IdempotencyConflict,
    InvalidAmount,
    NoProgramInCurrency,
    NotFound,
    PartnerBalanceExists,
    PartnerBalancePending,
    PartnerCreditMissing,
)
from antaca_api.partners import check_exists as check_partner_exists
from antaca_api.programs import has_program_in
from antaca_auth.accounts import AccountKind, NewAccount
from antaca_auth.codes import TransferCode
from antaca_auth.invariants import require
from antaca_auth.ledger import Ledger, Statement
from antaca_auth.thresholds import rearm
from antaca_auth.transfers import ResultCode, Transfer

SPONSOR_NAMESPACE = uuid.UUID("9d2b6c1e-0f4a-4e8b-b7d3-5a1c2e9f6b40")
PARTNER_RELOAD_NAMESPACE = uuid.UUID("4a7e2d90-1c3b-4f65-8e2a-7b9d0c1f3e62")


class Approval(enum.StrEnum):
    PENDING = "PENDING"  # opened by the partner, waiting for an administrator (no reload yet)
    APPROVED = "APPROVED"


class PartnerBalanceKind(enum.StrEnum):
    DEPOSIT = "DEPOSIT"
    CREDIT = "CREDIT"


LEDGER_KIND = {PartnerBalanceKind.DEPOSIT: AccountKind.PARTNER_DEPOSIT,
               PartnerBalanceKind.CREDIT: AccountKind.PARTNER_CREDIT}
KIND_OF = {str(v): k for k, v in LEDGER_KIND.items()}

VIEW = """
    SELECT pa.account_id, pa.partner_id, pa.kind, pa.currency, pa.low_balance_threshold, pa.below_threshold,
           pa.created_at, pa.approval, pa.alert_emails,
           a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending
    FROM partner_accounts pa JOIN accounts a ON a.id = pa.account_id
    WHERE pa.kind IN ('partner_deposit', 'partner_credit')"""
ONE_BALANCE = VIEW + " AND pa.partner_id = $1 AND pa.account_id = $2"
BALANCES_OF_PARTNER = VIEW + """ AND pa.partner_id = $1 AND (pa.currency, pa.kind) > ($2, $3)
    ORDER BY pa.currency, pa.kind LIMIT $4"""
PARTNER_BALANCE_PAGES = pages.Keyset("partner-balances", tuple[str, str])  # (currency, kind)
INSERT_PARTNER_ACCOUNT = """
    INSERT INTO partner_accounts (partner_id, currency, kind, account_id, low_balance_threshold,
        approval)
    VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING account_id"""
LOCK_ACCOUNT = "SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE"
SET_THRESHOLD = """
    UPDATE partner_accounts SET low_balance_threshold = $3
    WHERE partner_id = $1 AND account_id = $2"""
BALANCE_IN_SCOPE = VIEW + " AND pa.account_id = $1 AND ($2::uuid IS NULL OR pa.partner_id = $2)"
CREDIT_PROGRAM_COUNT = """
    SELECT count(*) FROM card_programs
    WHERE partner_id = $1 AND currency = $2 AND funding_model = 'CREDIT'"""
CREDIT_ACCOUNT = """
    SELECT account_id FROM partner_accounts
    WHERE partner_id = $1 AND currency = $2 AND kind = 'partner_credit'"""


def sponsor_account(currency: str) -> uuid.UUID:
    """The external funding account money from the BIN sponsor's bank comes from, one per currency."""
    return uuid.uuid5(SPONSOR_NAMESPACE, currency)


async def create(conn: asyncpg.Connection, ledger: Ledger, partner_id: uuid.UUID, kind: PartnerBalanceKind,
                 currency: str, threshold: int | None, *,
                 approval: Approval | None = None) -> uuid.UUID:
    """Open the partner's deposit or credit balance in a currency (one of each per currency)."""
    await check_currency(ledger, currency)
    account_id = partner_account_id(partner_id, LEDGER_KIND[kind], currency)
    (result,) = await ledger.create_accounts_in(conn, [NewAccount(
        id=account_id, currency=currency, kind=LEDGER_KIND[kind], owner_ref=f"partner:{partner_id}",
        debits_must_not_exceed_credits=True)])
    inserted = await conn.fetchval(INSERT_PARTNER_ACCOUNT, partner_id, currency,
                                   str(LEDGER_KIND[kind]), account_id, threshold,
                                   str(approval or Approval.APPROVED))
    if inserted is None:
        raise PartnerBalanceExists()
    require(result.code in ("ok", "exists"), f"an account could not be created: {result.code}")
    return account_id


async def find(conn: asyncpg.Connection, partner_id: uuid.UUID, account_id: uuid.UUID) -> asyncpg.Record:
    row = await conn.fetchrow(ONE_BALANCE, partner_id, account_id)
    if row is None:
        raise NotFound("no such partner balance")
    return row


async def find_in_scope(conn: asyncpg.Connection, partner_scope: uuid.UUID | None,
                        account_id: uuid.UUID) -> asyncpg.Record | None:
    """A partner balance by id, within a partner scope (None: any partner's), or None."""
    return await conn.fetchrow(BALANCE_IN_SCOPE, account_id, partner_scope)


async def list_for(conn: asyncpg.Connection, partner_id: uuid.UUID,
                   page: pages.PageRequest) -> list[asyncpg.Record]:
    """A page of the partner's deposit and credit balances, by currency and kind."""
    currency, kind = page.after or ("", "")
    return await conn.fetch(BALANCES_OF_PARTNER, partner_id, currency, kind, page.fetch)


async def set_threshold(conn: asyncpg.Connection, partner_id: uuid.UUID, account_id: uuid.UUID,
                        threshold: int | None) -> None:
    """Change the threshold; a balance now at or above it is re-armed (the next crossing alerts)."""
    # The account first, then partner_accounts: the order every money movement locks them in.
    await conn.execute(LOCK_ACCOUNT, account_id)
    await conn.execute(SET_THRESHOLD, partner_id, account_id, threshold)
    await rearm(conn, [account_id])


def reload_transfer_id(account_id: uuid.UUID, bank_reference: str) -> uuid.UUID:
    """One bank transfer books once: the reference names the transfer."""
    return uuid.uuid5(PARTNER_RELOAD_NAMESPACE, f"{account_id}:{bank_reference}")


async def ensure_sponsor(ledger: Ledger, currency: str) -> uuid.UUID:
    account_id = sponsor_account(currency)
    await ledger.create_accounts([NewAccount(id=account_id, currency=currency, kind=AccountKind.EXTERNAL_FUNDING,
                                             owner_ref=f"bin-sponsor:{currency}")])
    return account_id


async def credit_account(conn: asyncpg.Connection, partner_id: uuid.UUID, currency: str) -> uuid.UUID | None:
    """The partner credit balance a user top-up must charge, or None when the partner's programs in
    this currency are all DEPOSIT-model (their user balances are funded from outside)."""
    credit_programs = await conn.fetchval(CREDIT_PROGRAM_COUNT, partner_id, currency)
    if not credit_programs:
        return None
    account_id = await conn.fetchval(CREDIT_ACCOUNT, partner_id, currency)
    if account_id is None:
        raise PartnerCreditMissing()
    return account_id


async def open_for_partner(conn: asyncpg.Connection, ledger: Ledger, partner_id: uuid.UUID,
                           kind: PartnerBalanceKind, currency: str,
                           threshold: int | None) -> asyncpg.Record:
    """Open the existing partner's balance, in the caller's transaction; the balance's row."""
    await check_partner_exists(conn, partner_id)
    account_id = await create(conn, ledger, partner_id, kind, currency, threshold)
    return await find(conn, partner_id, account_id)


async def balances_of_partner(conn: asyncpg.Connection, partner_id: uuid.UUID,
                              page: pages.PageRequest) -> list[asyncpg.Record]:
    """A page of the existing partner's deposit and credit balances."""
    await check_partner_exists(conn, partner_id)
    return await list_for(conn, partner_id, page)


async def change_threshold(conn: asyncpg.Connection, partner_id: uuid.UUID, account_id: uuid.UUID,
                           threshold: int | None) -> asyncpg.Record:
    """Set or clear the partner balance's threshold, in the caller's transaction; its row after."""
    await find(conn, partner_id, account_id)
    await set_threshold(conn, partner_id, account_id, threshold)
    return await find(conn, partner_id, account_id)


@dataclass(frozen=True)
class Reload:
    transfer_id: uuid.UUID
    replayed: bool  # the bank reference had already been booked: nothing moved this time
    balance: asyncpg.Record


Transaction = Callable[[], AbstractAsyncContextManager[asyncpg.Connection]]


async def reload(pool: asyncpg.Pool, ledger: Ledger, partner_id: uuid.UUID,
                 account_id: uuid.UUID, amount: int, bank_reference: str, *,
                 transaction: Transaction) -> Reload:
    """Book the partner's bank transfer onto its balance, once per bank reference.

    `transaction` opens the booking's transaction: the caller's, so its audit record is in it."""
    async with pool.acquire() as conn:
        row = await find(conn, partner_id, account_id)
    if row["approval"] != Approval.APPROVED:
        raise PartnerBalancePending()
    currency = row["currency"]
    sponsor = await ensure_sponsor(ledger, currency)
    transfer = Transfer(id=reload_transfer_id(account_id, bank_reference),
                        code=TransferCode.PARTNER_RELOAD, debit_account_id=sponsor,
                        credit_account_id=account_id, amount=amount, currency=currency,
                        reference=bank_reference)
    async with transaction() as conn:
        (result,) = (await ledger.write_batch(conn, [transfer])).results
        if result.code is ResultCode.EXISTS_WITH_DIFFERENT_FIELDS:
            raise IdempotencyConflict("this bank reference was already booked with another amount")
        if result.code is not ResultCode.OK and result.code is not ResultCode.EXISTS:
            raise InvalidAmount("the balance cannot take this amount")
        await rearm(conn, [account_id])
        balance = await find(conn, partner_id, account_id)
    return Reload(transfer_id=transfer.id, replayed=result.code is ResultCode.EXISTS,
                  balance=balance)


# --- the partner's self-service --------------------------------------------------------------

ALERT_EMAILS_MAX_COUNT = 10  # addresses one balance's low-balance alert goes to
SET_ALERTS = """
    UPDATE partner_accounts SET low_balance_threshold = $3, alert_emails = $4
    WHERE partner_id = $1 AND account_id = $2"""
APPROVE = """
    UPDATE partner_accounts SET approval = 'APPROVED'
    WHERE partner_id = $1 AND account_id = $2 AND approval = 'PENDING'"""


async def open_own(conn: asyncpg.Connection, ledger: Ledger, partner_id: uuid.UUID,
                   kind: PartnerBalanceKind, currency: str, threshold: int | None,
                   *, approval_required: bool) -> asyncpg.Record:
    """The partner opens its own balance in the currency of one of its programs, in the caller's
    transaction; PENDING until an administrator approves it when the service requires approval."""
    if not await has_program_in(conn, partner_id, currency):
        raise NoProgramInCurrency()
    approval = Approval.PENDING if approval_required else Approval.APPROVED
    account_id = await create(conn, ledger, partner_id, kind, currency, threshold,
                              approval=approval)
    return await find(conn, partner_id, account_id)


async def approve(conn: asyncpg.Connection, partner_id: uuid.UUID,
                  account_id: uuid.UUID) -> asyncpg.Record:
    """An administrator approves a PENDING balance (an approved one stays as it is); its row."""
    await find(conn, partner_id, account_id)
    await conn.execute(APPROVE, partner_id, account_id)
    return await find(conn, partner_id, account_id)


def normalized_emails(emails: list[str] | None) -> list[str] | None:
    """Alert addresses lower-cased, without repeats, in the order given (None: the partner's
    contact e-mail); an empty list means no e-mail alert at all."""
    if emails is None:
        return None
    unique = list(dict.fromkeys(e.strip().lower() for e in emails))
    require(len(unique) <= ALERT_EMAILS_MAX_COUNT, "the schema bounds the alert e-mails")
    return unique


async def change_alerts(conn: asyncpg.Connection, partner_id: uuid.UUID, account_id: uuid.UUID,
                        threshold: int | None, emails: list[str] | None) -> asyncpg.Record:
    """Set the balance's threshold and alert e-mails, in the caller's transaction; its row after.
    A balance now at or above its threshold is re-armed (the next crossing alerts)."""
    await find(conn, partner_id, account_id)
    await conn.execute(LOCK_ACCOUNT, account_id)
    await conn.execute(SET_ALERTS, partner_id, account_id, threshold, normalized_emails(emails))
    await rearm(conn, [account_id])
    return await find(conn, partner_id, account_id)


# --- the statement ---------------------------------------------------------------------------

STATEMENT_PAGE_SIZE_MAX = 200  # lines in one statement page (the API's declared page limit)
# A partner balance's statement, by ledger sequence (antaca_auth/ledger.py).
STATEMENT_PAGES = pages.Keyset("partner-balance-statement", tuple[int])


class LineCategory(enum.StrEnum):
    CHARGE = "CHARGE"  # card payments charged to a deposit, user top-ups charged to a credit
    RELOAD = "RELOAD"  # the partner's bank transfers booked onto the balance
    RELEASE = "RELEASE"  # a hold voided or expired: the amount is available again
    FEE = "FEE"


FEE_CODES = frozenset(c for c in TransferCode if c.name.startswith("FEE_"))


def line_category(code: int, kind: str) -> LineCategory:
    """What a ledger transfer is, on a partner balance's statement."""
    if kind in ("void_pending", "expire_pending"):
        return LineCategory.RELEASE
    if code == TransferCode.PARTNER_RELOAD:
        return LineCategory.RELOAD
    if code in FEE_CODES:
        return LineCategory.FEE
    return LineCategory.CHARGE


def posted_change(side: str, kind: str, amount: int) -> int:
    """How a transfer changes a credit-normal balance's posted level: holds and their releases
    change only the available amount; single and posting transfers move the level."""
    if kind not in ("single", "post_pending"):
        return 0
    return amount if side == "credit" else -amount


async def statement(pool: asyncpg.Pool, ledger: Ledger, partner_id: uuid.UUID,
                    account_id: uuid.UUID,
                    page: pages.PageRequest) -> tuple[asyncpg.Record, Statement]:
    """The partner balance's row and a page (STATEMENT_PAGES) of its ledger statement, oldest
    first."""
    async with pool.acquire() as conn:
        row = await find(conn, partner_id, account_id)
    return row, await statement_page(ledger, account_id, page)
