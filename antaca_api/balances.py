"""Balances (the product's "accounts"): a ledger account plus its owner and state.

Users' and corporations' money lives in ledger accounts that can never go below zero; the
`balances` row says whose it is and whether it may move (ACTIVE, BLOCKED, CLOSED).
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime

import asyncpg

from antaca_auth.charges import charge_flat
from antaca_api.errors import (
    BalanceNotActive,
    BalanceNotEmpty,
    InvalidStateTransition,
    NotFound,
    ProgramCurrencyMismatch,
    UnsupportedCurrency,
)
from antaca_auth.accounts import AccountKind, Balance, NewAccount, available_balance, posted_balance
from antaca_auth.fees import FeeType
from antaca_auth.ledger import Ledger


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


def next_state(action: str, current: BalanceState) -> BalanceState:
    """The state after `action`, or InvalidStateTransition."""
    allowed_from, target = TRANSITIONS[action]
    if current not in allowed_from:
        raise InvalidStateTransition(f"cannot {action} a {current} balance")
    return target


def can_close(balance: Balance) -> bool:
    """Only an empty balance with nothing pending either way can be closed."""
    return balance.debits_posted == balance.credits_posted and balance.debits_pending == balance.credits_pending == 0


BALANCE_VIEW = """
    SELECT b.id, b.partner_id, b.customer_id, b.corporation_id, b.currency, b.state, b.created_at, b.seq,
           a.id AS account_id, a.kind, a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending
    FROM balances b JOIN accounts a ON a.id = b.account_id"""


def counters(row: asyncpg.Record) -> Balance:
    return Balance(row["debits_posted"], row["credits_posted"], row["debits_pending"], row["credits_pending"])


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
    assert (customer_id is None) != (corporation_id is None), "a balance has exactly one owner"
    await check_currency(ledger, currency)
    balance_id = uuid.uuid4()
    kind = AccountKind.USER_BALANCE if customer_id else AccountKind.CORPORATE_BALANCE
    owner = f"customer:{customer_id}" if customer_id else f"corporation:{corporation_id}"
    (result,) = await ledger.create_accounts_in(
        conn,
        [NewAccount(id=balance_id, currency=currency, kind=kind, owner_ref=owner, debits_must_not_exceed_credits=True)],
    )
    assert result.code == "ok", result
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
    await charge_flat(conn, ledger, program_id=program_id, fee_type=FeeType.BALANCE_CREATION,
                      cause=f"balance:{balance_id}", balance_id=balance_id, account_id=balance_id, currency=currency,
                      card_id=None, at=at or datetime.now(UTC))
    return balance_id


async def locked_balance(conn: asyncpg.Connection, balance_id: uuid.UUID, *, share: bool) -> asyncpg.Record:
    """The balance row, locked (before any ledger account: the fixed lock order)."""
    row = await conn.fetchrow(
        f"SELECT id, state, account_id, currency FROM balances WHERE id = $1 FOR {'SHARE' if share else 'UPDATE'}",
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
