"""Ledger throughput: transfers/s and latency for single transfers and batches, hot and spread.

    python -m bench.ledger_bench [--seconds N] [--concurrency C]

Runs on ANTACA_DATABASE_URL or an embedded PostgreSQL, durable (synchronous_commit=on).
The last line printed is one JSON object with every scenario's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid

import uvloop

from antaca_auth.accounts import AccountKind, NewAccount
from antaca_auth.database import create_pool
from antaca_auth.ledger import Ledger
from antaca_auth.transfers import Transfer
from antaca_auth.verify import verify_ledger
from bench.database import bench_database
from bench.stats import summary

N_SPREAD = 10_000
SCENARIOS = {
    # name: (transfers per call, hot?, concurrent callers). Single transfers come from many
    # callers at once; batches from a few writers, as a batching service would send them.
    "single_hot": (1, True, 8),
    "batch100_hot": (100, True, 2),
    "batch1000_hot": (1000, True, 2),
    "single_spread": (1, False, 8),
    "batch1000_spread": (1000, False, 2),
}


async def setup(ledger: Ledger) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """One hot funding account and N_SPREAD user balances, each funded generously."""
    hot = uuid.uuid4()
    users = [uuid.uuid4() for _ in range(N_SPREAD)]
    await ledger.create_accounts([NewAccount(id=hot, currency="EUR", kind=AccountKind.EXTERNAL_FUNDING)])
    for i in range(0, N_SPREAD, 1000):
        chunk = users[i : i + 1000]
        await ledger.create_accounts(
            [NewAccount(id=u, currency="EUR", kind=AccountKind.USER_BALANCE, debits_must_not_exceed_credits=True)
             for u in chunk]
        )
        await ledger.create_transfers(
            [Transfer(id=uuid.uuid4(), debit_account_id=hot, credit_account_id=u, amount=10**12, currency="EUR",
                      code=1) for u in chunk]
        )
    return hot, users


def make_batch(size: int, hot: uuid.UUID | None, users: list[uuid.UUID]) -> list[Transfer]:
    batch = []
    for _ in range(size):
        if hot is not None:
            dr, cr = hot, random.choice(users)
        else:
            dr, cr = random.sample(users, 2)
        batch.append(Transfer(id=uuid.uuid4(), debit_account_id=dr, credit_account_id=cr, amount=random.randint(1, 500),
                              currency="EUR", code=2))
    return batch


async def run_scenario(ledger: Ledger, size: int, hot: uuid.UUID | None, users: list[uuid.UUID],
                       seconds: float, concurrency: int) -> dict:
    latencies: list[float] = []
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            batch = make_batch(size, hot, users)
            start = time.perf_counter()
            results = await ledger.create_transfers(batch)
            latencies.append(time.perf_counter() - start)
            assert all(r.ok for r in results), {str(r.code) for r in results}
            done += len(batch)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return summary(done, time.perf_counter() - start, latencies, "transfers_per_s")


async def main(seconds: float, concurrency: int | None) -> dict:
    async with bench_database() as dsn:
        pool = await create_pool(dsn, min_size=2, max_size=max(8, concurrency or 0))
        try:
            ledger = Ledger(pool)
            hot, users = await setup(ledger)
            per_scenario = seconds / len(SCENARIOS)
            figures = {}
            for name, (size, is_hot, callers) in SCENARIOS.items():
                figures[name] = await run_scenario(ledger, size, hot if is_hot else None, users, per_scenario,
                                                   concurrency or callers)
                print(name, json.dumps(figures[name]), flush=True)
            async with pool.acquire() as conn:
                problems = await verify_ledger(conn)
            assert not problems, problems
            return figures
        finally:
            await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="total measuring time (default 30)")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="concurrent callers for every scenario (default: 8 for single, 2 for batches)")
    args = parser.parse_args()
    print(json.dumps(uvloop.run(main(args.seconds, args.concurrency))))
