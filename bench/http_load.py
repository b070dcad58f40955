"""The HTTP load client for bench.auth_bench, run as its own process so the server's CPU is its own.

    python -m bench.http_load URL CERT KEY CA CARDS_JSON SECONDS

Closed loop for throughput, then open loop at 80% of it for latency (queueing is not hidden).
Prints one JSON object: {"auths_per_s", "p50_ms", "p95_ms", "p99_ms"}.
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import sys
import time
import uuid

import aiohttp
import uvloop

from bench.stats import summary

CONNECTIONS = 64


def body(card: dict) -> dict:
    return {"messageId": uuid.uuid4().hex, "pan": card["pan"], "expiry": card["expiry"],
            "amount": random.randint(100, 5000), "currency": "EUR", "type": "ECOM", "cvc2": card["cvc2"]}


async def main(url: str, cert: str, key: str, ca: str, cards_file: str, seconds: float) -> dict:
    cards = json.loads(open(cards_file).read())
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(cert, key)
    connector = aiohttp.TCPConnector(ssl=context, limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> float:
            start = time.perf_counter()
            async with session.post(url, json=body(random.choice(cards))) as r:
                answer = await r.json()
                assert r.status == 200 and answer["decision"] == "APPROVED", answer
            return time.perf_counter() - start

        # closed loop: throughput
        done = 0
        deadline = time.perf_counter() + seconds / 2

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await one()
                done += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
        rate = done / (time.perf_counter() - start)

        # open loop at 80% of that rate: requests start on schedule, whether or not earlier ones finished
        target = max(1.0, rate * 0.8)
        latencies: list[float] = []
        tasks = []
        begin = time.perf_counter()
        n = int(target * seconds / 2)
        for i in range(n):
            delay = begin + i / target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            scheduled = begin + i / target

            async def timed(scheduled: float = scheduled) -> None:
                await one()
                latencies.append(time.perf_counter() - scheduled)

            tasks.append(asyncio.create_task(timed()))
        await asyncio.gather(*tasks)
        figures = summary(done, seconds / 2, latencies, "auths_per_s", pcts=(50, 95, 99))
        figures["auths_per_s"] = round(rate, 1)
        return figures


if __name__ == "__main__":
    url, cert, key, ca, cards_file, seconds = sys.argv[1:7]
    print(json.dumps(uvloop.run(main(url, cert, key, ca, cards_file, float(seconds)))))
