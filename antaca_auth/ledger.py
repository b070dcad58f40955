"""The ledger repository: accounts, batches of transfers, statements and the expiry sweep.

Every batch is one database transaction: lock the accounts it touches (in id order), load the
transfers it names, decide it in memory (`posting.decide_batch`), write the transfers with one
binary COPY and every touched account (and the holds the sweeper must expire) with one statement, commit.
"""

from __future__ import annotations

import asyncio
import collections
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
    Counters,
    NewAccount,
    available_balance,
    credit_normal_available,
    posted_balance,
)
from antaca_auth.events import record_expired_holds
from antaca_auth.holds import NewTransfers
from antaca_auth.invariants import require
from antaca_auth.posting import (
    ROW_COLUMNS,
    AccountState,
    BatchOutcome,
    decide_batch,
    is_id,
)
from antaca_auth.query import Query
from antaca_auth.transfers import (
    RESOLVING_KINDS,
    ResultCode,
    StoredTransfer,
    Transfer,
    TransferKind,
    TransferResult,
)

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

# New transfers go in with one binary COPY, rows in decision order (so `seq` follows it).
TRANSFER_ROW_COLUMNS = ROW_COLUMNS

# Every changed account, and the batch's holds for the expiry sweeper, in one statement (one round
# trip). `hold_ids` lists the holds grouped by expiry; group g is hold_ids[firsts[g]:lasts[g]].
WRITE_ACCOUNTS = Query(
    """WITH changed AS (
           UPDATE accounts AS a
           SET debits_posted = v.dp, credits_posted = v.cp, debits_pending = v.dpe, credits_pending = v.cpe
           FROM unnest(:ids::uuid[], :dp::bigint[], :cp::bigint[], :dpe::bigint[], :cpe::bigint[])
                AS v(id, dp, cp, dpe, cpe)
           WHERE a.id = v.id
           RETURNING 1
       ), listed AS (
           INSERT INTO pending_expiry_batches (expires_at, holds, pending_ids)
           SELECT g.expires_at, g.last - g.first + 1, (:hold_ids::uuid[])[g.first:g.last]
           FROM unnest(:expiries::timestamptz[], :firsts::int[], :lasts::int[]) AS g(expires_at, first, last)
       )
       SELECT count(*) FROM changed"""
)

# A batch that only creates transfers, decided and written inside PostgreSQL when all of it succeeds
# (sql/0010_ledger_new_transfers.sql); no rows when the sequential path must decide it.
WRITE_NEW = Query(
    """SELECT dr_available, cr_available
       FROM ledger_create_new_transfers(:ids::uuid[], :debits::uuid[], :credits::uuid[], :amounts::bigint[],
                                        :pending::bool[], :codes::int[], :timeouts::int[], :refs::text[],
                                        :currencies::text[], :now::timestamptz)"""
)

# The earliest due lists of holds, as many as hold about `limit` holds (at least one list).
DUE_EXPIRY_BATCHES = Query(
    """SELECT id, pending_ids FROM (
           SELECT id, pending_ids, sum(holds) OVER (ORDER BY expires_at, id) - holds AS before
           FROM (SELECT id, expires_at, holds, pending_ids FROM pending_expiry_batches
                 WHERE expires_at <= :now ORDER BY expires_at, id LIMIT :limit) AS due
       ) AS w
       WHERE before < :limit
       ORDER BY before"""
)

# Of those holds, the ones nothing has resolved yet, in expiry order.
OPEN_HOLDS = Query(
    """SELECT p.id, p.code FROM transfers p
       WHERE p.id = ANY(:ids::uuid[]) AND p.kind = 'pending'
         AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = p.id)
       ORDER BY p.expires_at, p.id"""
)

# Accounts locked in id order (the order every writer of the ledger takes them) and what each has
# available where it must not go below zero (NULL: no such limit), read under the lock.
LOCK_AVAILABLE = Query(
    """SELECT id, CASE WHEN debits_must_not_exceed_credits
                       THEN credit_normal_available(credits_posted, debits_posted, debits_pending)
                       END AS available
       FROM accounts WHERE id = ANY(:ids::uuid[]) ORDER BY id FOR UPDATE"""
)

DROP_EXPIRY_BATCHES = Query("DELETE FROM pending_expiry_batches WHERE id = ANY(:ids::bigint[])")

_OK = ResultCode.OK

# Expiry results that leave a hold released (by this sweep, or by another sweep first).
_EXPIRY_DONE = (ResultCode.OK, ResultCode.EXISTS, ResultCode.PENDING_ALREADY_RESOLVED, ResultCode.PENDING_EXPIRED)

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
    balance: Counters
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
        debit_counters=Counters(
            row["dr_debits_posted"], row["dr_credits_posted"], row["dr_debits_pending"], row["dr_credits_pending"]
        ),
        credit_counters=Counters(
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
        balance=Counters(row["debits_posted"], row["credits_posted"], row["debits_pending"], row["credits_pending"]),
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


STATEMENT_PAGE_SIZE_MAX = 10_000  # transfers in one statement page


class Ledger:
    """Double-entry ledger over a PostgreSQL pool. Safe for many concurrent callers."""

    def __init__(self, pool: asyncpg.Pool, *, clock: Callable[[], datetime] = utc_now, max_retries: int = 50):
        self.pool = pool
        self.clock = clock
        self.max_retries = max_retries
        self._currencies: dict[str, int] | None = None
        # Batches of new transfers by the path that wrote them: "set_based" (one PostgreSQL call)
        # or "sequential" (something failed: decided transfer by transfer in Python).
        self.paths: collections.Counter[str] = collections.Counter()

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

    async def lock_accounts(self, conn: asyncpg.Connection,
                            ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int | None]:
        """Lock accounts inside the caller's transaction, in id order, and return each one's
        available amount where it must not go negative (None: no such limit); a missing account
        is left out. Later writes of the same transaction find them locked already."""
        rows = await LOCK_AVAILABLE.fetch(conn, ids=sorted(set(ids)))
        return {r["id"]: r["available"] for r in rows}

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
        after: Callable[[asyncpg.Connection, list[TransferResult]], Awaitable[None]] | None = None,
    ) -> list[TransferResult]:
        if not transfers:
            return []
        for attempt in range(self.max_retries):
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    if guard is not None:
                        await guard(conn)
                    outcome = await self.write_batch(conn, transfers, allow_expire=allow_expire)
                    if after is not None:  # more writes of the same transaction
                        await after(conn, outcome.results)
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
        # Sets keyed by `uuid.int`: a standard-library UUID hashes in Python code, an int in C.
        ids: list[uuid.UUID] = []
        pending: dict[int, uuid.UUID] = {}
        account_ids: dict[int, uuid.UUID] = {}
        for t in transfers:
            if isinstance(t.id, uuid.UUID):
                ids.append(t.id)
            for a in (t.debit_account_id, t.credit_account_id):
                if isinstance(a, uuid.UUID):
                    account_ids[a.int] = a
            if t.pending_id is not None and t.kind in RESOLVING_KINDS and isinstance(t.pending_id, uuid.UUID):
                pending[t.pending_id.int] = t.pending_id
        pending_ids = list(pending.values())
        if pending_ids:
            for r in await PENDING_ACCOUNTS.fetch(conn, ids=pending_ids):
                account_ids[r[0].int] = r[0]
                account_ids[r[1].int] = r[1]
        accounts = {r[0]: AccountState(*r) for r in await LOCK_ACCOUNTS.fetch(conn, ids=list(account_ids.values()))}
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

    async def write_new(self, conn: asyncpg.Connection, batch: NewTransfers) -> list[tuple[ResultCode, int, int]]:
        """Create a batch of new transfers inside the caller's transaction; per transfer its result code and
        the available balance (credits posted - debits posted - debits pending) of its debit and credit
        accounts right after it (0 and 0 when it failed).

        When every transfer succeeds (the common case) PostgreSQL decides and writes them in one call; else
        the sequential path decides each (with its own result code and linked chains undone). The ids
        must be new: a clash fails the statement (UniqueViolationError) rather than replaying."""
        if not len(batch):
            return []
        if not batch.linked[-1]:  # an open chain fails as a whole: the sequential path says how
            rows = await WRITE_NEW.fetch(
                conn, ids=batch.ids, debits=batch.debits, credits=batch.credits, amounts=batch.amounts,
                pending=batch.pending, codes=batch.codes, timeouts=batch.timeouts, refs=batch.references,
                currencies=batch.currencies, now=None if self.clock is utc_now else self.clock())
            if rows:
                require(len(rows) == len(batch), "the set-based path answered another batch")
                self.paths["set_based"] += 1
                return [(_OK, r[0], r[1]) for r in rows]
        self.paths["sequential"] += 1
        outcome = await self.write_batch(conn, batch.transfers())
        return [(_OK, credit_normal_available(r.debit_counters),
                 credit_normal_available(r.credit_counters)) if r.code is _OK else (r.code, 0, 0)
                for r in outcome.results]

    async def _write(self, conn: asyncpg.Connection, outcome: BatchOutcome, now: datetime) -> None:
        rows = outcome.inserts
        if rows:
            await conn.copy_records_to_table("transfers", records=rows, columns=TRANSFER_ROW_COLUMNS)
        changed = outcome.accounts
        by_expiry: dict[datetime, list[uuid.UUID]] = {}
        for pending_id, expires_at in outcome.expiries_added:
            group = by_expiry.get(expires_at)
            if group is None:
                by_expiry[expires_at] = [pending_id]
            else:
                group.append(pending_id)
        hold_ids: list[uuid.UUID] = []
        firsts: list[int] = []
        lasts: list[int] = []
        for group in by_expiry.values():
            firsts.append(len(hold_ids) + 1)
            hold_ids.extend(group)
            lasts.append(len(hold_ids))
        if changed or hold_ids:
            updated = await WRITE_ACCOUNTS.fetchval(
                conn,
                ids=[a.id for a in changed],
                dp=[a.debits_posted for a in changed],
                cp=[a.credits_posted for a in changed],
                dpe=[a.debits_pending for a in changed],
                cpe=[a.credits_pending for a in changed],
                hold_ids=hold_ids,
                expiries=list(by_expiry),
                firsts=firsts,
                lasts=lasts,
            )
            if updated != len(changed):  # every one of them is locked by this transaction
                raise AssertionError(f"updated {updated} accounts of {len(changed)}")

    async def transfers_and_resolutions(self, ids: Sequence[uuid.UUID]) -> list[StoredTransfer]:
        """The transfers with these ids and those that resolved them (a hold's post or void),
        holds first (the administration panel's authorization detail)."""
        async with self.pool.acquire() as conn:
            rows = await KNOWN_TRANSFERS.fetch(conn, ids=list(ids), pending_ids=list(ids))
        return [transfer_from_row(r) for r in rows]

    async def lookup_transfers(self, ids: Sequence[uuid.UUID]) -> list[StoredTransfer]:
        """The transfers with these ids that exist, in the order asked."""
        async with self.pool.acquire() as conn:
            found = {r["id"]: transfer_from_row(r) for r in await SELECT_TRANSFERS.fetch(conn, ids=list(ids))}
        return [found[i] for i in ids if i in found]

    async def statement(self, account_id: uuid.UUID, *, after: int = 0, limit: int = 100) -> Statement | None:
        """An account's transfers in commit order from `after`, each with the balance after it."""
        require(1 <= limit <= STATEMENT_PAGE_SIZE_MAX, "a statement page of 1 to 10,000 transfers")
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
            balance = t.debit_counters if side == "debit" else t.credit_counters
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
        """Release every pending transfer whose timeout has passed; return how many were expired.

        Takes the due lists of holds (`pending_expiry_batches`) in expiry order, expires their holds
        that are still open in batches of up to `limit`, and deletes a list once all of its holds
        are released. A list whose holds could not all be released stays for the next sweep.
        """
        expired = 0
        while True:
            async with self.pool.acquire() as conn:
                lists = await DUE_EXPIRY_BATCHES.fetch(conn, now=self.clock(), limit=limit)
                if not lists:
                    return expired
                open_holds = await OPEN_HOLDS.fetch(conn, ids=[i for r in lists for i in r["pending_ids"]])
            failed: set[str] = set()
            for start in range(0, len(open_holds), limit):
                batch = [
                    Transfer(
                        id=uuid.uuid5(EXPIRY_NAMESPACE, str(r["id"])),
                        kind=TransferKind.EXPIRE_PENDING,
                        pending_id=r["id"],
                        code=r["code"],
                    )
                    for r in open_holds[start : start + limit]
                ]
                results = await self._create_transfers(batch, allow_expire=True,
                                                       after=_expired_holds_recorder(batch))
                expired += sum(r.code is ResultCode.OK for r in results)
                failed.update(str(r.code) for r in results if r.code not in _EXPIRY_DONE)
            if failed:
                # Never loop on a hold that cannot be released; its list stays for the next sweep.
                log.error("expiry sweep could not release every due hold: %s", sorted(failed))
                return expired
            async with self.pool.acquire() as conn:
                await DROP_EXPIRY_BATCHES.execute(conn, ids=[r["id"] for r in lists])


ExpiryRecorder = Callable[[asyncpg.Connection, list[TransferResult]], Awaitable[None]]


def _expired_holds_recorder(batch: list[Transfer]) -> ExpiryRecorder:
    """What records, in the expiry's transaction, the `hold.expired` events of the holds it
    released."""
    async def record(conn: asyncpg.Connection, results: list[TransferResult]) -> None:
        await record_expired_holds(conn, [batch[r.index].pending_id for r in results
                                          if r.code is ResultCode.OK])

    return record
