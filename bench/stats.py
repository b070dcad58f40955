"""Throughput and latency figures for the benchmark scripts."""

from __future__ import annotations

import asyncio
import collections
import gc
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import NamedTuple

import asyncpg

# The scenario's own latency figures: an open loop at this share of its closed-loop throughput.
OPEN_LOOP_SHARE = 0.8
# The latency curve: open loops at these shares of the closed loop's throughput, each run this many
# times (round robin over the shares, so that a drift of this shared machine spreads over every
# point instead of landing on one), after a warm-up as long as one run.
CURVE_SHARES = (0.25, 0.5, 0.7, 0.9)
CURVE_RUNS = 3
APPROVED = "APPROVED"

# One call of a loop; what it returns is counted (None: nothing).
Call = Callable[[], Awaitable[Hashable | None]]


class Outcome(NamedTuple):
    """What an authorization call answered, as counted by the loops."""

    reason: str  # APPROVED, or the decline's reason (INSUFFICIENT_FUNDS, ...)
    stand_in: bool = False  # decided by stand-in (91: the engine could not decide in time)


def freeze_heap() -> None:
    """Move what set-up built out of the collector's way, as `antaca serve` does after start-up: a
    full collection over the bench's cards and traffic paused this process 25-38 ms, which showed as
    every in-flight payment's latency (measured: two such pauses in ten seconds at 2,500/s; with the
    heap frozen, engine_hot's p99 at a quarter load was 12.6 and 16.8 ms against 27.4 and 30.4 in
    alternating runs, and the same within noise higher up)."""
    gc.collect()
    gc.freeze()


def percentile(sorted_values: list[float], p: float) -> float:
    """The p-th percentile (0..100) of already sorted values, nearest-rank."""
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def summary(count: int, elapsed: float, latencies_s: list[float], rate_key: str,
            pcts=(50, 99)) -> dict:
    """{rate_key: count/elapsed, "p50_ms": ..., ...} rounded for printing."""
    lat = sorted(x * 1000 for x in latencies_s)
    out = {rate_key: round(count / elapsed, 1) if elapsed > 0 else 0.0}
    for p in pcts:
        out[f"p{p}_ms"] = round(percentile(lat, p), 2)
    return out


def answer_shares(counts: collections.Counter) -> dict:
    """{"approved_share", "declined_share", "stand_in_share", "declines": {reason: share}} of the
    Outcomes counted; empty when there are none (calls that answer nothing countable)."""
    outcomes = {o: n for o, n in counts.items() if isinstance(o, Outcome)}
    total = sum(outcomes.values())
    if not total:
        return {}
    declines: collections.Counter[str] = collections.Counter()
    for outcome, n in outcomes.items():
        if outcome.reason != APPROVED:
            declines[outcome.reason] += n
    approved = sum(n for o, n in outcomes.items() if o.reason == APPROVED)
    return {"approved_share": round(approved / total, 4),
            "declined_share": round(sum(declines.values()) / total, 4),
            "stand_in_share": round(sum(n for o, n in outcomes.items() if o.stand_in) / total, 4),
            "declines": {reason: round(n / total, 4) for reason, n in declines.most_common()}}


async def closed_loop(call: Call, seconds: float, callers: int,
                      counts: collections.Counter | None = None) -> float:
    """Calls per second with `callers` calling back to back for `seconds`; what each call returns is
    counted in `counts`."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            outcome = await call()
            if counts is not None and outcome is not None:
                counts[outcome] += 1
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return done / (time.perf_counter() - start)


async def open_loop(call: Call, rate: float, seconds: float,
                    counts: collections.Counter | None = None) -> list[float]:
    """Latencies (seconds) of calls started on schedule at `rate` per second for `seconds`, whether
    or not earlier ones are done, each measured from its scheduled start: queueing shows in the
    latency instead of being hidden by callers that wait. What each call returns is counted."""
    latencies: list[float] = []
    failures: list[BaseException] = []

    async def timed(scheduled: float) -> None:
        try:
            outcome = await call()
        except Exception as exc:  # kept, raised once the loop is over
            failures.append(exc)
            return
        latencies.append(time.perf_counter() - scheduled)
        if counts is not None and outcome is not None:
            counts[outcome] += 1

    # Only the calls in flight are kept: holding every finished task (and its coroutine, frame and
    # result) until the end grew the heap by ~10 objects a call, and the collector's full passes
    # over it stalled the loop for 90-240 ms in a 15 s run at 1,500/s (gc.callbacks), which showed
    # as the engine's p99.
    in_flight: set[asyncio.Task] = set()
    begin = time.perf_counter()
    for i in range(int(rate * seconds)):
        scheduled = begin + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(timed(scheduled))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    while in_flight:
        await asyncio.gather(*in_flight)
    if failures:
        raise failures[0]
    return latencies


@dataclass(frozen=True)
class OpenPoints:
    """Open-loop runs at shares of a closed loop's rate: a warm-up at the lowest share, then
    `runs` rounds, each running every share once for `point_seconds`."""

    shares: tuple[float, ...]
    point_seconds: float
    runs: int = 1
    warm_up_seconds: float = 0.0

    @classmethod
    def curve(cls, seconds: float) -> OpenPoints:
        """The latency curve (CURVE_SHARES, CURVE_RUNS each) within `seconds`, warm-up included."""
        slot = seconds / (1 + len(CURVE_SHARES) * CURVE_RUNS)
        return cls(CURVE_SHARES, slot, CURVE_RUNS, warm_up_seconds=slot)


@dataclass
class OpenRun:
    """One open-loop run: its latencies (ms, sorted) and its answers counted."""

    latencies_ms: list[float]
    counts: collections.Counter = field(default_factory=collections.Counter)

    def p_ms(self, p: float) -> float:
        return round(percentile(self.latencies_ms, p), 2)


async def open_points(call: Call, rate: float, points: OpenPoints) -> dict[float, list[OpenRun]]:
    """Every run of every point, by share (the schedule in OpenPoints)."""
    if points.warm_up_seconds > 0:
        await open_loop(call, max(1.0, rate * min(points.shares)), points.warm_up_seconds)
    runs: dict[float, list[OpenRun]] = {share: [] for share in points.shares}
    for _ in range(points.runs):
        for share in points.shares:
            counts: collections.Counter = collections.Counter()
            latencies = await open_loop(call, max(1.0, rate * share), points.point_seconds, counts)
            runs[share].append(OpenRun(sorted(1000 * x for x in latencies), counts))
    return runs


def curve_figures(rate: float, runs: dict[float, list[OpenRun]]) -> dict[str, dict]:
    """{"25": {"offered_per_s", "p50_ms", "p99_ms", "stand_in_share", "p99_ms_runs"}, ...}: the
    median run's p50 and p99 (one run disturbed by the machine moves neither), every run's p99."""
    figures = {}
    for share, point_runs in runs.items():
        counts = sum((run.counts for run in point_runs), collections.Counter())
        figures[str(round(100 * share))] = {
            "offered_per_s": round(rate * share, 1),
            "p50_ms": round(statistics.median(run.p_ms(50) for run in point_runs), 2),
            "p99_ms": round(statistics.median(run.p_ms(99) for run in point_runs), 2),
            "stand_in_share": answer_shares(counts).get("stand_in_share", 0.0),
            "p99_ms_runs": [run.p_ms(99) for run in point_runs],
        }
    return figures


async def closed_then_open(call: Call, seconds: float, callers: int) -> dict:
    """Throughput from a closed loop (`callers` at once, half of `seconds`), latency from an open
    loop at OPEN_LOOP_SHARE of that throughput (the other half), the answers counted over both."""
    counts: collections.Counter = collections.Counter()
    rate = await closed_loop(call, seconds / 2, callers, counts)
    points = OpenPoints((OPEN_LOOP_SHARE,), point_seconds=seconds / 2)
    (run,) = (await open_points(call, rate, points))[OPEN_LOOP_SHARE]
    return {"auths_per_s": round(rate, 1), "p50_ms": run.p_ms(50), "p95_ms": run.p_ms(95),
            "p99_ms": run.p_ms(99), **answer_shares(counts + run.counts)}


async def latency_curve(call: Call, rate: float, seconds: float) -> dict[str, dict]:
    """Open loops at CURVE_SHARES of a closed loop's `rate`, CURVE_RUNS each, after a warm-up,
    within `seconds` (OpenPoints.curve): curve_figures."""
    return curve_figures(rate, await open_points(call, rate, OpenPoints.curve(seconds)))


async def postmaster_pid(conn: asyncpg.Connection) -> int | None:
    """The process id of the PostgreSQL server behind `conn` when it runs on this machine (Linux
    /proc): the parent of the connection's backend. None for a server elsewhere."""
    backend = await conn.fetchval("SELECT pg_backend_pid()")
    try:
        with open(f"/proc/{backend}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    if stat[stat.index("(") + 1:stat.rindex(")")] not in ("postgres", "postmaster"):
        return None  # a process of this machine that happens to have the id: not our server
    return int(stat[stat.rindex(")") + 2:].split()[1])


def postgres_cpu_seconds(postmaster: int | None) -> float | None:
    """CPU time used so far by one PostgreSQL server: the postmaster and its children (backends,
    WAL writer, checkpointer...), the children that ended included (the postmaster reaps them into
    its children's time). Other servers on this machine, such as another session's tests, are not
    counted. None without a local server (postmaster_pid) or /proc."""
    if postmaster is None or not os.path.isdir("/proc"):
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
        fields = stat[stat.rindex(")") + 2:].split()
        if int(pid) == postmaster:  # its own time, and that of its children that ended
            total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
        elif int(fields[1]) == postmaster:
            total += int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU per operation of this process and of one PostgreSQL server over a stretch of a
    benchmark (`postmaster`: from postmaster_pid; None counts no PostgreSQL)."""

    def __init__(self, postmaster: int | None = None) -> None:
        self.postmaster = postmaster

    def __enter__(self) -> CpuMeter:
        self.ops = 0
        self._own, self._pg = os.times(), postgres_cpu_seconds(self.postmaster)
        return self

    def __exit__(self, *_) -> None:
        own, pg = os.times(), postgres_cpu_seconds(self.postmaster)
        self.own_s = own.user + own.system - self._own.user - self._own.system
        self.pg_s = None if pg is None or self._pg is None else pg - self._pg

    def per_op_us(self) -> dict:
        """{"python_us", "postgres_us"}: CPU microseconds per counted operation."""
        n = max(self.ops, 1)
        return {"python_us": round(1e6 * self.own_s / n),
                "postgres_us": None if self.pg_s is None else round(1e6 * self.pg_s / n)}
