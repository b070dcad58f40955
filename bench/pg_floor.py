"""PostgreSQL alone: what the authorization engine's writes cost the database, without Python.

    python -m bench.pg_floor [--seconds N] [--batch 512] [--compare MIGRATION [--rounds 3]]

Each batch is run inside PostgreSQL by one function call, doing what an engine batch does in the
database: the idempotency probe and the card read for every payment, the authorization rows, then
the ledger's set-based write of the holds (`ledger_create_new_transfers`: the deposit's, the user's
and the fee's, as the realistic mix; `fees=False` leaves the fee out, as the approve mix) and the
commit. The batches' cards are drawn before the clock starts (PREPARED_BATCHES random draws, used
in turn) and passed as arrays, as the engine passes its batch: the timed window holds the
database's work and the round trip only. PostgreSQL's CPU is that of this server's own processes
(bench.stats.postgres_cpu_seconds); the WAL written per payment is read off the server's insert
position (deterministic, unlike the rates, on a shared machine). Batches come from one connection
(with a timing of each step), then from three at once. The figures are a ceiling for the engine on
this schema and server: Python only adds to them. `floor(dsn, seconds)` runs them on a fresh
database (bench.auth_bench's `pg_floor` does). `--compare N` runs the three-connection floor in
turns on the schema of migrations up to N and on today's, to measure a schema change. Durable
PostgreSQL as in bench.auth_bench. The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import itertools
import json
import random
import statistics
import time
import uuid

import uvloop

from antaca_auth.cardkeys import CardKeys
from antaca_auth.charges import ensure_revenue_account
from antaca_auth.database import create_pool
from antaca_auth.ledger import Ledger
from antaca_auth.settlement import settlement_account
from bench.cards import N_CARDS, setup
from bench.database import bench_database
from bench.stats import CpuMeter, percentile, postmaster_pid

BATCH_CALL = "SELECT floor_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
WAL_POSITION = "SELECT pg_current_wal_insert_lsn()"
WAL_BYTES_SINCE = "SELECT pg_current_wal_insert_lsn() - $1::pg_lsn"
PREPARED_BATCHES = 64  # random draws of a batch's cards, made before the clock starts
RUNS = {"one_connection": 1, "three_connections": 3}  # connections sending batches at once

# One engine batch of the given cards' payments, run in the database; notices time each step when
# `floor.timing` is on. The holds' accounts, amounts and codes come as arrays, worked out before the
# clock starts as the engine works them out in Python. As the engine: ids are time-ordered (UUIDv7, made here rather than in Python:
# a few microseconds of the floor's CPU a payment), each payment's row carries what the engine's
# does (its request digest, fees, hold ids), and its holds are the DEPOSIT model's chain in the
# engine's order: the deposit's charge, the user's hold and, with `p_legs` 3 (the realistic mix
# prices every approval), the fee's hold. Message ids are md5 hex (32 characters, as
# long as the engine's bench ids), unique through the caller's prefix.
BATCH_FUNCTION = """
CREATE FUNCTION floor_uuid7() RETURNS uuid LANGUAGE sql VOLATILE AS $u$
    SELECT encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) PLACING
        substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
        FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid $u$;

CREATE FUNCTION floor_batch(p_cards uuid[], p_balances uuid[], p_fingerprints text[],
                            p_prefix text, p_network uuid, p_legs int, p_debits uuid[],
                            p_credits uuid[], p_amounts bigint[], p_codes int[])
RETURNS bigint LANGUAGE plpgsql AS $f$
DECLARE
    t timestamptz := clock_timestamp();
    timing boolean := current_setting('floor.timing', true) = 'on';
    v_n int := cardinality(p_cards);
    v_legs int := p_legs;
    v_messages text[] := ARRAY(SELECT md5(p_prefix || o) FROM generate_series(1, v_n) o);
    v_holds uuid[] := ARRAY(SELECT floor_uuid7() FROM generate_series(1, v_legs * v_n));
    n bigint;
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
        currency, mcc, merchant_id, merchant_name, merchant_country, terminal_id, decision,
        response_code, reason, approved_amount, deposit_hold_id, user_hold_id, created_at,
        billing_amount, transaction_fee, fee_hold_id, answer_hold_id, request_digest)
    SELECT floor_uuid7(), p_network, m, c, b, 'ECOM', 1000, 'EUR', '5411', 'merchant-1', 'bench',
           'FR', 'terminal-1', 'APPROVED', '00', 'APPROVED', 1000, v_holds[v_legs * (o - 1) + 1],
           v_holds[v_legs * (o - 1) + 2], now(), 1000, CASE WHEN v_legs = 3 THEN 10 ELSE 0 END,
           CASE WHEN v_legs = 3 THEN v_holds[3 * o] END, v_holds[v_legs * o],
           '\\x00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff'::bytea
    FROM unnest(v_messages, p_cards, p_balances) WITH ORDINALITY AS u (m, c, b, o);
    IF timing THEN
        RAISE NOTICE 'authorization_rows %', 1000 * extract(epoch FROM clock_timestamp() - t);
    END IF;
    t := clock_timestamp();
    SELECT count(*) INTO n FROM ledger_create_new_transfers(
        v_holds, p_debits, p_credits, p_amounts, array_fill(true, ARRAY[v_legs * v_n]),
        p_codes, array_fill(604800, ARRAY[v_legs * v_n]),
        ARRAY(SELECT v_messages[(i - 1) / v_legs + 1] FROM generate_series(1, v_legs * v_n) i),
        array_fill('EUR'::text, ARRAY[v_legs * v_n]), NULL);
    IF timing THEN
        RAISE NOTICE 'ledger_holds %', 1000 * extract(epoch FROM clock_timestamp() - t);
    END IF;
    RETURN n;
END $f$"""

@dataclasses.dataclass(frozen=True)
class Batch:
    """A batch's cards and the columns of its holds, in the engine's order."""
    cards: list[uuid.UUID]
    balances: list[uuid.UUID]
    fingerprints: list[str]
    debits: list[uuid.UUID]
    credits: list[uuid.UUID]
    amounts: list[int]
    codes: list[int]


CARDS = """
    SELECT c.id, c.balance_id, c.pan_fingerprint, b.account_id, pa.account_id AS deposit
    FROM cards c JOIN balances b ON b.id = c.balance_id
    JOIN partner_accounts pa ON pa.partner_id = c.partner_id AND pa.kind = 'partner_deposit'"""

PAYMENT_MINOR_UNITS, FEE_MINOR_UNITS = 1000, 10


async def prepared_batches(conn, size: int, fee_account: uuid.UUID | None) -> list[Batch]:
    """PREPARED_BATCHES random draws (with replacement, as payments arrive) of `size` cards."""
    cards = await conn.fetch(CARDS)
    settlement = settlement_account("EUR")
    batches = []
    for _ in range(PREPARED_BATCHES):
        drawn = random.choices(cards, k=size)
        legs: list[tuple[uuid.UUID, uuid.UUID, int, int]] = []
        for card in drawn:  # TransferCode 10, 11 and 23: the deposit's, the user's, the fee's
            legs.append((card["deposit"], settlement, PAYMENT_MINOR_UNITS, 10))
            legs.append((card["account_id"], card["deposit"], PAYMENT_MINOR_UNITS, 11))
            if fee_account is not None:
                legs.append((card["account_id"], fee_account, FEE_MINOR_UNITS, 23))
        debits, credits, amounts, codes = (list(column) for column in zip(*legs, strict=True))
        batches.append(Batch([c["id"] for c in drawn], [c["balance_id"] for c in drawn],
                             [c["pan_fingerprint"] for c in drawn], debits, credits, amounts,
                             codes))
    return batches


@dataclasses.dataclass(frozen=True)
class World:
    """What every batch of a floor run needs, made before the clock starts."""
    network: uuid.UUID
    fee_account: uuid.UUID | None  # None: no fee hold (the approve mix)
    batches: list[Batch]
    server: int | None  # the postmaster's pid, for its CPU


async def run(pool, world: World, seconds: float, connections: int, timing: bool,
              calls: itertools.count) -> dict:
    """Batches from `connections` connections at once for `seconds`."""
    notes: list[str] = []
    latencies: list[float] = []
    done = 0
    deadline = time.perf_counter() + seconds
    legs = 2 if world.fee_account is None else 3

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
                batch = world.batches[call % len(world.batches)]
                start = time.perf_counter()
                async with conn.transaction():
                    written = await conn.fetchval(
                        BATCH_CALL, batch.cards, batch.balances, batch.fingerprints, f"{call}.",
                        world.network, legs, batch.debits, batch.credits, batch.amounts,
                        batch.codes)
                # every hold by the set-based path
                assert written == legs * len(batch.cards), written
                latencies.append(time.perf_counter() - start)
                done += len(batch.cards)
            if timing:
                await conn.execute("RESET floor.timing")
                conn.remove_log_listener(note)

    async with pool.acquire() as conn:
        wal_before = await conn.fetchval(WAL_POSITION)
    with CpuMeter(world.server) as cpu:
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - start
    async with pool.acquire() as conn:
        wal_bytes = await conn.fetchval(WAL_BYTES_SINCE, wal_before)
    cpu.ops = done
    latencies.sort()
    figures = {"auths_per_s": round(done / elapsed, 1),
               "batch_ms_p50": round(1000 * percentile(latencies, 50), 1),
               "postgres_cpu_us_per_auth": cpu.per_op_us()["postgres_us"],
               "postgres_cores": None if cpu.pg_s is None else round(cpu.pg_s / elapsed, 2),
               "wal_bytes_per_auth": round(float(wal_bytes) / max(done, 1))}
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


async def prepare(pool, batch: int, cards: int, fees: bool) -> World:
    """The hot program's cards (bench.cards.setup), the network, the batch function, the draws."""
    ledger = Ledger(pool)
    await setup(pool, ledger, CardKeys.generate(), 1, cards)
    network = uuid.uuid4()
    async with pool.acquire() as conn:
        fee_account = None
        if fees:
            program = await conn.fetchval("SELECT id FROM card_programs")
            fee_account = await ensure_revenue_account(ledger, conn, program, "EUR")
        await conn.execute("INSERT INTO networks (id, name) VALUES ($1, 'floor')", network)
        await conn.execute(BATCH_FUNCTION)
        await conn.execute("ANALYZE")
        return World(network, fee_account, await prepared_batches(conn, batch, fee_account),
                     await postmaster_pid(conn))


async def floor(dsn: str, seconds: float, batch: int = 512, runs: tuple[str, ...] = tuple(RUNS),
                cards: int = N_CARDS, fees: bool = True) -> dict:
    """On a fresh database (`dsn`): the hot program's cards, then each of `runs` (RUNS: one
    connection, timed step by step; three connections) for an equal part of `seconds`. `fees`:
    every payment's fee held too, as in the realistic mix."""
    pool = await create_pool(dsn, min_size=max(RUNS[r] for r in runs), max_size=5)
    try:
        world = await prepare(pool, batch, cards, fees)
        figures: dict = {"batch": batch, "holds_per_auth": 3 if fees else 2}
        calls = itertools.count()  # message ids stay unique across the runs
        for name in runs:
            figures[name] = await run(pool, world, seconds / len(runs), RUNS[name],
                                      timing=RUNS[name] == 1, calls=calls)
            print(name, json.dumps(figures[name]), flush=True)
        return figures
    finally:
        await pool.close()


async def compare(seconds: float, batch: int, before: int, rounds: int) -> dict:
    """The floor on the schema of migrations up to `before` and on today's, in turns on one server
    (`rounds` of each, fresh databases), three connections: the median of each and their ratio."""
    figures: dict[str, list[dict]] = {"before": [], "after": []}
    for _ in range(rounds):
        for schema, until in (("before", before), ("after", None)):
            async with bench_database(until=until) as dsn:
                run_figures = await floor(dsn, seconds / (2 * rounds), batch,
                                          runs=("three_connections",))
            figures[schema].append(run_figures["three_connections"])
    medians = {schema: {key: statistics.median(r[key] for r in runs)
                        for key in ("auths_per_s", "postgres_cpu_us_per_auth",
                                    "wal_bytes_per_auth")}
               for schema, runs in figures.items()}
    return {"before_migration": before, "runs": figures, "median": medians,
            "after_vs_before": {key: round(medians["after"][key] / medians["before"][key], 3)
                                for key in medians["after"]}}


async def main(seconds: float, batch: int, compare_with: int | None, rounds: int) -> dict:
    if compare_with is not None:
        return await compare(seconds, batch, compare_with, rounds)
    async with bench_database() as dsn:
        return await floor(dsn, seconds, batch)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="total measuring time (default 30)")
    parser.add_argument("--batch", type=int, default=512, help="payments per batch (default 512)")
    parser.add_argument("--compare", type=int, default=None, metavar="MIGRATION",
                        help="also run on the schema of migrations up to this number, in turns")
    parser.add_argument("--rounds", type=int, default=3, help="turns of each schema (--compare)")
    args = parser.parse_args()
    print(json.dumps(uvloop.run(main(args.seconds, args.batch, args.compare, args.rounds))))
