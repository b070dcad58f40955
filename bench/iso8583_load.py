"""The ISO 8583 load client for bench.iso8583_bench, in its own process like bench.http_load.

    python -m bench.iso8583_load PORT CERT KEY CA TRAFFIC_JSON SECONDS

CONNECTIONS connections over mutual TLS (the network's certificate), requests pipelined on each
(answers matched by STAN and RRN, tests/iso8583_client.py). Closed loop for half of SECONDS with
CALLERS callers (throughput), then an open loop at OPEN_LOOP_SHARE of that rate for the other half
(latency). Prints one JSON object: {"auths_per_s", "p50_ms", "p95_ms", "p99_ms", and the answers'
shares}; a decline counts by its DE39 ("DE39 51"), a 91 as a stand-in.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import ssl
import time

import uvloop

from bench.stats import Outcome, answer_shares, closed_loop, freeze_heap, open_loop, summary
from bench.traffic import Traffic
from tests.iso8583_client import NetworkClient, transmission_time

CONNECTIONS = 8
CALLERS = 1024  # payments in flight over the connections in the closed loop
OPEN_LOOP_SHARE = 0.7
CURRENCY_NUMERIC = {"EUR": "978", "USD": "840"}
ACQUIRER_BASE = 1_000_000  # each connection its own acquirer id: message identities never clash
STAN_MODULUS = 1_000_000


def fields_of(payment, acquirer: str, stan: int, rrn: int) -> dict:
    """The ISO 8583 fields of a bench.traffic payment."""
    fields = {2: payment.pan, 3: "000000", 4: str(payment.amount).zfill(12),
              7: transmission_time(), 11: str(stan % STAN_MODULUS).zfill(6), 14: payment.expiry,
              18: payment.mcc, 22: "051", 32: acquirer, 37: str(rrn).zfill(12),
              49: CURRENCY_NUMERIC[payment.currency]}
    if payment.pin_block is not None:
        fields[52] = bytes.fromhex(payment.pin_block)
    else:
        fields[22] = "810"  # e-commerce
    if payment.cvc2 is not None:
        fields[48] = "92" + str(len(payment.cvc2)).zfill(2) + payment.cvc2
    return fields


async def main(port: int, cert: str, key: str, ca: str, traffic_file: str, seconds: float) -> dict:
    traffic = Traffic.from_json(open(traffic_file).read())
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(cert, key)
    clients = [await NetworkClient().connect(port, context) for _ in range(CONNECTIONS)]
    acquirers = [str(ACQUIRER_BASE + index) for index in range(CONNECTIONS)]
    numbers = itertools.count(1)
    freeze_heap()

    async def one() -> Outcome:
        number = next(numbers)
        index = number % CONNECTIONS
        _, answer = await clients[index].send(
            "0100", fields_of(traffic.payment(), acquirers[index], number, number))
        code = answer[39]
        return Outcome("APPROVED" if code == "00" else f"DE39 {code}", code == "91")

    try:
        counts: collections.Counter = collections.Counter()
        rate = await closed_loop(one, seconds / 2, CALLERS, counts)
        started = time.perf_counter()
        latencies = await open_loop(one, rate * OPEN_LOOP_SHARE, seconds / 2, counts)
        figures = summary(len(latencies), time.perf_counter() - started, latencies,
                          "open_loop_per_s", pcts=(50, 95, 99))
        return {"auths_per_s": round(rate, 1), **figures, **answer_shares(counts)}
    finally:
        for client in clients:
            await client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    for name in ("cert", "key", "ca", "traffic_file"):
        parser.add_argument(name)
    parser.add_argument("seconds", type=float)
    args = parser.parse_args()
    print(json.dumps(uvloop.run(main(args.port, args.cert, args.key, args.ca, args.traffic_file,
                                     args.seconds))))
