"""bench.iso8583_bench runs and prints its figures (a smoke test: never how fast)."""

from __future__ import annotations

import asyncio

from bench import iso8583_bench
from tests.integration.test_bench import fresh_databases


def test_iso8583_bench_reports_hot_spread_and_the_ratio(pg_server, template_db):
    figures = asyncio.run(iso8583_bench.main(2.4, cards=200,
                                             database=fresh_databases(pg_server, template_db)))
    assert {"iso_hot", "iso_spread", "http_hot", "iso_vs_http_hot"} <= set(figures)
    for name in ("iso_hot", "iso_spread"):
        scenario = figures[name]
        assert scenario["auths_per_s"] > 0 and scenario["approved_share"] > 0
        assert {"p50_ms", "p99_ms"} <= set(scenario)
        assert all(reason.startswith("DE39 ") for reason in scenario["declines"])
    assert figures["iso_vs_http_hot"] > 0
