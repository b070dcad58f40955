"""The ledger repository: accounts, batches of transfers, statements and the expiry sweep.

Every batch is one database transaction: lock the accounts it touches (in id order), load the
transfers it names, decide it in memory (`posting.decide_batch`), write the transfers and one
update per touched account with set-based SQL, commit.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Literal

import asyncpg
import msgspec

from antaca_auth.accounts import (
    Account,
    AccountKind,
    AccountResult,
    AccountResultCode,
    Balance,
    NewAccount,
    available_balance,
    posted_balance,
)
from antaca_auth.posting import AccountState, BatchOutcome, decide_batch, is_id
from antaca_auth.query import Query
from antaca_auth.transfers import RESOLVING_KINDS, ResultCode, StoredTransfer, Transfer, TransferKind, TransferResult

log = logging.getLogger(__name__)

# Expiry transfers get ids derived from the hold they release, so a repeated sweep is a replay.
EXPIRY_NAMESPACE = uuid.UUID("5b0b0c1e-7d43-4a8e-9a55-0e0d1e9ab7c1")

_RETRYABLE = (
    asyncpg.exceptions.UniqueViolationError,  # a concurrent batch committed the same id first
    asyncpg.exceptions.DeadlockDetectedError,  # two batches inserting each other's ids
    asyncpg.exceptions.SerializationError,
)

_TRANSFER_COLUMNS = """id, kind, debit_account_id, credit_account_id, amount, currency, pending_id,
    timeout, expires_at, code, reference, metadata, created_at,
    dr_debits_posted, dr_credits_posted, dr_debits_pending, dr_credits_pending,
    cr_debits_posted, cr_credits_posted, cr_debits_pending, cr_credits_pending"""

_ACCOUNT_COLUMNS = """id, currency, kind, owner_ref, debits_must_not_exceed_credits,
    credits_must_not_exceed_debits, debits_posted, credits_posted, debits_pending,
    credits_pending, metadata, created_at"""

PENDING_ACCOUNTS = Query("SELECT debit_account_id, credit_account_id FROM transfers WHERE id = ANY(:ids::uuid[])")

LOCK_ACCOUNTS = Query(
    """SELECT id, currency, debits_must_not_exceed_credits, credits_must_not_exceed_debits,
              debits_posted, credits_posted, debits_pending, credits_pending
       FROM accounts WHERE id = ANY(:ids::uuid[]) ORDER BY id FOR UPDATE"""
)

# Read after the locks are held, so resolutions committed by earlier lock holders are seen.
KNOWN_TRANSFERS = Query(
    f"""SELECT {_TRANSFER_COLUMNS} FROM transfers WHERE id = ANY(:ids::uuid[])
        UNION ALL
        SELECT {_TRANSFER_COLUMNS} FROM transfers WHERE pending_id = ANY(:pending_ids::uuid[])"""
)

INSERT_TRANSFERS = Query(
    """INSERT INTO transfers (id, kind, debit_account_id, credit_account_id, amount, currency,
           pending_id, timeout, expires_at, code, reference, metadata, created_at,
           dr_debits_posted, dr_credits_posted, dr_debits_pending, dr_credits_pending,
           cr_debits_posted, cr_credits_posted, cr_debits_pending, cr_credits_pending)
       SELECT id, kind, dr, cr, amount, currency, pending_id, timeout, expires_at, code, reference,
              metadata::jsonb, :created_at, a, b, c, d, e, f, g, h
       FROM unnest(:ids::uuid[], :kinds::text[], :drs::uuid[], :crs::uuid[], :amounts::bigint[],
                   :currencies::text[], :pending_ids::uuid[], :timeouts::int[],
                   :expires_at::timestamptz[], :codes::int[], :references::text[], :metadata::text[],
                   :a::bigint[], :b::bigint[], :c::bigint[], :d::bigint[],
                   :e::bigint[], :f::bigint[], :g::bigint[], :h::bigint[])
            WITH ORDINALITY AS t(id, kind, dr, cr, amount, currency, pending_id, timeout, expires_at,
                                 code, reference, metadata, a, b, c, d, e, f, g, h, ord)
       ORDER BY ord"""
)

UPDATE_ACCOUNTS = Query(
    """UPDATE accounts AS a
       SET debits_posted = v.dp, credits_posted = v.cp, debits_pending = v.dpe, credits_pending = v.cpe
       FROM unnest(:ids::uuid[], :dp::bigint[], :cp::bigint[], :dpe::bigint[], :cpe::bigint[])
            AS v(id, dp, cp, dpe, cpe)
       WHERE a.id = v.id"""
)

ADD_EXPIRIES = Query(
    """INSERT INTO pending_expiries (pending_id, expires_at)
       SELECT * FROM unnest(:ids::uuid[], :expires_at::timestamptz[])"""
)

REMOVE_EXPIRIES = Query("DELETE FROM pending_expiries WHERE pending_id = ANY(:ids::uuid[])")

DUE_EXPIRIES = Query(
    """SELECT e.pending_id, t.code FROM pending_expiries e JOIN transfers t ON t.id = e.pending_id
       WHERE e.expires_at <= :now ORDER BY e.expires_at, e.pending_id LIMIT :limit"""
)

INSERT_ACCOUNTS = Query(
    """INSERT INTO accounts (id, currency, kind, owner_ref, debits_must_not_exceed_credits,
           credits_must_not_exceed_debits, metadata)
       SELECT id, currency, kind, owner_ref, dmnec, cmned, metadata::jsonb
       FROM unnest(:ids::uuid[], :currencies::text[], :kinds::text[], :owners::text[],
                   :dmnec::bool[], :cmned::bool[], :metadata::text[])
            AS t(id, currency, kind, owner_ref, dmnec, cmned, metadata)
       ON CONFLICT (id) DO NOTHING
       RETURNING id"""
)

SELECT_ACCOUNTS = Query(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE id = ANY(:ids::uuid[])")

SELECT_TRANSFERS = Query(f"SELECT {_TRANSFER_COLUMNS} FROM transfers WHERE id = ANY(:ids::uuid[])")

CURRENCIES = Query("SELECT code, exponent FROM currencies")

STATEMENT = Query(
    f"""(SELECT seq, {_TRANSFER_COLUMNS} FROM transfers
         WHERE debit_account_id = :account_id AND seq > :after ORDER BY seq LIMIT :limit)
        UNION ALL
        (SELECT seq, {_TRANSFER_COLUMNS} FROM transfers
         WHERE credit_account_id = :account_id AND seq > :after ORDER BY seq LIMIT :limit)
        ORDER BY seq LIMIT :limit"""
)


class StatementEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One transfer on an account's statement, with the account's balance right after it."""

    seq: int
    side: Literal["debit", "credit"]
    transfer: StoredTransfer
    balance: Balance
    posted: int
    available: int


class Statement(msgspec.Struct, frozen=True, kw_only=True):
    account: Account
    entries: list[StatementEntry]
    next_after: int | None  # pass as `after` for the next page; None on the last page


def transfer_from_row(row: asyncpg.Record) -> StoredTransfer:
    return StoredTransfer(
        id=row["id"],
        kind=TransferKind(row["kind"]),
        debit_account_id=row["debit_account_id"],
        credit_account_id=row["credit_account_id"],
        amount=row["amount"],
        currency=row["currency"],
        pending_id=row["pending_id"],
        timeout=row["timeout"],
        expires_at=row["expires_at"],
        code=row["code"],
        reference=row["reference"],
        metadata=row["metadata"],
        created_at=row["created_at"],
        debit_balance=Balance(
            row["dr_debits_posted"], row["dr_credits_posted"], row["dr_debits_pending"], row["dr_credits_pending"]
        ),
        credit_balance=Balance(
            row["cr_debits_posted"], row["cr_credits_posted"], row["cr_debits_pending"], row["cr_credits_pending"]
        ),
    )


def account_from_row(row: asyncpg.Record) -> Account:
    return Account(
        id=row["id"],
        currency=row["currency"],
        kind=AccountKind(row["kind"]),
        owner_ref=row["owner_ref"],
        debits_must_not_exceed_credits=row["debits_must_not_exceed_credits"],
        credits_must_not_exceed_debits=row["credits_must_not_exceed_debits"],
        balance=Balance(row["debits_posted"], row["credits_posted"], row["debits_pending"], row["credits_pending"]),
        metadata=row["metadata"],
        created_at=row["created_at"],
    )


def _json(value: dict | None) -> str | None:
    return None if value is None else msgspec.json.encode(value).decode()


def _account_fields(a: NewAccount | Account) -> tuple:
    return (
        a.currency,
        a.kind,
        a.owner_ref,
        a.debits_must_not_exceed_credits,
        a.credits_must_not_exceed_debits,
        a.metadata,
    )


def utc_now() -> datetime:
    return datetime.now(UTC)


class Ledger:
    """Double-entry ledger over a PostgreSQL pool. Safe for many concurrent callers."""

    def __init__(self, pool: asyncpg.Pool, *, clock: Callable[[], datetime] = utc_now, max_retries: int = 50):
        self.pool = pool
        self.clock = clock
        self.max_retries = max_retries
        self._currencies: dict[str, int] | None = None

    # accounts

    async def currencies(self) -> dict[str, int]:
        """ISO 4217 codes the ledger knows, with their minor-unit exponents."""
        if self._currencies is None:
            async with self.pool.acquire() as conn:
                self._currencies = {r["code"]: r["exponent"] for r in await CURRENCIES.fetch(conn)}
        return self._currencies

    async def create_accounts(self, accounts: Sequence[NewAccount]) -> list[AccountResult]:
        """Create accounts idempotently, in one transaction; one result per account, in order."""
        async with self.pool.acquire() as conn, conn.transaction():
            return await self.create_accounts_in(conn, accounts)

    async def create_accounts_in(self, conn: asyncpg.Connection, accounts: Sequence[NewAccount]) -> list[AccountResult]:
        """Create accounts inside the caller's transaction."""
        currencies = await self.currencies()
        results: list[AccountResult | None] = [None] * len(accounts)
        valid: list[int] = []
        for i, a in enumerate(accounts):
            code = None
            if not is_id(a.id):
                code = AccountResultCode.INVALID_ID
            elif a.id.int == 0:
                code = AccountResultCode.ID_MUST_NOT_BE_ZERO
            elif a.currency not in currencies:
                code = AccountResultCode.INVALID_CURRENCY
            elif a.kind not in AccountKind.__members__.values():
                code = AccountResultCode.INVALID_KIND
            elif a.debits_must_not_exceed_credits and a.credits_must_not_exceed_debits:
                code = AccountResultCode.FLAGS_ARE_MUTUALLY_EXCLUSIVE
            if code is None:
                valid.append(i)
            else:
                results[i] = AccountResult(i, a.id if is_id(a.id) else None, code)
        if not valid:
            return results  # type: ignore[return-value]
        batch = [accounts[i] for i in valid]
        inserted = {
            r["id"]
            for r in await INSERT_ACCOUNTS.fetch(
                conn,
                ids=[a.id for a in batch],
                currencies=[a.currency for a in batch],
                kinds=[str(a.kind) for a in batch],
                owners=[a.owner_ref for a in batch],
                dmnec=[a.debits_must_not_exceed_credits for a in batch],
                cmned=[a.credits_must_not_exceed_debits for a in batch],
                metadata=[_json(a.metadata) for a in batch],
            )
        }
        conflicts = [a.id for a in batch if a.id not in inserted]
        first: dict[uuid.UUID, NewAccount | Account] = {}
        if conflicts:
            first = {r["id"]: account_from_row(r) for r in await SELECT_ACCOUNTS.fetch(conn, ids=conflicts)}
        for i in valid:
            a = accounts[i]
            if a.id in inserted and a.id not in first:
                first[a.id] = a
                code = AccountResultCode.OK
            elif _account_fields(first[a.id]) == _account_fields(a):
                code = AccountResultCode.EXISTS
            else:
                code = AccountResultCode.EXISTS_WITH_DIFFERENT_FIELDS
            results[i] = AccountResult(i, a.id, code)
        return results  # type: ignore[return-value]

    async def lookup_accounts(self, ids: Sequence[uuid.UUID]) -> list[Account]:
        """The accounts with these ids that exist, in the order asked."""
        async with self.pool.acquire() as conn:
            found = {r["id"]: account_from_row(r) for r in await SELECT_ACCOUNTS.fetch(conn, ids=list(ids))}
        return [found[i] for i in ids if i in found]

    # transfers

    async def create_transfers(
        self, transfers: Sequence[Transfer], *, guard: Callable[[asyncpg.Connection], Awaitable[None]] | None = None
    ) -> list[TransferResult]:
        """Commit a batch of transfers in one database transaction; one result per transfer.

        `guard`, when given, runs first in the same transaction (to lock and check the business
        rows the batch depends on); an exception from it aborts the batch.
        """
        return await self._create_transfers(transfers, allow_expire=False, guard=guard)

    async def _create_transfers(
        self,
        transfers: Sequence[Transfer],
        *,
        allow_expire: bool,
        guard: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
    ) -> list[TransferResult]:
        if not transfers:
            return []
        for attempt in range(self.max_retries):
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    if guard is not None:
                        await guard(conn)
                    outcome = await self.write_batch(conn, transfers, allow_expire=allow_expire)
                return outcome.results
            except _RETRYABLE as exc:
                if attempt + 1 == self.max_retries:
                    raise
                log.debug("ledger batch retried after %s", type(exc).__name__)
                await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))
        raise AssertionError("unreachable")

    async def write_batch(
        self, conn: asyncpg.Connection, transfers: Sequence[Transfer], *, allow_expire: bool = False
    ) -> BatchOutcome:
        """Decide and write a batch inside the caller's transaction (no retry here)."""
        ids = [t.id for t in transfers if is_id(t.id)]
        pending_ids = list(
            {t.pending_id for t in transfers if t.kind in RESOLVING_KINDS and is_id(t.pending_id)}
        )
        account_ids = {a for t in transfers for a in (t.debit_account_id, t.credit_account_id) if is_id(a)}
        if pending_ids:
            for r in await PENDING_ACCOUNTS.fetch(conn, ids=pending_ids):
                account_ids.add(r["debit_account_id"])
                account_ids.add(r["credit_account_id"])
        accounts = {
            r["id"]: AccountState(*r.values()) for r in await LOCK_ACCOUNTS.fetch(conn, ids=list(account_ids))
        }
        # Read once the locks are held, so an account's transfers have non-decreasing timestamps.
        now = self.clock()
        known: dict[uuid.UUID, StoredTransfer] = {}
        resolved: dict[uuid.UUID, TransferKind] = {}
        for r in await KNOWN_TRANSFERS.fetch(conn, ids=ids + pending_ids, pending_ids=pending_ids):
            stored = transfer_from_row(r)
            known[stored.id] = stored
            if stored.pending_id is not None:
                resolved[stored.pending_id] = stored.kind
        outcome = decide_batch(transfers, accounts, known, resolved, now, allow_expire=allow_expire)
        await self._write(conn, outcome, now)
        return outcome

    async def _write(self, conn: asyncpg.Connection, outcome: BatchOutcome, now: datetime) -> None:
        rows = outcome.inserts
        if rows:
            await INSERT_TRANSFERS.execute(
                conn,
                created_at=now,
                ids=[t.id for t in rows],
                kinds=[str(t.kind) for t in rows],
                drs=[t.debit_account_id for t in rows],
                crs=[t.credit_account_id for t in rows],
                amounts=[t.amount for t in rows],
                currencies=[t.currency for t in rows],
                pending_ids=[t.pending_id for t in rows],
                timeouts=[t.timeout for t in rows],
                expires_at=[t.expires_at for t in rows],
                codes=[t.code for t in rows],
                references=[t.reference for t in rows],
                metadata=[_json(t.metadata) for t in rows],
                a=[t.debit_balance.debits_posted for t in rows],
                b=[t.debit_balance.credits_posted for t in rows],
                c=[t.debit_balance.debits_pending for t in rows],
                d=[t.debit_balance.credits_pending for t in rows],
                e=[t.credit_balance.debits_posted for t in rows],
                f=[t.credit_balance.credits_posted for t in rows],
                g=[t.credit_balance.debits_pending for t in rows],
                h=[t.credit_balance.credits_pending for t in rows],
            )
        changed = outcome.accounts
        if changed:
            await UPDATE_ACCOUNTS.execute(
                conn,
                ids=[a.id for a in changed],
                dp=[a.debits_posted for a in changed],
                cp=[a.credits_posted for a in changed],
                dpe=[a.debits_pending for a in changed],
                cpe=[a.credits_pending for a in changed],
            )
        if outcome.expiries_added:
            await ADD_EXPIRIES.execute(
                conn, ids=list(outcome.expiries_added), expires_at=list(outcome.expiries_added.values())
            )
        if outcome.expiries_removed:
            await REMOVE_EXPIRIES.execute(conn, ids=list(outcome.expiries_removed))

    async def lookup_transfers(self, ids: Sequence[uuid.UUID]) -> list[StoredTransfer]:
        """The transfers with these ids that exist, in the order asked."""
        async with self.pool.acquire() as conn:
            found = {r["id"]: transfer_from_row(r) for r in await SELECT_TRANSFERS.fetch(conn, ids=list(ids))}
        return [found[i] for i in ids if i in found]

    async def statement(self, account_id: uuid.UUID, *, after: int = 0, limit: int = 100) -> Statement | None:
        """An account's transfers in commit order from `after`, each with the balance after it."""
        assert 1 <= limit <= 10_000
        async with self.pool.acquire() as conn:
            accounts = await SELECT_ACCOUNTS.fetch(conn, ids=[account_id])
            if not accounts:
                return None
            account = account_from_row(accounts[0])
            rows = await STATEMENT.fetch(conn, account_id=account_id, after=after, limit=limit)
        entries = []
        for r in rows:
            t = transfer_from_row(r)
            side = "debit" if t.debit_account_id == account_id else "credit"
            balance = t.debit_balance if side == "debit" else t.credit_balance
            entries.append(
                StatementEntry(
                    seq=r["seq"],
                    side=side,
                    transfer=t,
                    balance=balance,
                    posted=posted_balance(account.kind, balance),
                    available=available_balance(account.kind, balance),
                )
            )
        next_after = entries[-1].seq if len(entries) == limit else None
        return Statement(account=account, entries=entries, next_after=next_after)

    # expiry

    async def expire_pending(self, *, limit: int = 1000) -> int:
        """Release every pending transfer whose timeout has passed; return how many were expired."""
        expired = 0
        while True:
            async with self.pool.acquire() as conn:
                due = await DUE_EXPIRIES.fetch(conn, now=self.clock(), limit=limit)
            if not due:
                return expired
            batch = [
                Transfer(
                    id=uuid.uuid5(EXPIRY_NAMESPACE, str(r["pending_id"])),
                    kind=TransferKind.EXPIRE_PENDING,
                    pending_id=r["pending_id"],
                    code=r["code"],
                )
                for r in due
            ]
            results = await self._create_transfers(batch, allow_expire=True)
            done = sum(r.code is ResultCode.OK for r in results)
            expired += done
            if done == 0:
                # Only a resolved hold left in pending_expiries could cause this; never loop on it.
                log.error("expiry sweep made no progress: %s", {str(r.code) for r in results})
                return expired
            if len(due) < limit:
                return expired
