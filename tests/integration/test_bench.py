"""The benchmark scripts run and print their figures (smoke test; timing goals are not tested here)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import asyncpg

from antaca_api.settings import engine_settings_from_env
from antaca_auth import fees
from antaca_auth.authorization import TxType
from antaca_auth.cardkeys import CardKeys
from antaca_auth.database import create_pool, with_database
from antaca_auth.engine import Batching, EngineSettings
from antaca_auth.ledger import Ledger
from antaca_auth.migrations import migrate
from antaca_auth.pans import generate_pan
from antaca_auth.pinblock import decipher_pin
from bench import auth_bench
from bench.cards import FEE_SCHEDULE, create_network, prepare_traffic, setup
from bench.pg_floor import floor
from bench.stats import CURVE_RUNS
from bench.traffic import (
    FOREIGN_CURRENCY_SHARE,
    INSUFFICIENT_FUNDS_SHARE,
    PIN,
    POS_WITH_PIN_SHARE,
    WRONG_CREDENTIALS_SHARE,
    Mix,
    Role,
    Traffic,
)


def test_ledger_bench_prints_every_scenario():
    env = {k: v for k, v in os.environ.items() if k != "ANTACA_DATABASE_URL"}  # its own durable cluster
    done = subprocess.run(
        [sys.executable, "-m", "bench.ledger_bench", "--seconds", "2.5"],
        env=env, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(figures) == {"single_hot", "batch100_hot", "batch1000_hot", "single_spread", "batch1000_spread"}
    for scenario in figures.values():
        assert set(scenario) == {"transfers_per_s", "p50_ms", "p99_ms"}
        assert scenario["transfers_per_s"] > 0
        assert 0 < scenario["p50_ms"] <= scenario["p99_ms"]


# --- bench.auth_bench: the realistic mix, the naive baseline, the curves, the floor ---------------
# Tiny runs on the test server: they check what the benches do and print, never how fast.

KNOWN_REASONS = {"INSUFFICIENT_FUNDS", "WRONG_CVC2", "WRONG_PIN", "SUSPECTED_CARD_TESTING",
                 "PIN_TRIES_EXCEEDED", "CARD_LOCKED_SUSPECTED_FRAUD",
                 "CARD_LOCKED_PIN_TRIES_EXCEEDED", "ISSUER_UNAVAILABLE"}


def fresh_databases(pg_server: str, template_db: str):
    """A factory of fresh migrated databases on the test server, for auth_bench.main."""
    @contextlib.asynccontextmanager
    async def database() -> AsyncIterator[str]:
        name = f"antaca_test_{uuid.uuid4().hex[:16]}"
        admin = await asyncpg.connect(pg_server)
        try:
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
            yield with_database(pg_server, name)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()

    return database


def test_traffic_draws_the_mix_and_travels_as_json():
    cards = [{"pan": generate_pan("535522", 16), "expiry": "3012", "cvc2": "123"}
             for _ in range(1000)]
    traffic = Traffic.new(Mix.REALISTIC, cards)
    assert len(traffic.of_role(Role.POOR)) == 50 and len(traffic.of_role(Role.TESTED)) == 10
    role_of = {c["pan"]: c["role"] for c in cards}
    draws = [traffic.payment() for _ in range(20_000)]
    share = collections.Counter()
    for payment in draws:
        share[role_of[payment.pan]] += 1 / len(draws)
        share[payment.type] += 1 / len(draws)
        share[payment.currency] += 1 / len(draws)
    assert abs(share[Role.POOR] - INSUFFICIENT_FUNDS_SHARE) < 0.01
    assert abs(share[Role.TESTED] - WRONG_CREDENTIALS_SHARE) < 0.005
    assert abs(share[TxType.POS] - POS_WITH_PIN_SHARE) < 0.02
    assert abs(share["USD"] - FOREIGN_CURRENCY_SHARE) < 0.02
    again = Traffic.from_json(traffic.to_json())
    assert again.cards == cards and again.zone_key == traffic.zone_key
    pos = next(p for p in draws if p.type == TxType.POS and role_of[p.pan] == Role.FUNDED)
    assert decipher_pin(again.zone_key, bytes.fromhex(pos.pin_block), pos.pan) == PIN
    approve = Traffic.new(Mix.APPROVE, cards)
    approved = [approve.payment() for _ in range(100)]
    assert {(p.type, p.currency, p.cvc2) for p in approved} == {(TxType.ECOM, "EUR", "123")}


def test_realistic_mix_gets_each_kind_of_answer(database_url):
    async def scenario() -> None:
        pool = await create_pool(database_url, min_size=1, max_size=4)
        ledger, keys = Ledger(pool), CardKeys.generate()
        try:
            cards = await setup(pool, ledger, keys, 1, n_cards=200)
            traffic = await prepare_traffic(pool, ledger, keys, cards, Mix.REALISTIC)
            funded, poor = traffic.of_role(Role.FUNDED)[0], traffic.of_role(Role.POOR)[0]
            tested = traffic.of_role(Role.TESTED)
            async with auth_bench.running_engine(database_url, keys, EngineSettings()) as engine:
                async with engine.pool.acquire() as conn:
                    network = await create_network(conn, keys, traffic, "mix")

                async def answer(card, role, *, foreign=False, pos=False):
                    payment = traffic.payment_for(card, role, foreign=foreign, pos=pos)
                    return payment, await engine.authorize(network, payment)

                payment, pos = await answer(funded, Role.FUNDED, pos=True)
                fee = sum(fees.transaction_fees(FEE_SCHEDULE, "POS", payment.amount, False, {}))
                assert pos.reason == "APPROVED" and pos.fee == fee > 0
                payment, foreign = await answer(funded, Role.FUNDED, foreign=True)
                assert foreign.reason == "APPROVED" and foreign.billing_amount < payment.amount
                assert foreign.fee > 0  # 1 % e-commerce and 1 % conversion
                assert (await answer(poor, Role.POOR))[1].reason == "INSUFFICIENT_FUNDS"
                assert (await answer(tested[1], Role.TESTED, pos=True))[1].reason == "WRONG_PIN"
                reasons = [(await answer(tested[0], Role.TESTED))[1].reason for _ in range(6)]
                assert reasons == ["WRONG_CVC2"] * 4 + ["SUSPECTED_CARD_TESTING",
                                                        "CARD_LOCKED_SUSPECTED_FRAUD"]
        finally:
            await pool.close()

    asyncio.run(scenario())


def test_engine_settings_reach_the_server_through_its_environment():
    for settings in (*auth_bench.BATCHING_SETTINGS.values(), auth_bench.NAIVE_SETTINGS):
        assert engine_settings_from_env(auth_bench.engine_environment(settings)) == settings
    writers = auth_bench.engine_environment(auth_bench.BATCHING_SETTINGS[Batching.WRITERS])
    assert writers["ANTACA_AUTHORIZATION_BATCHING"] == "writers"


# The realistic mix declines ~6 % (5 % for funds, 1 % wrong credentials); a loaded machine may
# add stand-ins. Approvals below this share mean the bench measures declines, not payments.
APPROVED_SHARE_MIN = 0.75
SHARE_ROUNDING = 1e-3  # shares are printed to 4 decimals; a few of them are summed


def assert_plausible_answers(name: str, scenario: dict) -> None:
    """A scenario's figures are the shape of a real run: positive throughput, ordered
    percentiles, shares that add up, approvals dominant and each decline reason of the mix."""
    assert scenario["auths_per_s"] > 0, name
    assert 0 < scenario["p50_ms"] <= scenario["p95_ms"] <= scenario["p99_ms"], (name, scenario)
    assert abs(scenario["approved_share"] + scenario["declined_share"] - 1) < SHARE_ROUNDING
    assert scenario["approved_share"] >= APPROVED_SHARE_MIN, (name, scenario)
    assert abs(sum(scenario["declines"].values()) - scenario["declined_share"]) < SHARE_ROUNDING
    assert 0 <= scenario["stand_in_share"] <= scenario["declined_share"], (name, scenario)
    assert set(scenario["declines"]) <= KNOWN_REASONS, (name, scenario)
    # 5 % of the payments go to POOR cards: hundreds of payments see some, never most.
    assert 0 < scenario["declines"].get("INSUFFICIENT_FUNDS", 0) < 0.2, (name, scenario)


def test_auth_bench_reports_answers_curves_and_the_floor(pg_server, template_db):
    only = {"naive_hot", "engine_hot", "http_hot", "pg_floor"}
    # 9 s over the weights (9 in all): about 1 s of closed and open loop for each in-process
    # scenario, 0.5 s for http_hot's (bench.http_load, in its own process) and pg_floor, and 3 s
    # for each latency curve: long enough for hundreds of payments per scenario, so that the
    # shares below are measured, not drawn from a handful.
    figures = asyncio.run(auth_bench.main(9.0, only, auth_bench.Options(cards=300),
                                          database=fresh_databases(pg_server, template_db)))
    assert {"naive_hot", "engine_hot", "http_hot", "pg_floor_per_s", "latency_curve",
            "engine_vs_naive", "engine_vs_floor"} <= set(figures)
    assert figures["mix"] == "realistic" and figures["batching"] == "pipelined"
    for name in ("naive_hot", "engine_hot", "http_hot"):
        assert_plausible_answers(name, figures[name])
    assert set(figures["latency_curve"]) == {"engine_hot", "http_hot"}
    for name, curve in figures["latency_curve"].items():
        assert list(curve) == ["25", "50", "70", "90"]
        for point in curve.values():
            assert set(point) == {"offered_per_s", "p50_ms", "p99_ms", "stand_in_share",
                                  "p99_ms_runs"}
            assert len(point["p99_ms_runs"]) == CURVE_RUNS
            assert 0 < point["p50_ms"] <= point["p99_ms"], (name, point)
            assert 0 <= point["stand_in_share"] <= 1
        offered = [point["offered_per_s"] for point in curve.values()]
        assert 0 < offered[0] < offered[1] < offered[2] < offered[3], (name, offered)
        # The points are shares of the scenario's closed-loop throughput (25 % ... 90 %).
        assert abs(offered[3] / figures[name]["auths_per_s"] - 0.9) < 0.05, (name, offered)
    assert figures["pg_floor_per_s"] > 0
    # The ratios are the figures' own (rounded to one and two decimals).
    naive, engine = figures["naive_hot"]["auths_per_s"], figures["engine_hot"]["auths_per_s"]
    assert abs(figures["engine_vs_naive"] - engine / naive) <= 0.05 + 1e-9
    assert abs(figures["engine_vs_floor"] - engine / figures["pg_floor_per_s"]) <= 0.005 + 1e-9


def test_auth_bench_runs_the_writers_design_and_the_approve_mix(pg_server, template_db):
    options = auth_bench.Options(Mix.APPROVE, Batching.WRITERS, cards=200)
    figures = asyncio.run(auth_bench.main(1.0, {"engine_spread"}, options,
                                          database=fresh_databases(pg_server, template_db)))
    assert figures["batching"] == "writers" and figures["mix"] == "approve"
    assert set(figures["engine_spread"]["declines"]) <= {"ISSUER_UNAVAILABLE"}
    assert "latency_curve" not in figures


def test_pg_floor_measures_the_database_on_a_fresh_one(database_url):
    # 2 s: 1 s per run, some dozens of 32-payment batches each, so the medians are medians.
    figures = asyncio.run(floor(database_url, 2.0, batch=32, cards=200))
    assert set(figures) == {"batch", "holds_per_auth", "one_connection", "three_connections"}
    assert figures["holds_per_auth"] == 3  # the realistic mix holds a fee on every approval
    steps = figures["one_connection"]["step_ms_p50"]
    assert set(steps) == {"idempotency_probe", "card_read", "authorization_rows", "ledger_holds"}
    assert all(ms >= 0 for ms in steps.values()) and steps["ledger_holds"] > 0, steps
    # The steps' medians are parts of a batch's: what is left is the commit and the round trip.
    assert figures["one_connection"]["commit_and_round_trip_ms_p50"] >= -0.5, figures
    for run in ("one_connection", "three_connections"):
        assert figures[run]["auths_per_s"] > 0
        assert figures[run]["batch_ms_p50"] > 0 and figures[run]["postgres_cpu_us_per_auth"] > 0
        # The test server runs on this machine: its own processes' CPU is counted.
        assert figures[run]["postgres_cores"] is not None and figures[run]["postgres_cores"] > 0
        # A payment's row and three holds, with their index entries: more than a kilobyte of WAL.
        assert 1_000 < figures[run]["wal_bytes_per_auth"] < 20_000


def test_pg_floor_writes_what_the_engine_writes(database_url):
    """Each floor payment stores an approved row naming its three time-ordered holds, each one a
    pending transfer of the DEPOSIT chain, as an engine approval with a fee does."""
    asyncio.run(floor(database_url, 0.5, batch=16, cards=100, runs=("one_connection",)))

    async def check() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch(
                """SELECT a.answer_hold_id = a.fee_hold_id AS answer_is_fee,
                          d.code AS deposit, u.code AS user_hold, f.code AS fee,
                          d.debit_account_id = u.credit_account_id AS deposit_chain,
                          u.debit_account_id = f.debit_account_id AS same_user,
                          d.reference = a.message_id AS referenced
                   FROM authorizations a JOIN transfers d ON d.id = a.deposit_hold_id
                   JOIN transfers u ON u.id = a.user_hold_id JOIN transfers f ON f.id = a.fee_hold_id""")
            assert rows and await conn.fetchval("SELECT count(*) FROM authorizations") == len(rows)
            assert {tuple(r) for r in rows} == {(True, 10, 11, 23, True, True, True)}
            versions = await conn.fetch("SELECT DISTINCT substr(id::text, 15, 1) FROM transfers "
                                        "WHERE kind = 'pending'")
            assert [v[0] for v in versions] == ["7"]  # UUIDv7, as the engine's ids
        finally:
            await conn.close()

    asyncio.run(check())


def test_pg_floor_runs_on_an_earlier_schema(pg_server):
    """`--compare` measures the schema before a migration: the floor runs on it too."""
    name = f"antaca_test_{uuid.uuid4().hex[:16]}"

    async def run() -> dict:
        admin = await asyncpg.connect(pg_server)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
            dsn = with_database(pg_server, name)
            await migrate(dsn, until=15)
            conn = await asyncpg.connect(dsn)
            try:  # the two indexes migration 16 merges are there
                assert await conn.fetchval("SELECT count(*) FROM pg_indexes WHERE indexname IN "
                                           "('authorizations_card', 'authorizations_balance')") == 2
            finally:
                await conn.close()
            return await floor(dsn, 0.5, batch=16, cards=100, runs=("one_connection",),
                               fees=False)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()

    figures = asyncio.run(run())
    assert figures["holds_per_auth"] == 2 and figures["one_connection"]["auths_per_s"] > 0


def test_engine_hot_controls_reports_the_same_shape_and_declines_nothing_more(pg_server,
                                                                             template_db):
    """engine_hot_controls: engine_hot's traffic under CONTROLS_SET, none of which the traffic
    breaks (its MCC is not blocked, it names no country, the daily limit is never reached)."""
    only = {"engine_hot_controls"}
    figures = asyncio.run(auth_bench.main(3.0, only, auth_bench.Options(cards=300),
                                          database=fresh_databases(pg_server, template_db)))
    scenario = figures["engine_hot_controls"]
    assert set(scenario) == {"auths_per_s", "p50_ms", "p95_ms", "p99_ms", "approved_share",
                             "declined_share", "stand_in_share", "declines"}
    assert_plausible_answers("engine_hot_controls", scenario)
    assert not any(reason.startswith("CONTROL_") for reason in scenario["declines"])
