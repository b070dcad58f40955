"""Property-based tests of the ledger against the in-memory model, sequential and concurrent.

Each hypothesis example works on fresh accounts in the test's database, so examples share the
database and `verify_ledger` checks everything the examples wrote together.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from antaca_auth.accounts import AccountKind, NewAccount
from antaca_auth.database import create_pool
from antaca_auth.ledger import EXPIRY_NAMESPACE, Ledger, transfer_from_row
from antaca_auth.transfers import ResultCode, Transfer, TransferKind
from antaca_auth.verify import verify_ledger
from tests.ledger_model import LedgerModel

K = TransferKind
N_IDS = 16

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass(frozen=True)
class Spec:
    """A transfer with indexes in place of ids, so that generated transfers refer to each other."""

    kind: TransferKind
    id: int
    dr: int
    cr: int
    amount: int | None
    currency: str
    pending: int
    timeout: int
    linked: bool
    reference: str | None


def mostly(common: st.SearchStrategy, rare: st.SearchStrategy) -> st.SearchStrategy:
    """`common` nine times in ten, `rare` otherwise."""
    return st.sampled_from([common] * 9 + [rare]).flatmap(lambda chosen: chosen)


# Mostly well-formed amounts; now and then zero, negative or one that overflows the counters.
amounts = mostly(st.integers(1, 400), st.sampled_from([0, -3, 2**62]))


def specs(n_accounts: int) -> st.SearchStrategy[Spec]:
    """Mostly transfers that can succeed, with every kind of failure mixed in."""
    # index n_accounts names an account that does not exist; cr is an offset from dr
    account = mostly(st.integers(0, n_accounts - 1), st.just(n_accounts))
    return st.builds(
        Spec,
        kind=st.sampled_from([K.SINGLE, K.SINGLE, K.PENDING, K.PENDING, K.POST_PENDING, K.VOID_PENDING]),
        id=st.integers(0, N_IDS - 1),
        dr=account,
        # usually another account than the debit one
        cr=mostly(st.integers(1, n_accounts - 1), st.sampled_from([0, n_accounts])),
        amount=st.one_of(st.none(), amounts),
        currency=st.sampled_from(["EUR"] * 9 + ["USD"]),
        # below N_IDS: any id; above: one of the pending transfers submitted so far
        pending=st.integers(0, 4 * N_IDS),
        timeout=st.sampled_from([0, 0, 10, 100]),
        linked=st.sampled_from([False] * 5 + [True]),
        reference=st.sampled_from([None, None, "ref-a"]),
    )


# The first account is always an unflagged EUR one, so that money can flow in.
account_flags = st.lists(
    st.tuples(st.sampled_from(["EUR"] * 5 + ["USD"]), st.sampled_from(["none", "dmnec", "dmnec", "cmned"])),
    min_size=1,
    max_size=3,
).map(lambda rest: [("EUR", "none"), *rest])


class World:
    """Uuids for one example: accounts (the last one never created) and transfer ids."""

    def __init__(self, n_accounts: int) -> None:
        self.n_accounts = n_accounts
        self.accounts = [uuid.uuid4() for _ in range(n_accounts + 1)]
        self.ids = [uuid.uuid4() for _ in range(N_IDS)]
        self.pendings: list[uuid.UUID] = []

    def transfer(self, s: Spec) -> Transfer:
        n = self.n_accounts
        if s.kind in (K.SINGLE, K.PENDING):
            if s.kind is K.PENDING:
                self.pendings.append(self.ids[s.id])
            return Transfer(
                id=self.ids[s.id], kind=s.kind, code=1, debit_account_id=self.accounts[s.dr],
                credit_account_id=self.accounts[n if s.cr == n else (s.dr + s.cr) % n],
                amount=s.amount if s.amount is not None else 100,
                currency=s.currency, timeout=s.timeout if s.kind is K.PENDING else 0, linked=s.linked,
                reference=s.reference,
            )
        return Transfer(
            id=self.ids[s.id], kind=s.kind, code=1,
            pending_id=self.ids[s.pending % N_IDS] if s.pending < N_IDS or not self.pendings
            else self.pendings[s.pending % len(self.pendings)],
            amount=s.amount if s.kind is K.POST_PENDING else None, linked=s.linked, reference=s.reference,
        )


async def create_accounts(ledger: Ledger, model: LedgerModel, world: World, flags) -> None:
    new = []
    for account_id, (currency, flag) in zip(world.accounts, flags, strict=False):
        kind = AccountKind.EXTERNAL_FUNDING if flag == "none" else AccountKind.USER_BALANCE
        new.append(NewAccount(id=account_id, currency=currency, kind=kind,
                              debits_must_not_exceed_credits=flag == "dmnec",
                              credits_must_not_exceed_debits=flag == "cmned"))
        model.add_account(account_id, currency, flag == "dmnec", flag == "cmned")
    assert all(r.code == "ok" for r in await ledger.create_accounts(new))


def outcomes(results) -> list[tuple]:
    def counters(b):
        return None if b is None else (b.debits_posted, b.credits_posted, b.debits_pending, b.credits_pending)

    return [(str(r.code), counters(r.debit_counters), counters(r.credit_counters)) for r in results]


async def assert_matches_model(conn: asyncpg.Connection, model: LedgerModel, world: World) -> None:
    rows = await conn.fetch("SELECT id, debits_posted, credits_posted, debits_pending, credits_pending "
                            "FROM accounts WHERE id = ANY($1)", world.accounts)
    assert {r["id"]: tuple(r.values())[1:] for r in rows} == {
        i: a.counters() for i, a in model.accounts.items()
    }
    stored = {r["id"]: transfer_from_row(r)
              for r in await conn.fetch("SELECT * FROM transfers WHERE debit_account_id = ANY($1)", world.accounts)}
    expected = {i: t for i, t in model.transfers.items()}
    assert set(stored) == set(expected)
    for i, t in expected.items():
        s = stored[i]
        assert (s.kind, s.debit_account_id, s.credit_account_id, s.amount, s.currency, s.pending_id, s.expires_at) == (
            t.kind, t.dr, t.cr, t.amount, t.currency, t.pending_id, t.expires_at)


async def release_all_holds(pool) -> None:
    """Expire every hold left, so that the next example's sweeps see only its own."""
    await Ledger(pool, clock=lambda: datetime(2100, 1, 1, tzinfo=UTC)).expire_pending()


async def assert_verifies(conn: asyncpg.Connection) -> None:
    assert await verify_ledger(conn) == []


# --- sequential: every result equals the model's --------------------------------------------

steps = st.lists(
    st.sampled_from(
        [st.tuples(st.just("batch"), st.lists(st.integers(0, 10**6), min_size=1, max_size=6))] * 6
        + [
            st.tuples(st.just("advance"), st.sampled_from([5, 50, 200])),
            st.tuples(st.just("sweep"), st.just(0)),
            st.tuples(st.just("replay"), st.integers(0, 50)),
        ]
    ).flatmap(lambda step: step),
    min_size=1,
    max_size=20,
)


@SETTINGS
@given(flags=account_flags, plan=steps, data=st.data())
def test_sequential_operations_match_the_model(database_url, flags, plan, data):
    spec = specs(len(flags))
    batches = {i: [data.draw(spec) for _ in step[1]] for i, step in enumerate(plan) if step[0] == "batch"}
    asyncio.run(run_sequential(database_url, flags, plan, batches))


async def run_sequential(dsn: str, flags, plan, batches) -> None:
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        clock = Clock()
        ledger, model, world = Ledger(pool, clock=clock), LedgerModel(), World(len(flags))
        await create_accounts(ledger, model, world, flags)
        submitted: list[list[Transfer]] = []
        for i, (op, arg) in enumerate(plan):
            if op == "advance":
                clock.now += timedelta(seconds=arg)
                continue
            if op == "sweep":
                expected = len(model.due_holds(clock.now))
                for hold in model.due_holds(clock.now):
                    model.submit([Transfer(id=uuid.uuid5(EXPIRY_NAMESPACE, str(hold.id)), kind=K.EXPIRE_PENDING,
                                           pending_id=hold.id, code=1)], clock.now, system=True)
                assert await ledger.expire_pending() == expected
                continue
            if op == "replay":
                if not submitted:
                    continue
                batch = submitted[arg % len(submitted)]
            else:
                batch = [world.transfer(s) for s in batches[i]]
            submitted.append(batch)
            results = await ledger.create_transfers(batch)
            assert outcomes(results) == model.submit(batch, clock.now), batch
            for r in results:
                event(str(r.code))
        async with pool.acquire() as conn:
            await assert_matches_model(conn, model, world)
            await assert_verifies(conn)
    finally:
        await release_all_holds(pool)
        await pool.close()


# --- concurrent: many connections at once, then check the history is a valid serial one -------

worker_plans = st.lists(st.lists(st.lists(st.integers(0, 10**6), min_size=1, max_size=5), min_size=1, max_size=6),
                        min_size=2, max_size=5)


@SETTINGS
@given(flags=account_flags, plans=worker_plans, sweeps=st.integers(0, 3), data=st.data())
def test_concurrent_operations_keep_every_invariant(database_url, flags, plans, sweeps, data):
    spec = specs(len(flags))
    batches = [[[data.draw(spec) for _ in b] for b in plan] for plan in plans]
    asyncio.run(run_concurrent(database_url, flags, batches, sweeps))


async def run_concurrent(dsn: str, flags, plans, sweeps: int) -> None:
    pool = await create_pool(dsn, min_size=1, max_size=len(plans) + 2)
    try:
        clock = Clock()
        ledger, world = Ledger(pool, clock=clock), World(len(flags))
        await create_accounts(ledger, LedgerModel(), world, flags)
        # Fund the flagged accounts from a fresh unflagged one so that spending can succeed.
        funding_ids = set()
        for currency in ("EUR", "USD"):
            source = uuid.uuid4()
            await ledger.create_accounts([NewAccount(id=source, currency=currency, kind=AccountKind.EXTERNAL_FUNDING)])
            world.accounts.append(source)
            funding = [
                Transfer(id=uuid.uuid4(), code=1, debit_account_id=source, credit_account_id=a, amount=500,
                         currency=currency)
                for a, (c, flag) in zip(world.accounts, flags, strict=False) if c == currency and flag == "dmnec"
            ]
            assert all(r.ok for r in await ledger.create_transfers(funding))
            funding_ids.update(t.id for t in funding)

        async def worker(plan) -> list[tuple[Transfer, object]]:
            seen = []
            for batch_specs in plan:
                batch = [world.transfer(s) for s in batch_specs]
                seen.extend(zip(batch, await ledger.create_transfers(batch), strict=True))
            return seen

        async def sweeper() -> None:
            for _ in range(sweeps):
                await asyncio.sleep(0.005)
                clock.now += timedelta(seconds=60)
                await ledger.expire_pending()

        *seen_by_worker, _ = await asyncio.gather(*(worker(p) for p in plans), sweeper())
        seen = [pair for pairs in seen_by_worker for pair in pairs]
        for _, r in seen:
            event(str(r.code))

        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT seq, * FROM transfers WHERE debit_account_id = ANY($1) OR credit_account_id = ANY($1) "
                "ORDER BY seq", world.accounts)
            stored = {r["id"]: transfer_from_row(r) for r in rows}

            # Each id was committed at most once, and exactly the ids some caller was told `ok`.
            ok_count = defaultdict(int)
            for t, r in seen:
                ok_count[t.id] += r.code is ResultCode.OK
            assert max(ok_count.values()) <= 1
            committed_by_workers = {
                i for i in stored if stored[i].kind is not K.EXPIRE_PENDING and i not in funding_ids
            }
            assert committed_by_workers == {i for i, n in ok_count.items() if n}

            # What a caller was told (`ok` or `exists`) is what is stored.
            for t, r in seen:
                if r.code in (ResultCode.OK, ResultCode.EXISTS):
                    s = stored[t.id]
                    assert (r.debit_counters, r.credit_counters) == (s.debit_counters, s.credit_counters)
                    assert (s.kind, s.reference) == (t.kind, t.reference)
                    for name in ("debit_account_id", "credit_account_id", "amount", "pending_id"):
                        assert getattr(t, name) in (None, getattr(s, name))
                else:
                    assert r.debit_counters is None

            # Replaying the stored history serially (commit order) through the model accepts every
            # transfer and reproduces every recorded balance: the concurrent run was serializable.
            model = LedgerModel()
            for r in await conn.fetch("SELECT id, currency, debits_must_not_exceed_credits AS d, "
                                      "credits_must_not_exceed_debits AS c FROM accounts WHERE id = ANY($1)",
                                      world.accounts):
                model.add_account(r["id"], r["currency"], r["d"], r["c"])
            for r in rows:
                s = stored[r["id"]]
                again = Transfer(id=s.id, kind=s.kind, code=s.code, debit_account_id=s.debit_account_id,
                                 credit_account_id=s.credit_account_id, amount=s.amount, currency=s.currency,
                                 pending_id=s.pending_id, timeout=s.timeout, reference=s.reference,
                                 metadata=s.metadata)
                outcome = model.submit([again], s.created_at, system=True)
                balances = (s.debit_counters, s.credit_counters)
                expected = tuple((b.debits_posted, b.credits_posted, b.debits_pending, b.credits_pending)
                                 for b in balances)
                assert outcome == [("ok", *expected)], s
            await assert_matches_model(conn, model, world)
            await assert_verifies(conn)

            # Replays change nothing: every committed transfer answers `exists`.
            before = await conn.fetch("SELECT * FROM accounts WHERE id = ANY($1) ORDER BY id", world.accounts)
        replays = [t for t, r in seen if r.code is ResultCode.OK]
        replayed = await asyncio.gather(
            *(ledger.create_transfers([Transfer(**{**_fields(t), "linked": False})]) for t in replays))
        assert all(r.code is ResultCode.EXISTS for (r,) in replayed)
        async with pool.acquire() as conn:
            after = await conn.fetch("SELECT * FROM accounts WHERE id = ANY($1) ORDER BY id", world.accounts)
        assert before == after
    finally:
        await release_all_holds(pool)
        await pool.close()


def _fields(t: Transfer) -> dict:
    return {f: getattr(t, f) for f in t.__struct_fields__}
