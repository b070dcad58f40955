"""Partner deposit and credit balances: ledger accounts that never go below zero, with a
low-balance threshold, reloaded by admins when the partner's bank transfer arrives."""

from __future__ import annotations

import enum
import uuid

import asyncpg

from antaca_api.balances import check_currency, partner_account_id
from antaca_api.errors import NotFound, PartnerBalanceExists, PartnerCreditMissing
from antaca_auth.accounts import AccountKind, NewAccount
from antaca_auth.ledger import Ledger
from antaca_auth.thresholds import rearm

SPONSOR_NAMESPACE = uuid.UUID("9d2b6c1e-0f4a-4e8b-b7d3-5a1c2e9f6b40")
PARTNER_RELOAD_NAMESPACE = uuid.UUID("4a7e2d90-1c3b-4f65-8e2a-7b9d0c1f3e62")


class PartnerBalanceKind(enum.StrEnum):
    DEPOSIT = "DEPOSIT"
    CREDIT = "CREDIT"


LEDGER_KIND = {PartnerBalanceKind.DEPOSIT: AccountKind.PARTNER_DEPOSIT,
               PartnerBalanceKind.CREDIT: AccountKind.PARTNER_CREDIT}
KIND_OF = {str(v): k for k, v in LEDGER_KIND.items()}

VIEW = """
    SELECT pa.account_id, pa.partner_id, pa.kind, pa.currency, pa.low_balance_threshold, pa.below_threshold,
           pa.created_at, a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending
    FROM partner_accounts pa JOIN accounts a ON a.id = pa.account_id
    WHERE pa.kind IN ('partner_deposit', 'partner_credit')"""


def sponsor_account(currency: str) -> uuid.UUID:
    """The external funding account money from the BIN sponsor's bank comes from, one per currency."""
    return uuid.uuid5(SPONSOR_NAMESPACE, currency)


async def create(conn: asyncpg.Connection, ledger: Ledger, partner_id: uuid.UUID, kind: PartnerBalanceKind,
                 currency: str, threshold: int | None) -> uuid.UUID:
    """Open the partner's deposit or credit balance in a currency (one of each per currency)."""
    await check_currency(ledger, currency)
    account_id = partner_account_id(partner_id, LEDGER_KIND[kind], currency)
    (result,) = await ledger.create_accounts_in(conn, [NewAccount(
        id=account_id, currency=currency, kind=LEDGER_KIND[kind], owner_ref=f"partner:{partner_id}",
        debits_must_not_exceed_credits=True)])
    inserted = await conn.fetchval(
        """INSERT INTO partner_accounts (partner_id, currency, kind, account_id, low_balance_threshold)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING account_id""",
        partner_id, currency, str(LEDGER_KIND[kind]), account_id, threshold)
    if inserted is None:
        raise PartnerBalanceExists()
    assert result.code in ("ok", "exists"), result
    return account_id


async def find(conn: asyncpg.Connection, partner_id: uuid.UUID, account_id: uuid.UUID) -> asyncpg.Record:
    row = await conn.fetchrow(VIEW + " AND pa.partner_id = $1 AND pa.account_id = $2", partner_id, account_id)
    if row is None:
        raise NotFound("no such partner balance")
    return row


async def list_for(conn: asyncpg.Connection, partner_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(VIEW + " AND pa.partner_id = $1 ORDER BY pa.currency, pa.kind", partner_id)


async def set_threshold(conn: asyncpg.Connection, partner_id: uuid.UUID, account_id: uuid.UUID,
                        threshold: int | None) -> None:
    """Change the threshold; a balance now at or above it is re-armed (the next crossing alerts)."""
    # The account first, then partner_accounts: the order every money movement locks them in.
    await conn.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", account_id)
    await conn.execute(
        "UPDATE partner_accounts SET low_balance_threshold = $3 WHERE partner_id = $1 AND account_id = $2",
        partner_id, account_id, threshold)
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
    credit_programs = await conn.fetchval(
        "SELECT count(*) FROM card_programs WHERE partner_id = $1 AND currency = $2 AND funding_model = 'CREDIT'",
        partner_id, currency)
    if not credit_programs:
        return None
    account_id = await conn.fetchval(
        "SELECT account_id FROM partner_accounts WHERE partner_id = $1 AND currency = $2 AND kind = 'partner_credit'",
        partner_id, currency)
    if account_id is None:
        raise PartnerCreditMissing()
    return account_id
