"""PostgreSQL alone: what the authorization engine's writes cost the database, without Python.

    python -m bench.pg_floor [--seconds N] [--batch 512]

Each batch is run inside PostgreSQL by one function call, doing what an engine batch does in the
database: the idempotency probe and the card read for every payment, the authorization rows, then
the ledger's set-based write of the deposit and user holds (`ledger_create_new_transfers`) and the
commit. The batches' cards are drawn before the clock starts (PREPARED_BATCHES random draws, used
in turn) and passed as arrays, as the engine passes its batch: the timed window holds the
database's work and the round trip only. PostgreSQL's CPU is that of this server's own processes
(bench.stats.postgres_cpu_seconds). Batches come from one connection (with a timing of each step),
then from three at once. The figures are a ceiling for the engine on this schema and server:
Python only adds to them. `floor(dsn, seconds)` runs them on a fresh database (bench.auth_bench's
`pg_floor` does). Durable PostgreSQL as in bench.auth_bench. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import random
import time
import uuid

import uvloop

from antaca_auth.cardkeys import CardKeys
from antaca_auth.database import create_pool
from antaca_auth.ledger import Ledger
from antaca_auth.settlement import settlement_account
from bench.cards import N_CARDS, setup
from bench.database import bench_database
from bench.stats import CpuMeter, percentile, postmaster_pid

PREPARED_BATCHES = 64  # random draws of a batch's cards, made before the clock starts
RUNS = {"one_connection": 1, "three_connections": 3}  # connections sending batches at once

# One engine batch of the given cards' payments, run in the database; notices time each step when
# `floor.timing` is on. Message ids are md5 hex (32 characters, as long as the engine's bench ids),
# unique through the caller's prefix.
BATCH_FUNCTION = """
CREATE FUNCTION floor_batch(p_cards uuid[], p_balances uuid[], p_fingerprints text[],
                            p_prefix text, p_network uuid, p_settlement uuid)
RETURNS bigint LANGUAGE plpgsql AS $f$
DECLARE
    t timestamptz := clock_timestamp();
    timing boolean := current_setting('floor.timing', true) = 'on';
    v_n int := cardinality(p_cards);
    v_messages text[] := ARRAY(SELECT md5(p_prefix || o) FROM generate_series(1, v_n) o);
    v_ids uuid[]; v_debits uuid[]; v_credits uuid[]; v_amounts bigint[]; n bigint;
BEGIN
    PERFORM count(*) FROM unnest(v_messages) m (message_id)
        CROSS JOIN LATERAL (SELECT 1 FROM authorizations a
                            WHERE a.network_id = p_network AND a.message_id = m.message_id
                            LIMIT 1) x;
    IF timing THEN
        RAISE NOTICE 'idempotency_probe %', 1000 * extract(epoch FROM clock_timestamp() - t);
    END IF;
    t := clock_timestamp();
    PERFORM count(*) FROM cards c JOIN card_programs p ON p.id = c.program_id
        JOIN balances b ON b.id = c.balance_id
        LEFT JOIN partner_accounts pa ON pa.partner_id = c.partner_id
                                     AND pa.currency = p.currency AND pa.kind = 'partner_deposit'
        WHERE c.pan_fingerprint = ANY (p_fingerprints);
    IF timing THEN
        RAISE NOTICE 'card_read %', 1000 * extract(epoch FROM clock_timestamp() - t);
    END IF;
    t := clock_timestamp();
    INSERT INTO authorizations (id, network_id, message_id, card_id, balance_id, type, amount,
        currency, mcc, merchant_name, decision, response_code, reason, approved_amount,
        created_at, billing_amount, deposit_hold_id, user_hold_id, answer_hold_id)
    SELECT gen_random_uuid(), p_network, m, c, b, 'ECOM', 1000, 'EUR', '5411', 'bench',
           'APPROVED', '00', 'APPROVED', 1000, now(), 1000, gen_random_uuid(),
           gen_random_uuid(), gen_random_uuid()
    FROM unnest(v_messages, p_cards, p_balances) AS u (m, c, b);
    IF timing THEN
        RAISE NOTICE 'authorization_rows %', 1000 * extract(epoch FROM clock_timestamp() - t);
    END IF;
    t := clock_timestamp();
    SELECT array_agg(x.id ORDER BY x.o), array_agg(x.dr ORDER BY x.o),
           array_agg(x.cr ORDER BY x.o), array_agg(x.a ORDER BY x.o)
      INTO v_ids, v_debits, v_credits, v_amounts
      FROM (SELECT gen_random_uuid() AS id, pa.account_id AS dr, p_settlement AS cr,
                   1000::bigint AS a, 2 * u.o AS o
            FROM unnest(p_balances) WITH ORDINALITY u (b, o), partner_accounts pa
            UNION ALL
            SELECT gen_random_uuid(), b.account_id, pa.account_id, 1000, 2 * u.o + 1
            FROM unnest(p_balances) WITH ORDINALITY u (b, o) JOIN balances b ON b.id = u.b,
                 partner_accounts pa) x;
    SELECT count(*) INTO n FROM ledger_create_new_transfers(
        v_ids, v_debits, v_credits, v_amounts, array_fill(true, ARRAY[2 * v_n]),
        array_fill(10, ARRAY[2 * v_n]), array_fill(604800, ARRAY[2 * v_n]),
        array_fill('bench'::text, ARRAY[2 * v_n]), array_fill('EUR'::text, ARRAY[2 * v_n]), NULL);
    IF timing THEN
        RAISE NOTICE 'ledger_holds %', 1000 * extract(epoch FROM clock_timestamp() - t);
    END IF;
    RETURN n;
END $f$"""

Batch = tuple[list[uuid.UUID], list[uuid.UUID], list[str]]  # cards, their balances, fingerprints


async def prepared_batches(conn, size: int) -> list[Batch]:
    """PREPARED_BATCHES random draws (with replacement, as payments arrive) of `size` cards."""
    cards = await conn.fetch("SELECT id, balance_id, pan_fingerprint FROM cards")
    batches = []
    for _ in range(PREPARED_BATCHES):
        drawn = random.choices(cards, k=size)
        batches.append(([c["id"] for c in drawn], [c["balance_id"] for c in drawn],
                        [c["pan_fingerprint"] for c in drawn]))
    return batches


async def run(pool, network: uuid.UUID, batches: list[Batch], seconds: float, connections: int,
              timing: bool, server: int | None, calls: itertools.count) -> dict:
    """Batches from `connections` connections at once for `seconds`."""
    notes: list[str] = []
    latencies: list[float] = []
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done

        def note(_, message) -> None:
            notes.append(message.message)

        async with pool.acquire() as conn:
            if timing:
                await conn.execute("SET floor.timing = 'on'")
                conn.add_log_listener(note)
            while time.perf_counter() < deadline:
                call = next(calls)
                cards, balances, fingerprints = batches[call % len(batches)]
                start = time.perf_counter()
                async with conn.transaction():
                    written = await conn.fetchval(
                        "SELECT floor_batch($1, $2, $3, $4, $5, $6)", cards, balances,
                        fingerprints, f"{call}.", network, settlement_account("EUR"))
                assert written == 2 * len(cards), written  # every hold by the set-based path
                latencies.append(time.perf_counter() - start)
                done += len(cards)
            if timing:
                await conn.execute("RESET floor.timing")
                conn.remove_log_listener(note)

    with CpuMeter(server) as cpu:
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - start
    cpu.ops = done
    latencies.sort()
    figures = {"auths_per_s": round(done / elapsed, 1),
               "batch_ms_p50": round(1000 * percentile(latencies, 50), 1),
               "postgres_cpu_us_per_auth": cpu.per_op_us()["postgres_us"],
               "postgres_cores": None if cpu.pg_s is None else round(cpu.pg_s / elapsed, 2)}
    if timing:
        steps = collections.defaultdict(list)
        for note in notes:
            step, ms = note.split()
            steps[step].append(float(ms))
        figures["step_ms_p50"] = {step: round(percentile(sorted(v), 50), 1)
                                  for step, v in steps.items()}
        figures["commit_and_round_trip_ms_p50"] = round(
            figures["batch_ms_p50"] - sum(figures["step_ms_p50"].values()), 1)
    return figures


async def floor(dsn: str, seconds: float, batch: int = 512, runs: tuple[str, ...] = tuple(RUNS),
                cards: int = N_CARDS) -> dict:
    """On a fresh database (`dsn`): the hot program's cards (bench.cards.setup), then each of `runs`
    (RUNS: one connection, timed step by step; three connections) for an equal part of `seconds`."""
    pool = await create_pool(dsn, min_size=max(RUNS[r] for r in runs), max_size=5)
    try:
        await setup(pool, Ledger(pool), CardKeys.generate(), 1, cards)
        network = uuid.uuid4()
        async with pool.acquire() as conn:
            await conn.execute("INSERT INTO networks (id, name) VALUES ($1, 'floor')", network)
            await conn.execute(BATCH_FUNCTION)
            await conn.execute("ANALYZE")
            batches = await prepared_batches(conn, batch)
            server = await postmaster_pid(conn)
        figures: dict = {"batch": batch}
        calls = itertools.count()  # message ids stay unique across the runs
        for name in runs:
            figures[name] = await run(pool, network, batches, seconds / len(runs), RUNS[name],
                                      timing=RUNS[name] == 1, server=server, calls=calls)
            print(name, json.dumps(figures[name]), flush=True)
        return figures
    finally:
        await pool.close()


async def main(seconds: float, batch: int) -> dict:
    async with bench_database() as dsn:
        return await floor(dsn, seconds, batch)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="total measuring time (default 30)")
    parser.add_argument("--batch", type=int, default=512, help="payments per batch (default 512)")
    args = parser.parse_args()
    print(json.dumps(uvloop.run(main(args.seconds, args.batch))))
