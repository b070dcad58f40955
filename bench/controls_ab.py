"""engine_hot against engine_hot_controls, interleaved: the controls' cost on the hot path.

    python -m bench.controls_ab [--seconds 8] [--rounds 6] [--cards 10000]

One database, one set of cards and traffic (bench.auth_bench's engine_hot), then `rounds` pairs
of short runs (closed then open loop, `seconds` each run) alternating the order (plain first,
then controls first...), so that a machine shared with other work drifts alike for both. Prints
each run's figures and, last, one JSON object: the throughputs of each and the mean ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics

import uvloop

from antaca_auth.cardkeys import CardKeys
from antaca_auth.database import create_pool
from antaca_auth.ledger import Ledger
from bench import auth_bench
from bench.cards import N_CARDS, prepare_traffic, setup
from bench.database import bench_database
from bench.traffic import Mix


async def main(seconds: float, rounds: int, n_cards: int) -> dict:
    keys = CardKeys.generate()
    runs: dict[str, list[float]] = {"engine_hot": [], "engine_hot_controls": []}
    async with bench_database() as dsn:
        pool = await create_pool(dsn, min_size=4, max_size=32)
        try:
            ledger = Ledger(pool)
            cards = await setup(pool, ledger, keys, 1, n_cards)
            traffic = await prepare_traffic(pool, ledger, keys, cards, Mix.REALISTIC)
            settings = auth_bench.BATCHING_SETTINGS[auth_bench.Batching.PIPELINED]
            for number in range(rounds):
                order = list(runs) if number % 2 == 0 else list(reversed(runs))
                for name in order:
                    run = f"{name}-{number}"  # each run's network is named after it
                    if name == "engine_hot_controls":
                        async with auth_bench.spending_controls(pool, cards[0]):
                            figures = await auth_bench.in_process(
                                dsn, keys, traffic, run, settings, auth_bench.CALLERS, seconds)
                    else:
                        figures = await auth_bench.in_process(
                            dsn, keys, traffic, run, settings, auth_bench.CALLERS, seconds)
                    runs[name].append(figures["auths_per_s"])
        finally:
            await pool.close()
    plain, controls = (statistics.mean(runs[name]) for name in runs)
    return {**runs, "controls_vs_plain": round(controls / plain, 3)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--cards", type=int, default=N_CARDS)
    args = parser.parse_args()
    print(json.dumps(uvloop.run(main(args.seconds, args.rounds, args.cards))))
