"""The HTTP load client for bench.auth_bench, run as its own process so the server's CPU is its own.

    python -m bench.http_load URL CERT KEY CA TRAFFIC_JSON SECONDS [--closed | --rate R]
                              [--curve-seconds S]

The payments are TRAFFIC_JSON's mix (bench.traffic.Traffic.to_json: the cards, their roles, the
zone PIN key for PIN blocks). Closed loop for throughput, then open loop at 80% of it for latency
(queueing is not hidden; bench.stats.closed_then_open); with `--curve-seconds S`, then the latency
curve for S more seconds (bench.stats.latency_curve). Prints one JSON object: {"auths_per_s",
"p50_ms", "p95_ms", "p99_ms", "approved_share", "declined_share", "stand_in_share", "declines":
{reason: share}}, with "latency_curve" when asked. `--closed`: the closed loop alone for SECONDS,
{"auths_per_s"}. `--rate R`: the open loop alone at R per second for SECONDS, {"auths_per_s",
"p50_ms", "p95_ms", "p99_ms"} and the shares (`stand_in_share`: answers with `standIn` true, DE39
"91": the engine's stand-in answer, counted rather than refused); with `--on-go` it opens its
connections, prints "connected" and starts when a line arrives on its standard input. Declines are
answers like any other: counted by reason, never an error; so is a status other than 200 (as
"HTTP <status>").

The client shares the two cores with the server and PostgreSQL, so it is lean: HTTP/1.1 keep-alive
over TLS connections opened once (mutual TLS, the network's certificate), requests written as bytes
and responses read by Content-Length. aiohttp's client cost as much CPU per request as the server.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import ssl
import sys
import time
from urllib.parse import urlsplit

import msgspec
import uvloop

from bench.stats import (
    Outcome,
    answer_shares,
    closed_loop,
    closed_then_open,
    freeze_heap,
    latency_curve,
    open_loop,
    summary,
)
from bench.traffic import Traffic

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


async def main(url: str, cert: str, key: str, ca: str, traffic_file: str, seconds: float, *,
               closed: bool = False, rate: float | None = None, on_go: bool = False,
               curve_seconds: float = 0.0) -> dict:
    traffic = Traffic.from_json(open(traffic_file).read())
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(cert, key)
    target = urlsplit(url)
    head = (f"POST {target.path} HTTP/1.1\r\nHost: {target.netloc}\r\n"
            f"Content-Type: application/json\r\nContent-Length: ").encode()
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(CONNECTIONS):
        reader, writer = await asyncio.open_connection(target.hostname, target.port, ssl=context)
        idle.put_nowait(Connection(reader, writer, head))
    freeze_heap()
    encode, decode = msgspec.json.encode, msgspec.json.decode

    async def one() -> Outcome:
        body = encode(traffic.payment())
        connection = await idle.get()  # the open loop queues here when every connection is busy
        try:
            status, raw = await connection.post(body)
        finally:
            idle.put_nowait(connection)
        if status != 200:
            return Outcome(f"HTTP {status}")
        answer = decode(raw)
        return Outcome(answer["reason"], answer["standIn"])

    try:
        if closed:
            return {"auths_per_s": round(await closed_loop(one, seconds, CONNECTIONS), 1)}
        if rate is None:
            figures = await closed_then_open(one, seconds, CONNECTIONS)
            if curve_seconds > 0:
                figures["latency_curve"] = await latency_curve(one, figures["auths_per_s"],
                                                               curve_seconds)
            return figures
        if on_go:  # connected: the caller starts whatever must run alongside, then says go
            print("connected", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        counts: collections.Counter = collections.Counter()
        started = time.perf_counter()
        latencies = await open_loop(one, rate, seconds, counts)
        figures = summary(len(latencies), time.perf_counter() - started, latencies, "auths_per_s",
                          pcts=(50, 95, 99))
        return {**figures, **answer_shares(counts)}
    finally:
        while not idle.empty():
            idle.get_nowait().writer.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("url", "cert", "key", "ca", "traffic_file"):
        parser.add_argument(name)
    parser.add_argument("seconds", type=float)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--closed", action="store_true", help="the closed loop alone")
    mode.add_argument("--rate", type=float, help="the open loop alone, at this many a second")
    parser.add_argument("--on-go", action="store_true",
                        help="with --rate: print 'connected', start on a line from stdin")
    parser.add_argument("--curve-seconds", type=float, default=0.0,
                        help="after the closed and open loops: the latency curve, this long")
    args = parser.parse_args()
    figures = uvloop.run(main(args.url, args.cert, args.key, args.ca, args.traffic_file,
                              args.seconds, closed=args.closed, rate=args.rate, on_go=args.on_go,
                              curve_seconds=args.curve_seconds))
    print(json.dumps(figures))
