"""The benchmark scripts run and print their figures (smoke test; timing goals are not tested here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys


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
