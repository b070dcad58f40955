"""The HTTP load client for bench.auth_bench, run as its own process so the server's CPU is its own.

    python -m bench.http_load URL CERT KEY CA CARDS_JSON SECONDS

Closed loop for throughput, then open loop at 80% of it for latency (queueing is not hidden).
Prints one JSON object: {"auths_per_s", "p50_ms", "p95_ms", "p99_ms"}.
"""

from __future__ import annotations

import json
import random
import ssl
import sys
import uuid

import aiohttp
import uvloop

from bench.stats import closed_then_open

CONNECTIONS = 256


def body(card: dict) -> dict:
    return {"messageId": uuid.uuid4().hex, "pan": card["pan"], "expiry": card["expiry"],
            "amount": random.randint(100, 5000), "currency": "EUR", "type": "ECOM", "cvc2": card["cvc2"]}


async def main(url: str, cert: str, key: str, ca: str, cards_file: str, seconds: float) -> dict:
    cards = json.loads(open(cards_file).read())
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(cert, key)
    connector = aiohttp.TCPConnector(ssl=context, limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            async with session.post(url, json=body(random.choice(cards))) as r:
                answer = await r.json()
                assert r.status == 200 and answer["decision"] == "APPROVED", answer

        return await closed_then_open(one, seconds, CONNECTIONS)


if __name__ == "__main__":
    url, cert, key, ca, cards_file, seconds = sys.argv[1:7]
    print(json.dumps(uvloop.run(main(url, cert, key, ca, cards_file, float(seconds)))))
