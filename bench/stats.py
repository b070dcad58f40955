"""Throughput and latency figures for the benchmark scripts."""

from __future__ import annotations


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
