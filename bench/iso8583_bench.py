"""ISO 8583 authorization throughput and latency against `antaca serve`, beside HTTP's.

    python -m bench.iso8583_bench [--seconds N] [--mix realistic|approve] [--cards N]

`antaca serve` runs in a child process (bench.auth_bench.serving) and bench.iso8583_load loads its
ISO 8583 listener from another: 8 TLS connections, requests pipelined. `iso_hot`: every card in one
program (one hot partner deposit); `iso_spread`: N_PROGRAMS programs. Each: a closed loop for
throughput, then an open loop at 70 % of it for latency. `http_hot` (bench.http_load, same
server, same database, just before) gives the comparison. The last line is JSON:
{"iso_hot": {"auths_per_s", "p50_ms", "p99_ms", ...}, "iso_spread": {...}, "http_hot": {...},
"iso_vs_http_hot": iso_hot's throughput over http_hot's}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Callable

import uvloop

from antaca_auth.cardkeys import CardKeys
from antaca_auth.database import create_pool
from antaca_auth.engine import Batching
from antaca_auth.ledger import Ledger
from bench.auth_bench import BATCHING_SETTINGS, N_PROGRAMS, Served, serving
from bench.cards import N_CARDS, prepare_traffic, setup
from bench.database import bench_database
from bench.traffic import Mix

# Shares of the measuring time: http_hot is only the yardstick.
WEIGHTS = {"http_hot": 1.0, "iso_hot": 1.0, "iso_spread": 1.0}


async def iso_load(served: Served, seconds: float) -> dict:
    work = served.work
    client = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.iso8583_load", str(served.iso8583_port), str(work / "net.crt"),
        str(work / "net.key"), str(served.ca_path), str(work / "traffic.json"), str(seconds),
        stdout=asyncio.subprocess.PIPE)
    out, _ = await client.communicate()
    return json.loads(out.decode().strip().splitlines()[-1])


async def scenario_group(dsn: str, keys: CardKeys, programs: int, names: list[str],
                         share: float, mix: Mix, cards: int) -> dict:
    pool = await create_pool(dsn, min_size=2, max_size=8)
    try:
        ledger = Ledger(pool)
        made = await setup(pool, ledger, keys, programs, cards)
        traffic = await prepare_traffic(pool, ledger, keys, made, mix)
        figures = {}
        settings = BATCHING_SETTINGS[Batching.PIPELINED]
        async with serving(dsn, pool, keys, traffic, settings) as served:
            for name in names:
                seconds = share * WEIGHTS[name]
                if name.startswith("http_"):
                    figures[name] = await served.load(seconds)
                else:
                    figures[name] = await iso_load(served, seconds)
                print(name, json.dumps(figures[name]), flush=True)
        return figures
    finally:
        await pool.close()


async def main(seconds: float, mix: Mix = Mix.REALISTIC, cards: int = N_CARDS,
               database: Callable[[], contextlib.AbstractAsyncContextManager[str]] = bench_database
               ) -> dict:
    keys = CardKeys.generate()
    share = seconds / sum(WEIGHTS.values())
    figures: dict = {}
    for programs, names in ((1, ["http_hot", "iso_hot"]), (N_PROGRAMS, ["iso_spread"])):
        async with database() as dsn:
            figures.update(await scenario_group(dsn, keys, programs, names, share, mix, cards))
    figures["iso_vs_http_hot"] = round(figures["iso_hot"]["auths_per_s"]
                                       / max(figures["http_hot"]["auths_per_s"], 0.1), 2)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="total measuring time")
    parser.add_argument("--mix", choices=list(Mix), default=Mix.REALISTIC)
    parser.add_argument("--cards", type=int, default=N_CARDS)
    args = parser.parse_args()
    print(json.dumps(uvloop.run(main(args.seconds, Mix(args.mix), args.cards))))
