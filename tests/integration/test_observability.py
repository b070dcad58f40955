"""Operating Antaca (issue 20): request ids, JSON logs that never carry card data or secrets,
Prometheus metrics after a card's story, liveness and readiness."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import re
import uuid

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from antaca_api import logs
from antaca_api.metrics import Metrics, metrics_app
from antaca_auth import periodic
from antaca_auth.migrations import load_migrations
from tests.api_harness import ADMIN_PASSWORD, free_port
from tests.integration.test_authorizations import Payments
from tests.integration.test_cards import APP_PIN

CARD_PIN = "4821"
WRONG_PIN = "1357"


@pytest.fixture(scope="module")
def jwe_key():
    from joserfc.jwk import RSAKey

    return RSAKey.generate_key(2048)


@pytest.fixture
def captured_logs():
    """Every log record of the test, rendered as the service renders it (JSON lines)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.json_formatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def card_story(api, jwe_key) -> Payments:
    """A customer's card from creation to payments, PIN, CVV reset, reversal and clearing."""
    p = await Payments().setup(api, jwe_key)
    card_id = p.card["cardId"]
    status, _ = await p.w.app_jwe("POST", f"/customers/me/cards/{card_id}/pin", {"pin": CARD_PIN})
    assert status == 204
    approved = p.request(amount=2500)
    assert (await p.send("/network/authorizations", approved))[1]["decision"] == "APPROVED"
    assert (await p.authorize(type="POS", pin=CARD_PIN))["decision"] == "APPROVED"
    assert (await p.authorize(type="POS", pin=WRONG_PIN))["reason"] == "WRONG_PIN"
    assert (await p.authorize(cvc2="000" if p.card["cvc2"] != "000" else "001"))["decision"] == \
        "DECLINED"
    assert (await p.authorize(amount=10**7))["responseCode"] == "51"
    status, _ = await p.send("/network/reversals", {"messageId": "rev-1", "amount": 500,
                                                    "originalMessageId": approved["messageId"]})
    assert status == 200
    status, _ = await p.send("/network/clearings", {"messageId": "clr-1", "amount": 2000,
                                                    "originalMessageId": approved["messageId"]})
    assert status == 200
    status, data = await p.w.app_jwe("GET", f"/customers/me/cards/{card_id}")
    assert status == 200 and data["pan"] == p.card["pan"]
    status, _ = await p.w.app_jwe("POST", f"/customers/me/cards/{card_id}/cvv")
    assert status in (200, 201)
    # Mistakes of callers: wrong admin password, a malformed body with a PAN in it.
    async with api.client().post(f"{api.http}/admin/sessions",
                                 json={"email": "nobody@example.com", "password": ADMIN_PASSWORD}) as r:
        assert r.status in (400, 401)
    async with p.network.post(f"{api.https}/network/authorizations",
                              json={"pan": p.card["pan"], "cvc2": p.card["cvc2"]}) as r:
        assert r.status == 400
    return p


async def test_no_card_data_key_or_password_in_the_logs_of_a_card_story(api, jwe_key,
                                                                         captured_logs):
    p = await card_story(api, jwe_key)
    text = captured_logs.getvalue()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    requests = [line for line in lines if line.get("event") == "request"]
    assert len(requests) >= 15, text[:2000]
    for line in requests:  # one line per request: route template, status, duration, request id
        assert {"route", "method", "status", "duration_ms", "request_id"} <= set(line), line
        assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-", line["route"]), line  # a template
    assert any(line["route"] == "/customers/me/cards/{cardId}/pin" for line in requests)
    keys = api.services.card_keys
    long_secrets = {
        "PAN": p.card["pan"], "zone PIN key": p.zone_key.hex(),
        "zone PIN key (upper)": p.zone_key.hex().upper(), "admin password": ADMIN_PASSWORD,
        **{f"card key {k}": base64.b64encode(v).decode() for k, v in keys.pan_keys.items()},
        "CVC key": base64.b64encode(keys.cvc_key).decode(),
        "PIN block": p.pin_block(CARD_PIN), "private key": "PRIVATE KEY",
    }
    for name, secret in long_secrets.items():
        assert secret not in text, f"{name} found in the logs"
    short_secrets = {"CVC2": p.card["cvc2"], "card PIN": CARD_PIN, "wrong PIN": WRONG_PIN,
                     "application PIN": APP_PIN}
    for line in lines:
        for value in _strings(line, skip={"timestamp"}):
            for name, secret in short_secrets.items():
                pattern = rf"(?<![0-9A-Za-z.]){re.escape(secret)}(?![0-9A-Za-z.])"
                assert not re.search(pattern, value), f"{name} in the log line {line}"


def _strings(value, skip: set[str]):
    if isinstance(value, dict):
        for key, item in value.items():
            if key not in skip:
                yield from _strings(item, skip)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, skip)
    elif isinstance(value, str):
        yield value


async def test_request_ids_are_echoed_or_generated_and_in_every_error_body(api):
    client = api.client()
    async with client.get(f"{api.http}/health", headers={"X-Request-Id": "abc-123.x"}) as r:
        assert r.status == 200 and r.headers["X-Request-Id"] == "abc-123.x"
    for bad in ("has spaces", "x" * 65, "-leading", "é"):
        async with client.get(f"{api.http}/health", headers={"X-Request-Id": bad}) as r:
            assert re.fullmatch(r"[0-9a-f]{32}", r.headers["X-Request-Id"]), bad
    async with client.get(f"{api.http}/admin/partners", headers={"X-Request-Id": "trace-7"}) as r:
        body = await r.json()
        assert r.status == 401 and body["requestId"] == "trace-7" == r.headers["X-Request-Id"]
    async with client.get(f"{api.http}/no/such/route") as r:
        body = await r.json()
        assert r.status == 404 and set(body) == {"code", "message", "requestId"}
        assert body["requestId"] == r.headers["X-Request-Id"]
    async with client.post(f"{api.http}/admin/sessions", data=b"{not json",
                           headers={"Content-Type": "application/json"}) as r:
        body = await r.json()
        assert r.status == 400 and body["requestId"] == r.headers["X-Request-Id"]


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def _total(samples, name: str, **labels) -> float:
    wanted = set(labels.items())
    return sum(v for (n, found), v in samples.items() if n == name and wanted <= found)


async def test_metrics_after_a_card_story(api, jwe_key):
    p = await card_story(api, jwe_key)
    runner = web.AppRunner(metrics_app(api.services.metrics))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as r:
                assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
                text = await r.text()
    finally:
        await runner.cleanup()
    samples = _samples(text)
    network = str(p.network_id)
    assert all(name.startswith("antaca_") for name, _ in samples if "python" not in name)
    assert _total(samples, "antaca_authorization_latency_seconds_count", outcome="APPROVED",
                  network=network) == 2
    assert _total(samples, "antaca_authorization_latency_seconds_count", outcome="DECLINED",
                  network=network) == 3
    assert _total(samples, "antaca_authorization_decisions_total", response_code="00") == 2
    assert _total(samples, "antaca_authorization_decisions_total", response_code="51") == 1
    assert _total(samples, "antaca_authorization_decisions_total", response_code="55") == 1
    assert _total(samples, "antaca_authorization_batch_size_sum") >= 5
    assert _total(samples, "antaca_ledger_batch_seconds_count") >= 5
    assert ("antaca_authorization_queue_depth", frozenset()) in samples
    assert _total(samples, "antaca_http_requests_total", route="/network/authorizations",
                  status="200") == 5
    assert _total(samples, "antaca_http_requests_total", route="/network/authorizations",
                  status="400") == 1
    assert _total(samples, "antaca_http_request_duration_seconds_count",
                  route="/customers/me/cards/{cardId}/pin") == 1
    assert _total(samples, "antaca_database_pool_connections_max", pool="authorization") > 0
    assert _total(samples, "antaca_database_pool_connections", pool="shared") > 0
    assert ("antaca_outbox_backlog", frozenset({("outbox", "webhook")})) in samples
    assert ("antaca_outbox_failed", frozenset({("outbox", "alert")})) in samples


async def test_job_runs_and_failures_are_counted():
    metrics = Metrics()
    passes = []

    async def job():
        passes.append(1)
        if len(passes) % 2 == 0:
            raise RuntimeError("a failed pass")
        return 0

    previous, periodic.observer = periodic.observer, metrics
    try:
        task = asyncio.create_task(periodic.every(0.001, job, "test job (things done)"))
        while len(passes) < 4:
            await asyncio.sleep(0.005)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    finally:
        periodic.observer = previous
    samples = _samples((await metrics.exposition()).decode())
    assert _total(samples, "antaca_job_runs_total", job="test job") >= 4
    assert _total(samples, "antaca_job_failures_total", job="test job") >= 2


async def test_liveness_and_readiness(api):
    client = api.client()
    async with client.get(f"{api.http}/health/live") as r:
        assert (r.status, await r.json()) == (200, {"status": "ok"})
    async with client.get(f"{api.http}/health/ready") as r:
        assert (r.status, await r.json()) == (200, {"status": "ok", "database": "ok",
                                                    "migrations": "ok", "engine": "ok"})
    async with client.get(f"{api.http}/health") as r:
        assert r.status == 200
    async with api.services.pool.acquire() as conn:  # an applied migration's file changed
        await conn.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1")
    async with client.get(f"{api.http}/health/ready") as r:
        body = await r.json()
        assert r.status == 503 and body["code"] == "NOT_READY", body
        assert "changed after it was applied" in body["message"]
    async with api.services.pool.acquire() as conn:  # pending: this code's newest not applied
        await conn.execute("DELETE FROM schema_migrations WHERE version = 1")
    async with client.get(f"{api.http}/health/ready") as r:
        body = await r.json()
        assert r.status == 503 and "migrations 1 pending" in body["message"], body
    async with api.services.pool.acquire() as conn:  # a newer release migrated the database
        await conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES"
                           " (1, '0001_ledger', $1), (9999, '9999_future', 'x')",
                           load_migrations()[0].checksum)
    async with client.get(f"{api.http}/health/ready") as r:  # the old version keeps serving
        assert r.status == 200, await r.text()
    await api.services.engine.stop()
    async with client.get(f"{api.http}/health/ready") as r:
        body = await r.json()
        assert r.status == 503 and "engine not started" in body["message"], body
    async with client.get(f"{api.http}/health/live") as r:
        assert r.status == 200


def test_an_unknown_request_id_shape_is_replaced():
    assert logs.request_id_of("ok-1") == "ok-1"
    assert logs.request_id_of(None) != logs.request_id_of(None)
    assert re.fullmatch(r"[0-9a-f]{32}", logs.request_id_of("bad\nheader"))
    uuid.UUID(logs.request_id_of(""))
