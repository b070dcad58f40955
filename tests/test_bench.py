"""The benchmark scripts run and print their figures (smoke test; timing goals are not tested here)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

from bench.pg_floor import floor


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


def test_pg_floor_measures_the_database_on_a_fresh_one(database_url):
    figures = asyncio.run(floor(database_url, 1.0, batch=32, cards=200))
    assert set(figures) == {"batch", "one_connection", "three_connections"}
    assert set(figures["one_connection"]["step_ms_p50"]) == {
        "idempotency_probe", "card_read", "authorization_rows", "ledger_holds"}
    for run in ("one_connection", "three_connections"):
        assert figures[run]["auths_per_s"] > 0
        # The test server runs on this machine: its own processes' CPU is counted.
        assert figures[run]["postgres_cores"] is not None and figures[run]["postgres_cores"] > 0
