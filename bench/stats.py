"""Throughput and latency figures for the benchmark scripts."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable


def percentile(sorted_values: list[float], p: float) -> float:
    """The p-th percentile (0..100) of already sorted values, nearest-rank."""
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def summary(count: int, elapsed: float, latencies_s: list[float], rate_key: str, pcts=(50, 99)) -> dict:
    """{rate_key: count/elapsed, "p50_ms": ..., ...} rounded for printing."""
    lat = sorted(x * 1000 for x in latencies_s)
    out = {rate_key: round(count / elapsed, 1) if elapsed > 0 else 0.0}
    for p in pcts:
        out[f"p{p}_ms"] = round(percentile(lat, p), 2)
    return out


async def closed_loop(call: Callable[[], Awaitable[None]], seconds: float, callers: int) -> float:
    """Calls per second with `callers` calling back to back for `seconds`."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await call()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return done / (time.perf_counter() - start)


async def open_loop(call: Callable[[], Awaitable[None]], rate: float,
                    seconds: float) -> list[float]:
    """Latencies (seconds) of calls started on schedule at `rate` per second for `seconds`, whether
    or not earlier ones are done, each measured from its scheduled start: queueing shows in the
    latency instead of being hidden by callers that wait."""
    latencies: list[float] = []

    async def timed(scheduled: float) -> None:
        await call()
        latencies.append(time.perf_counter() - scheduled)

    tasks = []
    begin = time.perf_counter()
    for i in range(int(rate * seconds)):
        scheduled = begin + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(timed(scheduled)))
    await asyncio.gather(*tasks)
    return latencies


async def closed_then_open(call: Callable[[], Awaitable[None]], seconds: float,
                           callers: int) -> dict:
    """Throughput from a closed loop (`callers` at once, half the time), latency from an open loop
    at 80% of that throughput (the other half)."""
    rate = await closed_loop(call, seconds / 2, callers)
    latencies = await open_loop(call, max(1.0, rate * 0.8), seconds / 2)
    figures = summary(len(latencies), seconds / 2, latencies, "auths_per_s", pcts=(50, 95, 99))
    figures["auths_per_s"] = round(rate, 1)
    return figures


def postgres_cpu_seconds() -> float | None:
    """CPU time used so far by this machine's PostgreSQL processes (Linux /proc), or None elsewhere."""
    if not os.path.isdir("/proc"):
        return None
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # the process ended meanwhile
        if stat[stat.index("(") + 1:stat.rindex(")")] in ("postgres", "postmaster"):
            fields = stat[stat.rindex(")") + 2:].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU per operation of this process and of PostgreSQL over a stretch of a benchmark."""

    def __enter__(self) -> CpuMeter:
        self.ops = 0
        self._own, self._pg = os.times(), postgres_cpu_seconds()
        return self

    def __exit__(self, *_) -> None:
        own, pg = os.times(), postgres_cpu_seconds()
        self.own_s = own.user + own.system - self._own.user - self._own.system
        self.pg_s = None if pg is None or self._pg is None else pg - self._pg

    def per_op_us(self) -> dict:
        """{"python_us", "postgres_us"}: CPU microseconds per counted operation."""
        n = max(self.ops, 1)
        return {"python_us": round(1e6 * self.own_s / n),
                "postgres_us": None if self.pg_s is None else round(1e6 * self.pg_s / n)}
