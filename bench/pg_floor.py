"""PostgreSQL alone: what the authorization engine's writes cost the database, with no Python per payment.

    python -m bench.pg_floor [--seconds N] [--batch 512]

Each batch is built and run inside PostgreSQL by one function call, doing what an engine batch does
in the database: the idempotency probe and the card read for every payment, the authorization rows,
then the ledger's set-based write of the deposit and user holds (`ledger_create_new_transfers`) and
the commit. Batches come from one connection (with a timing of each step), then from three at once.
The figures are a ceiling for the engine on this schema and server: Python only adds to them.
Durable PostgreSQL as in bench.auth_bench. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import time
import uuid

import uvloop

from antaca_auth.cardkeys import CardKeys
from antaca_auth.database import create_pool
from antaca_auth.settlement import settlement_account
from antaca_auth.ledger import Ledger
from bench.auth_bench import setup
from bench.database import bench_database
from bench.stats import CpuMeter, percentile

# One engine batch of `p_n` random cards' payments, run in the database; notices time each step when
# `floor.timing` is on.
BATCH_FUNCTION = """
CREATE FUNCTION floor_batch(p_n int, p_network uuid, p_settlement uuid) RETURNS bigint LANGUAGE plpgsql AS $f$
DECLARE
    t timestamptz := clock_timestamp();
    timing boolean := current_setting('floor.timing', true) = 'on';
    v_cards uuid[]; v_balances uuid[]; v_fingerprints text[]; v_messages text[];
    v_ids uuid[]; v_debits uuid[]; v_credits uuid[]; v_amounts bigint[]; n bigint;
BEGIN
    SELECT array_agg(c.id), array_agg(c.balance_id), array_agg(c.pan_fingerprint), array_agg(md5(random()::text))
      INTO v_cards, v_balances, v_fingerprints, v_messages
      FROM (SELECT 1 + floor(random() * (SELECT count(*) FROM cards))::int AS k FROM generate_series(1, p_n)) r
      JOIN (SELECT row_number() OVER () AS k, * FROM cards) c ON c.k = r.k;
    IF timing THEN RAISE NOTICE 'pick_cards %', 1000 * extract(epoch FROM clock_timestamp() - t); END IF;
    t := clock_timestamp();
    PERFORM count(*) FROM unnest(v_messages) m (message_id)
        CROSS JOIN LATERAL (SELECT 1 FROM authorizations a
                            WHERE a.network_id = p_network AND a.message_id = m.message_id LIMIT 1) x;
    IF timing THEN RAISE NOTICE 'idempotency_probe %', 1000 * extract(epoch FROM clock_timestamp() - t); END IF;
    t := clock_timestamp();
    PERFORM count(*) FROM cards c JOIN card_programs p ON p.id = c.program_id JOIN balances b ON b.id = c.balance_id
        LEFT JOIN partner_accounts pa
               ON pa.partner_id = c.partner_id AND pa.currency = p.currency AND pa.kind = 'partner_deposit'
        WHERE c.pan_fingerprint = ANY (v_fingerprints);
    IF timing THEN RAISE NOTICE 'card_read %', 1000 * extract(epoch FROM clock_timestamp() - t); END IF;
    t := clock_timestamp();
    INSERT INTO authorizations (id, network_id, message_id, card_id, balance_id, type, amount, currency, mcc,
        merchant_name, decision, response_code, reason, approved_amount, created_at, billing_amount,
        deposit_hold_id, user_hold_id, answer_hold_id)
    SELECT gen_random_uuid(), p_network, m, c, b, 'ECOM', 1000, 'EUR', '5411', 'bench', 'APPROVED', '00',
           'APPROVED', 1000, now(), 1000, gen_random_uuid(), gen_random_uuid(), gen_random_uuid()
    FROM unnest(v_messages, v_cards, v_balances) AS u (m, c, b);
    IF timing THEN RAISE NOTICE 'authorization_rows %', 1000 * extract(epoch FROM clock_timestamp() - t); END IF;
    t := clock_timestamp();
    SELECT array_agg(x.id ORDER BY x.o), array_agg(x.dr ORDER BY x.o), array_agg(x.cr ORDER BY x.o),
           array_agg(x.a ORDER BY x.o)
      INTO v_ids, v_debits, v_credits, v_amounts
      FROM (SELECT gen_random_uuid() AS id, pa.account_id AS dr, p_settlement AS cr, 1000::bigint AS a, 2 * u.o AS o
            FROM unnest(v_balances) WITH ORDINALITY u (b, o), partner_accounts pa
            UNION ALL
            SELECT gen_random_uuid(), b.account_id, pa.account_id, 1000, 2 * u.o + 1
            FROM unnest(v_balances) WITH ORDINALITY u (b, o) JOIN balances b ON b.id = u.b, partner_accounts pa) x;
    SELECT count(*) INTO n FROM ledger_create_new_transfers(
        v_ids, v_debits, v_credits, v_amounts, array_fill(true, ARRAY[2 * p_n]), array_fill(10, ARRAY[2 * p_n]),
        array_fill(604800, ARRAY[2 * p_n]), array_fill('bench'::text, ARRAY[2 * p_n]),
        array_fill('EUR'::text, ARRAY[2 * p_n]), NULL);
    IF timing THEN RAISE NOTICE 'ledger_holds %', 1000 * extract(epoch FROM clock_timestamp() - t); END IF;
    RETURN n;
END $f$"""


async def run(pool, network: uuid.UUID, batch: int, seconds: float, connections: int, timing: bool) -> dict:
    notes: list[str] = []
    latencies: list[float] = []
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        async with pool.acquire() as conn:
            if timing:
                await conn.execute("SET floor.timing = 'on'")
                conn.add_log_listener(lambda _, message: notes.append(message.message))
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                async with conn.transaction():
                    written = await conn.fetchval("SELECT floor_batch($1, $2, $3)", batch, network,
                                                  settlement_account("EUR"))
                assert written == 2 * batch, written  # every hold written by the set-based path
                latencies.append(time.perf_counter() - start)
                done += batch
            if timing:
                await conn.execute("RESET floor.timing")

    with CpuMeter() as cpu:
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - start
    cpu.ops = done
    latencies.sort()
    figures = {"auths_per_s": round(done / elapsed, 1), "batch_ms_p50": round(1000 * percentile(latencies, 50), 1),
               "postgres_cpu_us_per_auth": cpu.per_op_us()["postgres_us"]}
    if timing:
        steps = collections.defaultdict(list)
        for note in notes:
            step, ms = note.split()
            steps[step].append(float(ms))
        figures["step_ms_p50"] = {step: round(percentile(sorted(v), 50), 1) for step, v in steps.items()}
        figures["commit_and_round_trip_ms_p50"] = round(
            figures["batch_ms_p50"] - sum(figures["step_ms_p50"].values()), 1)
    return figures


async def main(seconds: float, batch: int) -> dict:
    async with bench_database() as dsn:
        pool = await create_pool(dsn, min_size=3, max_size=5)
        try:
            await setup(pool, Ledger(pool), CardKeys.generate(), 1)
            network = uuid.uuid4()
            async with pool.acquire() as conn:
                await conn.execute("INSERT INTO networks (id, name) VALUES ($1, 'floor')", network)
                await conn.execute(BATCH_FUNCTION)
                await conn.execute("ANALYZE")
            figures = {"batch": batch}
            figures["one_connection"] = await run(pool, network, batch, seconds / 2, 1, timing=True)
            print("one_connection", json.dumps(figures["one_connection"]), flush=True)
            figures["three_connections"] = await run(pool, network, batch, seconds / 2, 3, timing=False)
            print("three_connections", json.dumps(figures["three_connections"]), flush=True)
            return figures
        finally:
            await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="total measuring time (default 30)")
    parser.add_argument("--batch", type=int, default=512, help="payments per batch (default 512)")
    args = parser.parse_args()
    print(json.dumps(uvloop.run(main(args.seconds, args.batch))))
