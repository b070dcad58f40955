"""The ledger's set-based path for new transfers (`Ledger.write_new`) against its sequential path.

For random accounts and batches, the same batch is written once by `write_new` and once by
`write_batch` on the same state (each inside a transaction that is then rolled back): the result
codes, the available balances, the stored rows (balances after each transfer included, in the same
`seq` order), the account counters and the sweeper's expiry lists must be identical.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from antaca_auth.accounts import AccountKind, NewAccount
from antaca_auth.database import create_pool
from antaca_auth.holds import NewTransfers
from antaca_auth.ledger import Ledger
from antaca_auth.transfers import ResultCode, Transfer

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BIG = 2**62

account_specs = st.lists(
    st.tuples(st.sampled_from(["none", "dmnec", "dmnec", "cmned"]), st.sampled_from(["EUR", "EUR", "EUR", "EUR", "USD"]),
              st.sampled_from([0, 100, 10_000, 10_000, 10_000, 2**60])),
    min_size=2, max_size=5)

transfer_specs = st.lists(
    st.tuples(st.integers(0, 4), st.integers(0, 4), st.sampled_from([1, 50, 99, 400, 400, 2_000, BIG]),
              st.booleans(), st.sampled_from([0, 0, 60, 3600]), st.booleans(),
              st.sampled_from(["EUR", "EUR", "EUR", "USD"])),
    min_size=1, max_size=14)

TRANSFER_ROWS = """
    SELECT id, kind, debit_account_id, credit_account_id, amount, currency, pending_id, timeout, expires_at, code,
           reference, metadata, created_at, dr_debits_posted, dr_credits_posted, dr_debits_pending,
           dr_credits_pending, cr_debits_posted, cr_credits_posted, cr_debits_pending, cr_credits_pending
    FROM transfers WHERE id = ANY($1::uuid[]) ORDER BY seq"""


async def _state(conn: asyncpg.Connection, batch: NewTransfers, accounts: list[uuid.UUID]) -> tuple:
    transfers = [tuple(r) for r in await conn.fetch(TRANSFER_ROWS, batch.ids)]
    counters = [tuple(r) for r in await conn.fetch(
        """SELECT id, debits_posted, credits_posted, debits_pending, credits_pending FROM accounts
           WHERE id = ANY($1::uuid[]) ORDER BY id""", accounts)]
    lists = sorted((r["expires_at"], tuple(r["pending_ids"])) for r in await conn.fetch(
        "SELECT expires_at, pending_ids FROM pending_expiry_batches WHERE pending_ids && $1::uuid[]", batch.ids))
    return transfers, counters, lists


async def _sequential(ledger: Ledger, conn: asyncpg.Connection, batch: NewTransfers) -> list[tuple]:
    outcome = await ledger.write_batch(conn, batch.transfers())

    def available(b):
        return b.credits_posted - b.debits_posted - b.debits_pending

    return [(r.code, available(r.debit_counters), available(r.credit_counters)) if r.ok else (r.code, 0, 0)
            for r in outcome.results]


async def _both_paths(dsn: str, accounts_spec, transfers_spec) -> None:
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        ledger = Ledger(pool, clock=lambda: NOW)
        funding = {c: uuid.uuid4() for c in ("EUR", "USD")}
        ids = [uuid.uuid4() for _ in accounts_spec]
        await ledger.create_accounts(
            [NewAccount(id=i, currency=c, kind=AccountKind.EXTERNAL_FUNDING) for c, i in funding.items()]
            + [NewAccount(id=i, currency=currency, kind=AccountKind.USER_BALANCE,
                          debits_must_not_exceed_credits=flag == "dmnec", credits_must_not_exceed_debits=flag == "cmned")
               for i, (flag, currency, _) in zip(ids, accounts_spec, strict=True)])
        # Opening balances: credit the account (cmned accounts are debited instead, so they can take credits).
        opening = []
        for i, (flag, currency, amount) in zip(ids, accounts_spec, strict=True):
            if amount:
                dr, cr = (i, funding[currency]) if flag == "cmned" else (funding[currency], i)
                opening.append(Transfer(id=uuid.uuid4(), code=1, debit_account_id=dr, credit_account_id=cr,
                                        amount=amount, currency=currency))
        assert all(r.ok for r in await ledger.create_transfers(opening))

        batch = NewTransfers()
        for dr, cr, amount, pending, timeout, linked, currency in transfers_spec:
            dr, cr = ids[dr % len(ids)], ids[cr % len(ids)]
            if dr == cr:
                cr = funding[currency]
            batch.add(7, dr, cr, amount, currency, pending=pending, timeout=timeout if pending else 0,
                      reference=f"ref-{len(batch)}" if len(batch) % 3 else None, linked=linked)
        touched = ids + list(funding.values())

        async with pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            fast = await ledger.write_new(conn, batch)
            fast_state = await _state(conn, batch, touched)
            await tx.rollback()
            tx = conn.transaction()
            await tx.start()
            slow = await _sequential(ledger, conn, batch)
            slow_state = await _state(conn, batch, touched)
            await tx.rollback()
        event("every transfer succeeds" if all(r[0] is ResultCode.OK for r in slow) else "some transfer fails")
        assert fast == slow
        assert fast_state == slow_state
    finally:
        await pool.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(accounts_spec=account_specs, transfers_spec=transfer_specs)
def test_set_based_path_writes_what_the_sequential_path_writes(database_url, accounts_spec, transfers_spec):
    asyncio.run(_both_paths(database_url, accounts_spec, transfers_spec))


async def test_a_batch_that_fits_is_written_by_postgresql_alone(pool, ledger, monkeypatch):
    funding, user, deposit = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await ledger.create_accounts([
        NewAccount(id=funding, currency="EUR", kind=AccountKind.EXTERNAL_FUNDING),
        NewAccount(id=user, currency="EUR", kind=AccountKind.USER_BALANCE, debits_must_not_exceed_credits=True),
        NewAccount(id=deposit, currency="EUR", kind=AccountKind.PARTNER_DEPOSIT, debits_must_not_exceed_credits=True)])
    await ledger.create_transfers([
        Transfer(id=uuid.uuid4(), code=1, debit_account_id=funding, credit_account_id=a, amount=1_000, currency="EUR")
        for a in (user, deposit)])

    def refuse(*args, **kwargs):
        raise AssertionError("the sequential path was used")

    batch = NewTransfers()
    batch.add(10, deposit, funding, 600, "EUR", pending=True, timeout=60, linked=True)
    batch.add(11, user, deposit, 600, "EUR", pending=True, timeout=60)
    with monkeypatch.context() as m:
        m.setattr(ledger, "write_batch", refuse)
        async with pool.acquire() as conn, conn.transaction():
            results = await ledger.write_new(conn, batch)
    # Each hold leaves its debit account 400 available; the funding account was debited 2,000 at the opening.
    assert results == [(ResultCode.OK, 400, -2_000), (ResultCode.OK, 400, 400)]

    # 600 more does not fit the user: the sequential path declines the chain, nothing is written.
    again = NewTransfers()
    again.add(10, deposit, funding, 300, "EUR", pending=True, timeout=60, linked=True)
    again.add(11, user, deposit, 600, "EUR", pending=True, timeout=60)
    async with pool.acquire() as conn, conn.transaction():
        results = await ledger.write_new(conn, again)
    assert [r[0] for r in results] == [ResultCode.LINKED_EVENT_FAILED, ResultCode.EXCEEDS_CREDITS]
    assert await ledger.lookup_transfers(again.ids) == []
    [account] = await ledger.lookup_accounts([user])
    assert account.balance.debits_pending == 600


async def test_an_open_chain_fails_whole(pool, ledger):
    a, b = uuid.uuid4(), uuid.uuid4()
    await ledger.create_accounts([NewAccount(id=i, currency="EUR", kind=AccountKind.EXTERNAL_FUNDING) for i in (a, b)])
    batch = NewTransfers()
    batch.add(1, a, b, 5, "EUR", pending=False, linked=True)
    async with pool.acquire() as conn, conn.transaction():
        results = await ledger.write_new(conn, batch)
    assert [r[0] for r in results] == [ResultCode.LINKED_EVENT_CHAIN_OPEN]
    assert await ledger.lookup_transfers(batch.ids) == []
