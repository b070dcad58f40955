"""Prometheus metrics: the engine's and jobs' hooks (antaca_auth/observer.py) wired to counters and
histograms, HTTP requests counted by the middleware, and what is read at scrape time (queue depth,
engine counters, pool use, outbox backlogs). `GET /metrics` is served on its own listener
(`ANTACA_METRICS_PORT`), without authentication, as Prometheus scrapes (docs/operations.md)."""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
import uuid
from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from antaca_auth.decision import AuthorizationResult
from antaca_auth.observer import EngineObserver, JobObserver

if TYPE_CHECKING:
    from antaca_api.services import Services

log = logging.getLogger(__name__)
disable_created_metrics()  # no `_created` series: they double the exposition for nothing

# Authorization latency buckets, seconds: networks answer within 1-2 s; most answers take ms.
LATENCY_BUCKETS_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
HTTP_BUCKETS_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# The outbox counts are read from the database at most this often, and within this time.
OUTBOX_REFRESH_SECONDS = 15.0
OUTBOX_QUERY_TIMEOUT_SECONDS = 1.0
UNMATCHED_ROUTE = "unmatched"
# Kinds of answer whose series are kept at hand (networks x outcomes x codes: a few hundred).
ANSWER_KINDS_CACHED_MAX = 10_000  # the route label of a request no route matched (404s)


class Metrics(EngineObserver, JobObserver):
    """One registry per service (tests run several in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # The hot path's tallies are plain lists, turned into metric families at scrape time
        # (prometheus-client's own histogram takes a lock per bucket and sum: 10 µs an answer).
        self.latency: dict[tuple[str, str], Tally] = {}  # (outcome, network)
        self.decisions: dict[tuple[str, str], list[int]] = {}  # (DE39, action code): [count]
        self.outcomes_unknown = Counter(
            "antaca_authorization_outcome_unknown", "Authorizations left without an answer",
            ["network"], registry=r)
        self.batch_size = Histogram(
            "antaca_authorization_batch_size", "Authorizations per committed batch",
            buckets=BATCH_SIZE_BUCKETS, registry=r)
        self.batch_seconds = Histogram(
            "antaca_ledger_batch_seconds", "Decide, write and commit of one authorization batch",
            buckets=LATENCY_BUCKETS_SECONDS, registry=r)
        self.http_requests = Counter(
            "antaca_http_requests", "HTTP requests by route template, method and status",
            ["route", "method", "status"], registry=r)
        self.http_seconds = Histogram(
            "antaca_http_request_duration_seconds", "HTTP request duration by route template",
            ["route", "method"], buckets=HTTP_BUCKETS_SECONDS, registry=r)
        self.job_runs = Counter("antaca_job_runs", "Background job passes", ["job"], registry=r)
        self.job_failures = Counter("antaca_job_failures", "Background job passes that failed",
                                    ["job"], registry=r)
        self.job_seconds = Histogram("antaca_job_duration_seconds", "Background job pass duration",
                                     ["job"], buckets=HTTP_BUCKETS_SECONDS, registry=r)
        self.services: Services | None = None
        # The tallies by kind of answer (network, decision, stand-in, codes): the hot path skips
        # the label lookup and the network id's formatting.
        self._answer_tallies: dict[tuple, tuple] = {}
        self.outbox: dict[str, dict[str, int]] = {}
        self.outbox_read_at = float("-inf")
        self.registry.register(_ScrapeTimeCollector(self))

    # --- the hooks (hot path: a few dictionary lookups each) --------------------------------

    def answered(self, network_id: uuid.UUID, result: AuthorizationResult, seconds: float) -> None:
        key = (network_id, result.decision, result.stand_in, result.response_code,
               result.action_code)
        tallies = self._answer_tallies.get(key)
        if tallies is None:  # first answer of its kind: find its tallies once
            tallies = self._tallies_of(network_id, result)
        tallies[0].observe(seconds)
        tallies[1][0] += 1

    def _tallies_of(self, network_id: uuid.UUID, result: AuthorizationResult) -> tuple:
        outcome = "STAND_IN_" + result.decision if result.stand_in else result.decision
        latency = self.latency.setdefault((outcome, str(network_id)),
                                          Tally(LATENCY_BUCKETS_SECONDS))
        count = self.decisions.setdefault((result.response_code, result.action_code or ""), [0])
        tallies = (latency, count)
        if len(self._answer_tallies) < ANSWER_KINDS_CACHED_MAX:
            self._answer_tallies[(network_id, result.decision, result.stand_in,
                                  result.response_code, result.action_code)] = tallies
        return tallies

    def outcome_unknown(self, network_id: uuid.UUID) -> None:
        self.outcomes_unknown.labels(str(network_id)).inc()

    def batch_committed(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def job_ran(self, job: str, seconds: float, failed: bool) -> None:
        self.job_runs.labels(job).inc()
        self.job_seconds.labels(job).observe(seconds)
        if failed:
            self.job_failures.labels(job).inc()

    def http_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.http_requests.labels(route, method, str(status)).inc()
        self.http_seconds.labels(route, method).observe(seconds)

    # --- scrape -----------------------------------------------------------------------------

    async def refresh_outbox(self) -> None:
        """Read the outboxes' counts when the last reading is older than OUTBOX_REFRESH_SECONDS;
        a database that does not answer in time leaves the last reading."""
        if self.services is None or time.monotonic() - self.outbox_read_at < OUTBOX_REFRESH_SECONDS:
            return
        from antaca_api import (  # they import the services, which import this
            notifications,
            webhooks,
        )

        try:
            async with asyncio.timeout(OUTBOX_QUERY_TIMEOUT_SECONDS):
                async with self.services.pool.acquire() as conn:
                    self.outbox = {"webhook": await webhooks.outbox_counts(conn),
                                   "alert": await notifications.outbox_counts(conn)}
            self.outbox_read_at = time.monotonic()
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("metrics: outbox counts unavailable (%s)", type(exc).__name__)

    async def exposition(self) -> bytes:
        await self.refresh_outbox()
        return generate_latest(self.registry)


class Tally:
    """A histogram's buckets, count and sum as plain numbers (one event loop writes them)."""

    __slots__ = ("bounds", "buckets", "count", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.buckets = [0] * (len(bounds) + 1)  # the last: above every bound
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.buckets[bisect.bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus' buckets: (upper bound, observations at or below it), +Inf last."""
        running, result = 0, []
        for bound, count in zip([*map(str, self.bounds), "+Inf"], self.buckets, strict=True):
            running += count
            result.append((bound, running))
        return result


class _ScrapeTimeCollector:
    """What is read when Prometheus asks: free for the hot path."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self):
        return []

    def collect(self):
        yield from _answer_families(self.metrics)
        services = self.metrics.services
        if services is None:
            return
        engine = services.engine
        if engine is not None:
            statistics = engine.statistics()
            yield GaugeMetricFamily("antaca_authorization_queue_depth",
                                    "Authorizations queued for a batch", value=statistics["queued"])
            stand_ins = CounterMetricFamily("antaca_authorization_stand_ins",
                                            "Authorizations answered by stand-in, by cause",
                                            labels=["cause"])
            for name, count in statistics.items():
                if name.startswith("stand_in_"):
                    stand_ins.add_metric([name.removeprefix("stand_in_")], count)
            yield stand_ins
            yield CounterMetricFamily("antaca_authorization_late_answers",
                                      "Stand-in timeouts of requests whose batch was committing",
                                      value=statistics.get("late_answers", 0))
            yield CounterMetricFamily("antaca_authorization_duplicate_transmissions",
                                      "Message ids reused for another payment",
                                      value=statistics.get("duplicate_transmissions", 0))
        yield from _pool_families(services)
        yield from _outbox_families(self.metrics.outbox)


def _answer_families(metrics: Metrics):
    latency = HistogramMetricFamily("antaca_authorization_latency_seconds",
                                    "Arrival to answer of an authorization",
                                    labels=["outcome", "network"])
    for (outcome, network), tally in list(metrics.latency.items()):
        latency.add_metric([outcome, network], tally.cumulative(), tally.total)
    decisions = CounterMetricFamily("antaca_authorization_decisions",
                                    "Authorizations answered, by DE39 and action code",
                                    labels=["response_code", "action_code"])
    for (response_code, action_code), count in list(metrics.decisions.items()):
        decisions.add_metric([response_code, action_code], count[0])
    return latency, decisions


def _pool_families(services: Services):
    size = GaugeMetricFamily("antaca_database_pool_connections", "Connections open, by pool",
                             labels=["pool"])
    busy = GaugeMetricFamily("antaca_database_pool_connections_in_use",
                             "Connections lent out, by pool", labels=["pool"])
    limit = GaugeMetricFamily("antaca_database_pool_connections_max",
                              "Most connections a pool opens", labels=["pool"])
    pools = {"shared": services.pool}
    if services.authorization_pool is not services.pool:
        pools["authorization"] = services.authorization_pool
    for name, pool in pools.items():
        size.add_metric([name], pool.get_size())
        busy.add_metric([name], pool.get_size() - pool.get_idle_size())
        limit.add_metric([name], pool.get_max_size())
    return size, busy, limit


def _outbox_families(outbox: dict[str, dict[str, int]]):
    backlog = GaugeMetricFamily("antaca_outbox_backlog", "Deliveries waiting to be sent",
                                labels=["outbox"])
    failed = GaugeMetricFamily("antaca_outbox_failed", "Deliveries given up after their retries",
                               labels=["outbox"])
    for outbox_name, counts in outbox.items():
        backlog.add_metric([outbox_name], counts["PENDING"])
        failed.add_metric([outbox_name], counts["FAILED"])
    return backlog, failed


def metrics_app(metrics: Metrics) -> web.Application:
    """The metrics listener's application: `GET /metrics` only."""

    async def scrape(_: web.Request) -> web.Response:
        body = await metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    return app
