"""The ledger's behaviour, one rule at a time, against a real PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from antaca_auth.accounts import AccountKind, AccountResultCode, Counters, NewAccount
from antaca_auth.ledger import Ledger
from antaca_auth.transfers import ResultCode, Transfer, TransferKind
from antaca_auth.verify import verify_ledger

R = ResultCode
SINGLE, PENDING, POST, VOID = (
    TransferKind.SINGLE,
    TransferKind.PENDING,
    TransferKind.POST_PENDING,
    TransferKind.VOID_PENDING,
)


def tid() -> uuid.UUID:
    return uuid.uuid4()


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def make_accounts(ledger: Ledger, currency: str = "EUR") -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    """An external funding account, and two user balances that cannot go negative."""
    funding, alice, bob = tid(), tid(), tid()
    results = await ledger.create_accounts(
        [
            NewAccount(id=funding, currency=currency, kind=AccountKind.EXTERNAL_FUNDING),
            NewAccount(id=alice, currency=currency, kind=AccountKind.USER_BALANCE, debits_must_not_exceed_credits=True),
            NewAccount(id=bob, currency=currency, kind=AccountKind.USER_BALANCE, debits_must_not_exceed_credits=True),
        ]
    )
    assert [r.code for r in results] == [AccountResultCode.OK] * 3
    return funding, alice, bob


def single(dr, cr, amount, **kw) -> Transfer:
    return Transfer(id=kw.pop("id", tid()), debit_account_id=dr, credit_account_id=cr, amount=amount,
                    currency=kw.pop("currency", "EUR"), code=kw.pop("code", 1), **kw)


async def balance(ledger: Ledger, account_id: uuid.UUID) -> Counters:
    (account,) = await ledger.lookup_accounts([account_id])
    return account.balance


async def assert_clean(pool) -> None:
    async with pool.acquire() as conn:
        assert await verify_ledger(conn) == []


async def test_single_transfer_moves_money_and_returns_balances(ledger, pool):
    funding, alice, _ = await make_accounts(ledger)
    (r,) = await ledger.create_transfers([single(funding, alice, 500)])
    assert r.code is R.OK
    assert r.debit_counters == Counters(debits_posted=500)
    assert r.credit_counters == Counters(credits_posted=500)
    (acc,) = await ledger.lookup_accounts([alice])
    assert (acc.posted, acc.available) == (500, 500)
    (fund,) = await ledger.lookup_accounts([funding])
    assert (fund.posted, fund.available) == (500, 500)  # debit-normal
    await assert_clean(pool)


async def test_flagged_account_never_goes_negative(ledger, pool):
    funding, alice, bob = await make_accounts(ledger)
    await ledger.create_transfers([single(funding, alice, 100)])
    results = await ledger.create_transfers([single(alice, bob, 60), single(alice, bob, 60), single(alice, bob, 40)])
    assert [r.code for r in results] == [R.OK, R.EXCEEDS_CREDITS, R.OK]
    assert await balance(ledger, alice) == Counters(debits_posted=100, credits_posted=100)
    # At exactly zero, not one minor unit more, posted or held.
    for kind in (SINGLE, PENDING):
        (refused,) = await ledger.create_transfers([single(alice, bob, 1, kind=kind)])
        assert refused.code is R.EXCEEDS_CREDITS
    await assert_clean(pool)


async def test_credits_must_not_exceed_debits(ledger):
    a, b = tid(), tid()
    await ledger.create_accounts(
        [
            NewAccount(id=a, currency="EUR", kind=AccountKind.EXTERNAL_FUNDING),
            NewAccount(id=b, currency="EUR", kind=AccountKind.EXTERNAL_FUNDING, credits_must_not_exceed_debits=True),
        ]
    )
    (r,) = await ledger.create_transfers([single(a, b, 1)])
    assert r.code is R.EXCEEDS_DEBITS
    (r1, r2) = await ledger.create_transfers([single(b, a, 5), single(a, b, 5)])
    assert (r1.code, r2.code) == (R.OK, R.OK)


async def test_idempotent_replay_and_conflicting_replay(ledger, pool):
    funding, alice, _ = await make_accounts(ledger)
    t = single(funding, alice, 700, reference="bank-ref-1", metadata={"source": "test"})
    (first,) = await ledger.create_transfers([t])
    (again,) = await ledger.create_transfers([t])
    assert again.code is R.EXISTS
    assert again.credit_counters == first.credit_counters
    (different,) = await ledger.create_transfers([single(funding, alice, 701, id=t.id, reference="bank-ref-1")])
    assert different.code is R.EXISTS_WITH_DIFFERENT_FIELDS
    assert await balance(ledger, alice) == Counters(credits_posted=700)
    (stored,) = await ledger.lookup_transfers([t.id])
    assert stored.metadata == {"source": "test"} and stored.reference == "bank-ref-1"
    await assert_clean(pool)


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"amount": 0}, R.AMOUNT_MUST_BE_POSITIVE),
        ({"amount": -5}, R.AMOUNT_MUST_BE_POSITIVE),
        ({"amount": 2**63}, R.AMOUNT_TOO_LARGE),
        ({"amount": 1.5}, R.AMOUNT_MUST_BE_POSITIVE),
        ({"id": "not-a-uuid"}, R.INVALID_ID),
        ({"id": uuid.UUID(int=0)}, R.ID_MUST_NOT_BE_ZERO),
        ({"currency": "euro"}, R.INVALID_CURRENCY),
        ({"currency": "USD"}, R.CURRENCY_MISMATCH),
        ({"code": 0}, R.INVALID_CODE),
        ({"code": 70000}, R.INVALID_CODE),
        ({"debit_account_id": "same"}, R.ACCOUNTS_MUST_DIFFER),
        ({"credit_account_id": uuid.uuid4()}, R.ACCOUNT_NOT_FOUND),
        ({"credit_account_id": "xyz"}, R.ACCOUNT_NOT_FOUND),
        ({"timeout": 10}, R.TIMEOUT_RESERVED_FOR_PENDING),
        ({"timeout": -1}, R.INVALID_TIMEOUT),
        ({"pending_id": uuid.uuid4()}, R.PENDING_ID_MUST_BE_ABSENT),
        ({"amount": None}, R.MISSING_FIELD),
        ({"reference": "x" * 1000}, R.REFERENCE_TOO_LONG),
        ({"kind": TransferKind.EXPIRE_PENDING}, R.INVALID_KIND),
        ({"kind": "teleport"}, R.INVALID_KIND),
    ],
)
async def test_bad_input_gets_its_code_and_writes_nothing(ledger, pool, change, code):
    funding, alice, _ = await make_accounts(ledger)
    fields = {"id": tid(), "debit_account_id": funding, "credit_account_id": alice, "amount": 10,
              "currency": "EUR", "code": 1}
    fields.update(change)
    if fields["debit_account_id"] == "same":
        fields["debit_account_id"] = alice
    (r,) = await ledger.create_transfers([Transfer(**fields)])
    assert r.code is code
    assert r.debit_counters is None
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM transfers") == 0
        assert await conn.fetchval("SELECT sum(debits_posted + credits_posted) FROM accounts") == 0


async def test_pending_post_partial_releases_the_rest(ledger, pool):
    funding, alice, bob = await make_accounts(ledger)
    await ledger.create_transfers([single(funding, alice, 1000)])
    hold = single(alice, bob, 300, kind=PENDING)
    (r,) = await ledger.create_transfers([hold])
    assert r.code is R.OK and r.debit_counters == Counters(debits_pending=300, credits_posted=1000)
    (acc,) = await ledger.lookup_accounts([alice])
    assert (acc.posted, acc.available) == (1000, 700)
    # the hold reserves funds: a transfer beyond what is available fails
    (over,) = await ledger.create_transfers([single(alice, bob, 701)])
    assert over.code is R.EXCEEDS_CREDITS
    (too_much,) = await ledger.create_transfers([Transfer(id=tid(), kind=POST, pending_id=hold.id, amount=301, code=1)])
    assert too_much.code is R.AMOUNT_EXCEEDS_PENDING
    post = Transfer(id=tid(), kind=POST, pending_id=hold.id, amount=120, code=1)
    (p,) = await ledger.create_transfers([post])
    assert p.code is R.OK
    assert await balance(ledger, alice) == Counters(debits_posted=120, credits_posted=1000)
    assert await balance(ledger, bob) == Counters(credits_posted=120)
    (twice,) = await ledger.create_transfers([Transfer(id=tid(), kind=POST, pending_id=hold.id, code=1)])
    assert twice.code is R.PENDING_ALREADY_RESOLVED
    (void,) = await ledger.create_transfers([Transfer(id=tid(), kind=VOID, pending_id=hold.id, code=1)])
    assert void.code is R.PENDING_ALREADY_RESOLVED
    (replay,) = await ledger.create_transfers([post])
    assert replay.code is R.EXISTS
    (full_replay,) = await ledger.create_transfers([Transfer(id=post.id, kind=POST, pending_id=hold.id, code=1)])
    assert full_replay.code is R.EXISTS_WITH_DIFFERENT_FIELDS  # "in full" is not what was posted
    await assert_clean(pool)


async def test_void_releases_and_post_of_voided_is_refused(ledger, pool):
    funding, alice, bob = await make_accounts(ledger)
    await ledger.create_transfers([single(funding, alice, 50)])
    hold = single(alice, bob, 50, kind=PENDING)
    await ledger.create_transfers([hold])
    (partial_void,) = await ledger.create_transfers([Transfer(id=tid(), kind=VOID, pending_id=hold.id, amount=10, code=1)])
    assert partial_void.code is R.AMOUNT_MUST_MATCH_PENDING
    (v,) = await ledger.create_transfers([Transfer(id=tid(), kind=VOID, pending_id=hold.id, code=1)])
    assert v.code is R.OK
    assert await balance(ledger, alice) == Counters(credits_posted=50)
    (p,) = await ledger.create_transfers([Transfer(id=tid(), kind=POST, pending_id=hold.id, code=1)])
    assert p.code is R.PENDING_ALREADY_RESOLVED
    await assert_clean(pool)


async def test_resolution_errors(ledger):
    funding, alice, bob = await make_accounts(ledger)
    plain = single(funding, alice, 5)
    hold = single(funding, bob, 5, kind=PENDING)
    await ledger.create_transfers([plain, hold])
    cases = [
        (Transfer(id=tid(), kind=POST, pending_id=uuid.uuid4(), code=1), R.PENDING_NOT_FOUND),
        (Transfer(id=tid(), kind=POST, pending_id=plain.id, code=1), R.NOT_PENDING),
        (Transfer(id=tid(), kind=POST, pending_id=None, code=1), R.MISSING_FIELD),
        (Transfer(id=hold.id, kind=POST, pending_id=hold.id, code=1), R.PENDING_ID_MUST_DIFFER),
        (Transfer(id=tid(), kind=POST, pending_id=hold.id, debit_account_id=alice, code=1),
         R.PENDING_HAS_DIFFERENT_ACCOUNTS),
        (Transfer(id=tid(), kind=POST, pending_id=hold.id, currency="USD", code=1), R.CURRENCY_MISMATCH),
        (Transfer(id=tid(), kind=POST, pending_id=hold.id, timeout=5, code=1), R.TIMEOUT_RESERVED_FOR_PENDING),
    ]
    for transfer, code in cases:
        (r,) = await ledger.create_transfers([transfer])
        assert r.code is code, transfer


async def test_linked_chain_commits_all_or_nothing(ledger, pool):
    funding, alice, bob = await make_accounts(ledger)
    await ledger.create_transfers([single(funding, alice, 100)])
    chain = [single(alice, bob, 30, linked=True), single(alice, bob, 80, linked=True), single(funding, bob, 1)]
    results = await ledger.create_transfers(chain + [single(funding, alice, 1)])
    assert [r.code for r in results] == [R.LINKED_EVENT_FAILED, R.EXCEEDS_CREDITS, R.LINKED_EVENT_FAILED, R.OK]
    assert await ledger.lookup_transfers([t.id for t in chain]) == []
    ok_chain = [single(alice, bob, 30, linked=True, kind=PENDING), single(alice, bob, 70)]
    assert [r.code for r in await ledger.create_transfers(ok_chain)] == [R.OK, R.OK]
    open_chain = await ledger.create_transfers([single(funding, alice, 1, linked=True), single(funding, alice, 1, linked=True)])
    assert [r.code for r in open_chain] == [R.LINKED_EVENT_FAILED, R.LINKED_EVENT_CHAIN_OPEN]
    assert await balance(ledger, alice) == Counters(debits_posted=70, debits_pending=30, credits_posted=101)
    await assert_clean(pool)


async def test_pending_and_post_in_one_batch(ledger, pool):
    funding, alice, bob = await make_accounts(ledger)
    hold = single(funding, alice, 40, kind=PENDING, timeout=60)
    results = await ledger.create_transfers([hold, Transfer(id=tid(), kind=POST, pending_id=hold.id, code=1)])
    assert [r.code for r in results] == [R.OK, R.OK]
    async with pool.acquire() as conn:
        # The sweeper's lists (sql/0007: `pending_expiry_batches`; `pending_expiries` is no longer
        # written) must not name a hold its own batch resolved.
        listed = "SELECT count(*) FROM pending_expiry_batches WHERE $1 = ANY(pending_ids)"
        assert await conn.fetchval(listed, hold.id) == 0
        # The check can see a listed hold: one left open in its batch is on a list.
        open_hold = single(funding, alice, 5, kind=PENDING, timeout=60)
        assert [r.code for r in await ledger.create_transfers([open_hold])] == [R.OK]
        assert await conn.fetchval(listed, open_hold.id) == 1
    await assert_clean(pool)


async def test_overflow_is_refused(ledger):
    a, b, c = tid(), tid(), tid()
    await ledger.create_accounts([NewAccount(id=x, currency="EUR", kind=AccountKind.EXTERNAL_FUNDING) for x in (a, b, c)])
    big = 2**63 - 1
    assert (await ledger.create_transfers([single(a, b, big)]))[0].code is R.OK
    assert (await ledger.create_transfers([single(a, c, 1)]))[0].code is R.OVERFLOWS_DEBITS
    assert (await ledger.create_transfers([single(c, b, 1)]))[0].code is R.OVERFLOWS_CREDITS
    assert (await ledger.create_transfers([single(c, b, 1, kind=PENDING)]))[0].code is R.OVERFLOWS_CREDITS


async def test_expired_hold_is_released_by_the_sweeper_and_cannot_be_posted(pool):
    clock = Clock()
    ledger = Ledger(pool, clock=clock)
    funding, alice, bob = await make_accounts(ledger)
    await ledger.create_transfers([single(funding, alice, 100)])
    hold = single(alice, bob, 60, kind=PENDING, timeout=30)
    keep = single(alice, bob, 10, kind=PENDING, timeout=300)
    await ledger.create_transfers([hold, keep])
    clock.now += timedelta(seconds=30)
    (late,) = await ledger.create_transfers([Transfer(id=tid(), kind=POST, pending_id=hold.id, code=1)])
    assert late.code is R.PENDING_EXPIRED
    assert await ledger.expire_pending() == 1
    assert await ledger.expire_pending() == 0  # a second sweep finds nothing
    assert await balance(ledger, alice) == Counters(credits_posted=100, debits_pending=10)
    (void,) = await ledger.create_transfers([Transfer(id=tid(), kind=VOID, pending_id=hold.id, code=1)])
    assert void.code is R.PENDING_EXPIRED
    statement = await ledger.statement(alice)
    assert [e.transfer.kind for e in statement.entries] == [SINGLE, PENDING, PENDING, TransferKind.EXPIRE_PENDING]
    assert statement.entries[-1].available == 90
    await assert_clean(pool)


async def test_statement_pages_with_running_balance(ledger):
    funding, alice, bob = await make_accounts(ledger)
    transfers = [single(funding, alice, 10 * (i + 1)) for i in range(5)] + [single(alice, bob, 25)]
    await ledger.create_transfers(transfers)
    first = await ledger.statement(alice, limit=4)
    assert first.next_after is not None
    rest = await ledger.statement(alice, after=first.next_after, limit=4)
    assert rest.next_after is None
    entries = first.entries + rest.entries
    assert [e.transfer.id for e in entries] == [t.id for t in transfers]
    assert [e.posted for e in entries] == [10, 30, 60, 100, 150, 125]
    assert [e.side for e in entries][-1] == "debit"
    assert await ledger.statement(uuid.uuid4()) is None


async def test_accounts_are_created_idempotently(ledger):
    a = NewAccount(id=tid(), currency="JPY", kind=AccountKind.USER_BALANCE, owner_ref="user-1")
    results = await ledger.create_accounts(
        [
            a,
            a,
            NewAccount(id=a.id, currency="EUR", kind=AccountKind.USER_BALANCE),
            NewAccount(id=tid(), currency="XXX", kind=AccountKind.USER_BALANCE),
            NewAccount(id=tid(), currency="EUR", kind="wallet"),
            NewAccount(id=uuid.UUID(int=0), currency="EUR", kind=AccountKind.USER_BALANCE),
            NewAccount(id=tid(), currency="EUR", kind=AccountKind.USER_BALANCE,
                       debits_must_not_exceed_credits=True, credits_must_not_exceed_debits=True),
        ]
    )
    C = AccountResultCode
    assert [r.code for r in results] == [C.OK, C.EXISTS, C.EXISTS_WITH_DIFFERENT_FIELDS, C.INVALID_CURRENCY,
                                         C.INVALID_KIND, C.ID_MUST_NOT_BE_ZERO, C.FLAGS_ARE_MUTUALLY_EXCLUSIVE]
    assert [r.code for r in await ledger.create_accounts([a])] == [C.EXISTS]
    assert (await ledger.currencies())["JPY"] == 0


async def test_transfers_are_immutable_in_the_database(ledger, pool):
    funding, alice, _ = await make_accounts(ledger)
    await ledger.create_transfers([single(funding, alice, 1)])
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.RaiseError, match="immutable"):
            await conn.execute("UPDATE transfers SET amount = 2")
        with pytest.raises(asyncpg.RaiseError, match="immutable"):
            await conn.execute("DELETE FROM transfers")
