"""The HTTP load client for bench.auth_bench, run as its own process so the server's CPU is its own.

    python -m bench.http_load URL CERT KEY CA CARDS_JSON SECONDS [--closed | --rate R]

Closed loop for throughput, then open loop at 80% of it for latency (queueing is not hidden).
Prints one JSON object: {"auths_per_s", "p50_ms", "p95_ms", "p99_ms"}. `--closed`: the closed loop
alone for SECONDS, {"auths_per_s"}. `--rate R`: the open loop alone at R per second for SECONDS,
{"auths_per_s", "p50_ms", "p95_ms", "p99_ms", "stand_in_share"} (answers with DE39 "91", issuer
unavailable: the engine's stand-in answer, counted rather than refused); with `--on-go` it opens
its connections, prints "connected" and starts when a line arrives on its standard input.

The client shares the two cores with the server and PostgreSQL, so it is lean: HTTP/1.1 keep-alive
over TLS connections opened once (mutual TLS, the network's certificate), requests written as bytes
and responses read by Content-Length. aiohttp's client cost as much CPU per request as the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import ssl
import sys
import time
import uuid
from urllib.parse import urlsplit

import msgspec
import uvloop

from bench.stats import closed_loop, closed_then_open, open_loop, summary

CONNECTIONS = 256  # a network keeps many payments in flight; 64 capped the closed loop at 64 / latency


class Connection:
    """One keep-alive HTTPS connection; one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> None:
        self.reader, self.writer, self.head = reader, writer, head

    async def post(self, body: bytes) -> tuple[int, bytes]:
        self.writer.write(self.head + b"%d\r\n\r\n" % len(body) + body)
        status_line = await self.reader.readline()
        status = int(status_line.split(b" ", 2)[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)


STAND_IN_CODE = "91"  # DE39 "issuer or switch inoperative": what a stand-in answer carries


async def main(url: str, cert: str, key: str, ca: str, cards_file: str, seconds: float, *,
               closed: bool = False, rate: float | None = None, on_go: bool = False) -> dict:
    cards = json.loads(open(cards_file).read())
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(cert, key)
    target = urlsplit(url)
    head = (f"POST {target.path} HTTP/1.1\r\nHost: {target.netloc}\r\nContent-Type: application/json\r\n"
            f"Content-Length: ").encode()
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(CONNECTIONS):
        reader, writer = await asyncio.open_connection(target.hostname, target.port, ssl=context)
        idle.put_nowait(Connection(reader, writer, head))
    encode, decode = msgspec.json.encode, msgspec.json.decode
    stand_ins = 0

    async def one() -> None:
        nonlocal stand_ins
        card = random.choice(cards)
        body = encode({"messageId": uuid.uuid4().hex, "pan": card["pan"], "expiry": card["expiry"],
                       "amount": random.randint(100, 5000), "currency": "EUR", "type": "ECOM", "cvc2": card["cvc2"]})
        connection = await idle.get()  # the open loop queues here when every connection is busy
        try:
            status, raw = await connection.post(body)
        finally:
            idle.put_nowait(connection)
        answer = decode(raw)
        assert status == 200, answer
        if answer["responseCode"] == STAND_IN_CODE:
            stand_ins += 1
        else:
            assert answer["decision"] == "APPROVED", answer

    try:
        if closed:
            return {"auths_per_s": round(await closed_loop(one, seconds, CONNECTIONS), 1)}
        if rate is None:
            return await closed_then_open(one, seconds, CONNECTIONS)
        if on_go:  # connected: the caller starts whatever must run alongside, then says go
            print("connected", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        started = time.perf_counter()
        latencies = await open_loop(one, rate, seconds)
        figures = summary(len(latencies), time.perf_counter() - started, latencies, "auths_per_s",
                          pcts=(50, 95, 99))
        figures["stand_in_share"] = round(stand_ins / max(len(latencies), 1), 4)
        return figures
    finally:
        while not idle.empty():
            idle.get_nowait().writer.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("url", "cert", "key", "ca", "cards_file"):
        parser.add_argument(name)
    parser.add_argument("seconds", type=float)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--closed", action="store_true", help="the closed loop alone")
    mode.add_argument("--rate", type=float, help="the open loop alone, at this many a second")
    parser.add_argument("--on-go", action="store_true",
                        help="with --rate: print 'connected', start on a line from stdin")
    args = parser.parse_args()
    figures = uvloop.run(main(args.url, args.cert, args.key, args.ca, args.cards_file, args.seconds,
                              closed=args.closed, rate=args.rate, on_go=args.on_go))
    print(json.dumps(figures))
