"""`antaca ledger verify` finds what does not add up, and the command exits non-zero on it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from antaca_auth.accounts import AccountKind, NewAccount
from antaca_auth.transfers import Transfer, TransferKind
from antaca_auth.verify import verify_ledger


def run_verify(database_url: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANTACA_DATABASE_URL=database_url)
    return subprocess.run(
        [sys.executable, "-m", "antaca_api.cli", "ledger", "verify"], env=env, capture_output=True, text=True, timeout=60
    )


async def funded(ledger) -> tuple[uuid.UUID, uuid.UUID]:
    funding, user = uuid.uuid4(), uuid.uuid4()
    await ledger.create_accounts(
        [
            NewAccount(id=funding, currency="EUR", kind=AccountKind.EXTERNAL_FUNDING),
            NewAccount(id=user, currency="EUR", kind=AccountKind.USER_BALANCE, debits_must_not_exceed_credits=True),
        ]
    )
    hold = uuid.uuid4()
    await ledger.create_transfers(
        [
            Transfer(id=uuid.uuid4(), debit_account_id=funding, credit_account_id=user, amount=100, currency="EUR", code=1),
            Transfer(id=hold, kind=TransferKind.PENDING, debit_account_id=user, credit_account_id=funding,
                     amount=30, currency="EUR", code=2),
            Transfer(id=uuid.uuid4(), kind=TransferKind.POST_PENDING, pending_id=hold, amount=20, code=2),
        ]
    )
    return funding, user


async def test_clean_ledger_verifies_and_command_exits_zero(ledger, pool, database_url):
    await funded(ledger)
    async with pool.acquire() as conn:
        assert await verify_ledger(conn) == []
    done = run_verify(database_url)
    assert done.returncode == 0, done.stderr
    assert "clean" in done.stdout


async def test_hand_edited_balance_is_reported(ledger, pool, database_url):
    funding, user = await funded(ledger)
    async with pool.acquire() as conn:
        await conn.execute("UPDATE accounts SET credits_posted = credits_posted + 1 WHERE id = $1", user)
        problems = await verify_ledger(conn)
    assert any(str(user) in p and "transfers give" in p for p in problems)
    assert any(p.startswith("currency EUR") for p in problems)
    assert any("latest transfer" in p for p in problems)
    done = run_verify(database_url)
    assert done.returncode == 1
    assert str(user) in done.stdout


async def test_transfer_written_behind_the_ledgers_back_is_reported(ledger, pool):
    funding, user = await funded(ledger)
    async with pool.acquire() as conn:
        # a transfer inserted without updating the accounts, in another currency, to a missing account
        await conn.execute(
            """INSERT INTO transfers (id, kind, debit_account_id, credit_account_id, amount, currency, code,
                   created_at, dr_debits_posted, dr_credits_posted, dr_debits_pending, dr_credits_pending,
                   cr_debits_posted, cr_credits_posted, cr_debits_pending, cr_credits_pending)
               VALUES ($1, 'single', $2, $3, 5, 'USD', 1, now(), 0, 0, 0, 0, 0, 0, 0, 0)""",
            uuid.uuid4(), funding, uuid.uuid4(),
        )
        problems = await verify_ledger(conn)
    assert any("does not exist" in p for p in problems)
    assert any("currency differs" in p for p in problems)
    assert any(str(funding) in p and "transfers give" in p for p in problems)


async def test_a_hold_missing_from_the_expiry_lists_is_reported(ledger, pool):
    funding, user = await funded(ledger)
    hold = uuid.uuid4()
    await ledger.create_transfers([Transfer(id=hold, kind=TransferKind.PENDING, debit_account_id=user,
                                            credit_account_id=funding, amount=5, currency="EUR", code=2, timeout=60)])
    async with pool.acquire() as conn:
        assert await verify_ledger(conn) == []
        await conn.execute("DELETE FROM pending_expiry_batches")
        assert any(str(hold) in p and "no expiry list" in p for p in await verify_ledger(conn))
        stray = uuid.uuid4()
        await conn.execute("INSERT INTO pending_expiry_batches (expires_at, holds, pending_ids) "
                           "VALUES (now(), 1, ARRAY[$1::uuid])", stray)
        assert any(str(stray) in p and "not a pending transfer" in p for p in await verify_ledger(conn))


async def test_an_authorization_naming_no_card_is_reported(pool):
    network = uuid.uuid4()
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO networks (id, name) VALUES ($1, 'verify')", network)
        await conn.execute(
            """INSERT INTO authorizations (id, network_id, message_id, card_id, type, amount, currency, decision,
                   response_code, reason) VALUES ($1, $2, 'm1', NULL, 'ECOM', 5, 'EUR', 'DECLINED', '14', 'UNKNOWN_CARD')""",
            uuid.uuid4(), network)
        assert await verify_ledger(conn) == []  # an unknown PAN is stored without a card
        orphan = uuid.uuid4()
        await conn.execute(
            """INSERT INTO authorizations (id, network_id, message_id, card_id, type, amount, currency, decision,
                   response_code, reason) VALUES ($1, $2, 'm2', $3, 'ECOM', 5, 'EUR', 'DECLINED', '14', 'UNKNOWN_CARD')""",
            orphan, network, uuid.uuid4())
        assert any(str(orphan) in p and "does not exist" in p for p in await verify_ledger(conn))
