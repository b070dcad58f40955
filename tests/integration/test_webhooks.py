"""Webhooks end to end: endpoints on the partner channel, deliveries signed as Standard Webhooks
(verified with the `standardwebhooks` package), secret rotation's overlap, retries with backoff
then FAILED on a controllable clock, the delivery log, replays, and refused targets (SSRF)."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from antaca_api import webhooks
from antaca_api.webhook_delivery import deliver_due
from antaca_auth import events
from tests.api_harness import listening_socket
from tests.integration.test_cards import World


@pytest.fixture(scope="module")
def jwe_key():
    from joserfc.jwk import RSAKey

    return RSAKey.generate_key(2048)


@dataclass
class Receiver:
    """A partner's webhook server: records every request, answers `status`."""

    url: str = ""
    status: int = 200
    received: list[tuple[dict, bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        return web.Response(status=self.status)


@pytest.fixture
async def receiver():
    target = Receiver()
    app = web.Application()
    app.router.add_post("/hooks", target.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = listening_socket()
    await web.SockSite(runner, sock).start()
    target.url = f"http://127.0.0.1:{sock.getsockname()[1]}/hooks"
    yield target
    await runner.cleanup()


def allow_private(api, allowed: bool = True) -> None:
    """The development setting (loopback receivers over http); production never sets it."""
    api.services.settings = msgspec.structs.replace(api.services.settings,
                                                    webhook_allow_private_targets=allowed)


async def register(w: World, url: str, event_types=()) -> tuple[int, dict]:
    async with w.partner.post(f"{w.api.https}/secure/webhooks",
                              json={"url": url, "eventTypes": list(event_types)}) as r:
        return r.status, await r.json()


async def call(w: World, method: str, path: str, body=None) -> tuple[int, dict]:
    async with w.partner.request(method, f"{w.api.https}{path}", json=body) as r:
        return r.status, await r.json()


async def lock(w: World, card: dict) -> tuple[int, dict]:
    return await w.app_plain("POST", f"/customers/me/cards/{card['cardId']}/lock", {"reason": 3})


def verified(secret: str, headers: dict, body: bytes) -> dict:
    return Webhook(secret).verify(body, headers)


async def test_deliveries_are_signed_filtered_and_logged(api, jwe_key, receiver):
    allow_private(api)
    w = await World().setup(api, jwe_key)
    status, endpoint = await register(w, receiver.url, [events.CARD_ISSUED])
    assert status == 201 and endpoint["secret"].startswith("whsec_") and endpoint["enabled"]
    card = await w.virtual()
    assert (await lock(w, card))[0] == 200
    assert await deliver_due(api.services) == 1  # the lock is not a type the endpoint wants
    ((headers, body),) = receiver.received
    message = verified(endpoint["secret"], headers, body)
    assert (message["type"], message["objectId"], message["data"]["cardId"]) == (
        events.CARD_ISSUED, card["cardId"], card["cardId"])
    assert card["pan"] not in body.decode() and card["cvc2"] not in message["data"].values()
    with pytest.raises(WebhookVerificationError):  # another secret, or an altered body, fails
        verified(webhooks.format_secret(webhooks.new_secret()), headers, body)
    with pytest.raises(WebhookVerificationError):
        verified(endpoint["secret"], headers, body.replace(b"card.issued", b"card.isSued"))

    status, log = await call(w, "GET", f"/secure/webhooks/{endpoint['endpointId']}/deliveries")
    (delivery,) = log["items"]
    assert (delivery["state"], delivery["eventId"], delivery["deliveryId"]) == (
        "SENT", message["id"], headers["webhook-id"])
    attempts = [(a["attempt"], a["ok"], a["statusCode"]) for a in delivery["attempts"]]
    assert attempts == [(1, True, 200)]
    assert await deliver_due(api.services) == 0  # sent once

    # Choosing types and disabling: nothing more is queued for a disabled endpoint.
    path = f"/secure/webhooks/{endpoint['endpointId']}"
    status, changed = await call(w, "PUT", f"{path}/event-types", {"eventTypes": ["card.locked"]})
    assert (status, changed["eventTypes"]) == (200, ["card.locked"])
    assert (await call(w, "PUT", f"{path}/event-types", {"eventTypes": ["nope"]}))[0] == 400
    assert (await call(w, "POST", f"{path}/disable"))[1]["enabled"] is False
    assert (await w.app_plain("POST", f"/customers/me/cards/{card['cardId']}/unlock"))[0] \
        == 200
    assert (await lock(w, card))[0] == 200
    assert await deliver_due(api.services) == 0
    status, listed = await call(w, "GET", "/secure/webhooks")
    assert [(e["endpointId"], e["enabled"]) for e in listed["items"]] == [
        (endpoint["endpointId"], False)]
    assert "secret" not in listed["items"][0]


async def test_the_secret_is_sealed_at_rest(api, jwe_key, receiver):
    allow_private(api)
    w = await World().setup(api, jwe_key)
    _, endpoint = await register(w, receiver.url)
    endpoint_id = uuid.UUID(endpoint["endpointId"])
    stored = await api.services.pool.fetchval("SELECT secret FROM webhook_endpoints WHERE id = $1",
                                              endpoint_id)
    secret = Webhook(endpoint["secret"])._whsecret
    assert secret not in stored and endpoint["secret"].encode() not in stored
    assert api.services.card_keys.open_webhook_secret(endpoint_id, stored) == secret


async def test_rotation_signs_with_both_secrets_for_24_hours(api, jwe_key, receiver):
    allow_private(api)
    w = await World().setup(api, jwe_key)
    _, endpoint = await register(w, receiver.url, [events.CARD_ISSUED])
    old = endpoint["secret"]
    path = f"/secure/webhooks/{endpoint['endpointId']}/rotate-secret"
    status, rotated = await call(w, "POST", path)
    assert status == 200 and rotated["secret"] != old
    now = datetime.now(UTC)
    until = datetime.fromisoformat(rotated["previousSecretValidUntil"])
    assert timedelta(hours=23, minutes=59) < until - now <= timedelta(hours=24)

    await w.virtual()
    assert await deliver_due(api.services) == 1
    headers, body = receiver.received[-1]
    assert len(headers["webhook-signature"].split(" ")) == 2
    verified(old, headers, body)  # a receiver not yet updated still accepts it
    verified(rotated["secret"], headers, body)

    await w.virtual()
    real_clock = api.services.clock
    api.services.clock = lambda: real_clock() + timedelta(hours=24, minutes=1)
    try:
        assert await deliver_due(api.services) == 1
    finally:
        api.services.clock = real_clock
    headers, body = receiver.received[-1]
    assert len(headers["webhook-signature"].split(" ")) == 1
    verified(rotated["secret"], headers, body)
    with pytest.raises(WebhookVerificationError):
        verified(old, headers, body)


async def test_retries_back_off_with_jitter_then_fail_after_three_days(api, jwe_key, receiver):
    allow_private(api)
    w = await World().setup(api, jwe_key)
    _, endpoint = await register(w, receiver.url, [events.CARD_ISSUED])
    receiver.status = 500
    await w.virtual()
    pool, real_clock = api.services.pool, api.services.clock
    queued_at = await pool.fetchval("SELECT created_at FROM webhook_deliveries")
    at, waits = real_clock(), []
    try:
        for _ in range(100):
            api.services.clock = lambda at=at: at
            assert await deliver_due(api.services) == 1
            row = await pool.fetchrow(
                "SELECT state, attempts, next_attempt_at FROM webhook_deliveries")
            if row["state"] == "FAILED":
                break
            waits.append((row["next_attempt_at"] - at).total_seconds())
            api.services.clock = lambda at=at: at + timedelta(seconds=1)
            assert await deliver_due(api.services) == 0  # not due before its time
            at = row["next_attempt_at"]
    finally:
        api.services.clock = real_clock
    assert row["state"] == "FAILED" and row["attempts"] == len(waits) + 1 == len(receiver.received)
    base = api.services.settings.webhook_backoff_base
    for attempt, wait in enumerate(waits, start=1):  # exponential, capped, each times [0.5, 1]
        full = min(base * 2 ** (attempt - 1), webhooks.BACKOFF_CAP_SECONDS)
        assert full / 2 <= wait <= full, (attempt, wait)
    assert len({round(wait / min(base * 2 ** i, webhooks.BACKOFF_CAP_SECONDS), 3)
                for i, wait in enumerate(waits)}) > 1  # jittered, not a fixed schedule
    window = timedelta(days=webhooks.RETRY_WINDOW_DAYS)
    assert at <= queued_at + window  # every attempt inside the window, none after
    assert at + timedelta(seconds=waits[-1]) > queued_at + window - timedelta(hours=6)
    _, log = await call(w, "GET", f"/secure/webhooks/{endpoint['endpointId']}/deliveries")
    (delivery,) = log["items"]
    assert delivery["state"] == "FAILED" and delivery["nextAttemptAt"] is None
    assert {(a["ok"], a["statusCode"]) for a in delivery["attempts"]} == {(False, 500)}
    assert delivery["lastError"] == "HTTP 500"


async def test_replay_of_one_event_and_of_every_event_since_a_time(api, jwe_key, receiver):
    allow_private(api)
    w = await World().setup(api, jwe_key)
    _, endpoint = await register(w, receiver.url, [events.CARD_ISSUED])
    path = f"/secure/webhooks/{endpoint['endpointId']}"
    before = datetime.now(UTC)
    first, second = await w.virtual(), await w.virtual()
    assert await deliver_due(api.services) == 2
    _, listed = await call(w, "GET", "/secure/events?order=oldest&type=card.issued")
    issued, _ = listed["items"]
    status, one = await call(w, "POST", f"{path}/replay", {"eventId": issued["eventId"]})
    assert (status, one) == (202, {"queued": 1, "hasMore": False})
    assert await deliver_due(api.services) == 1
    headers, body = receiver.received[-1]
    message = verified(endpoint["secret"], headers, body)
    assert message["id"] == issued["eventId"] and message["objectId"] == first["cardId"]
    assert headers["webhook-id"] not in {h["webhook-id"] for h, _ in receiver.received[:2]}

    # Since a time: every event of the partner since then (all types: a replay names what it wants).
    all_since = [e for e in (await call(w, "GET", "/secure/events?order=oldest"))[1]["items"]
                 if datetime.fromisoformat(e["createdAt"]) >= before]
    status, many = await call(w, "POST", f"{path}/replay", {"since": before.isoformat()})
    assert (status, many["queued"]) == (202, len(all_since)) and len(all_since) >= 2
    assert await deliver_due(api.services) == len(all_since)
    replayed = [verified(endpoint["secret"], h, b)["objectId"] for h, b in receiver.received[3:]]
    assert second["cardId"] in replayed
    _, log = await call(w, "GET", f"{path}/deliveries?limit=2")
    assert log["hasMore"] and all(d["replay"] for d in log["items"])
    _, rest = await call(w, "GET", f"{path}/deliveries?limit=100&cursor={log['nextCursor']}")
    assert len(log["items"]) + len(rest["items"]) == 2 + 1 + len(all_since)

    for bad in ({}, {"eventId": issued["eventId"], "since": before.isoformat()},
                {"since": "2026-01-01T00:00:00"}):
        assert (await call(w, "POST", f"{path}/replay", bad))[0] == 400, bad
    other = await World().setup(api, jwe_key)
    _, foreign = await register(other, receiver.url)
    assert (await call(w, "POST", f"{path}/replay", {"eventId": str(uuid.uuid4())}))[0] == 404
    status, body = await call(other, "POST", f"/secure/webhooks/{foreign['endpointId']}/replay",
                              {"eventId": issued["eventId"]})  # another partner's event
    assert (status, body["code"]) == (404, "NOT_FOUND")


REFUSED = [
    ("http://93.184.215.14/hooks", "https"),  # plain http
    ("https://127.0.0.1/hooks", "loopback"),
    ("https://localhost/hooks", "loopback"),  # a name that resolves to loopback
    ("https://[::1]/hooks", "loopback"),
    ("https://10.1.2.3/hooks", "private"),
    ("https://172.16.5.4/hooks", "private"),
    ("https://192.168.1.10/hooks", "private"),
    ("https://[fd12:3456::1]/hooks", "private"),
    ("https://169.254.10.20/hooks", "link-local"),
    ("https://[fe80::1]/hooks", "link-local"),
    ("https://169.254.169.254/latest/meta-data", "metadata"),
    ("https://[fd00:ec2::254]/hooks", "metadata"),
    ("https://100.100.100.200/hooks", "metadata"),
    ("https://[::ffff:127.0.0.1]/hooks", "loopback"),
    ("https://0.0.0.0/hooks", "unicast"),
    ("https://user:pass@93.184.215.14/hooks", "credentials"),
]


async def test_refused_targets_at_registration(api, jwe_key):
    allow_private(api, False)
    w = await World().setup(api, jwe_key)
    for url, why in REFUSED:
        status, body = await register(w, url)
        assert (status, body["code"]) == (400, "WEBHOOK_TARGET_REFUSED"), url
        assert why in body["message"], (url, body["message"])
    assert await api.services.pool.fetchval("SELECT count(*) FROM webhook_endpoints") == 0
    status, endpoint = await register(w, "https://93.184.215.14/hooks")  # a public address
    assert status == 201, endpoint


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_refused_targets_at_delivery_time(api, jwe_key, receiver, host):
    """Registered while allowed (as a name might resolve publicly then), refused when sent: an
    address host by the URL check, a name by the resolver the connection uses (DNS rebinding)."""
    allow_private(api)
    w = await World().setup(api, jwe_key)
    url = receiver.url.replace("http://127.0.0.1", f"https://{host}")
    _, endpoint = await register(w, url, [events.CARD_ISSUED])
    allow_private(api, False)
    await w.virtual()
    assert await deliver_due(api.services) == 1
    assert receiver.received == []
    _, log = await call(w, "GET", f"/secure/webhooks/{endpoint['endpointId']}/deliveries")
    (delivery,) = log["items"]
    assert delivery["state"] == "PENDING" and "loopback" in delivery["lastError"]


async def test_the_partners_alert_webhook_secret_is_sealed_too(api, jwe_key):
    from antaca_api.partners import open_secret, seal_clear_secrets
    from tests.api_harness import bearer

    admin = await api.admin_token()
    async with api.client().post(f"{api.http}/admin/partners", headers=bearer(admin), json={
            "name": "Acme", "webhookUrl": "https://93.184.215.14/alerts"}) as r:
        assert r.status == 201
        created = await r.json()
    partner_id, keys, pool = uuid.UUID(created["id"]), api.services.card_keys, api.services.pool

    async def stored() -> tuple[str | None, bytes]:
        row = await pool.fetchrow(
            "SELECT webhook_secret, webhook_secret_sealed FROM partners WHERE id = $1", partner_id)
        return row["webhook_secret"], row["webhook_secret_sealed"]

    clear, sealed = await stored()
    assert clear is None and created["webhookSecret"].encode() not in sealed
    assert open_secret(keys, partner_id, sealed) == created["webhookSecret"]
    async with api.client().post(f"{api.http}/admin/partners/{partner_id}/webhook-secret",
                                 headers=bearer(admin)) as r:
        rotated = (await r.json())["webhookSecret"]
    assert open_secret(keys, partner_id, (await stored())[1]) == rotated != created["webhookSecret"]
    # A secret written in clear before sql/0024 is sealed when the service starts.
    await pool.execute("UPDATE partners SET webhook_secret = 'whsec_old', "
                       "webhook_secret_sealed = NULL WHERE id = $1", partner_id)
    assert await seal_clear_secrets(pool, keys) == 1
    clear, sealed = await stored()
    assert clear is None and open_secret(keys, partner_id, sealed) == "whsec_old"
    assert await seal_clear_secrets(pool, keys) == 0


async def test_old_deliveries_and_events_are_pruned(api, jwe_key, receiver):
    from antaca_api.webhook_delivery import prune

    allow_private(api)
    w = await World().setup(api, jwe_key)
    await register(w, receiver.url, [events.CARD_ISSUED])
    await w.virtual()
    assert await deliver_due(api.services) == 1
    receiver.status = 500
    await w.virtual()
    assert await deliver_due(api.services) == 1  # this one stays PENDING
    pool, real_clock = api.services.pool, api.services.clock
    counts = "SELECT (SELECT count(*) FROM webhook_deliveries), (SELECT count(*) FROM events)"
    before = tuple(await pool.fetchrow(counts))
    try:
        api.services.clock = lambda: real_clock() + timedelta(days=29)
        assert await prune(api.services) == 0
        api.services.clock = lambda: real_clock() + timedelta(
            days=webhooks.DELIVERY_LOG_RETENTION_DAYS + 1)
        assert await prune(api.services) == 1  # the SENT delivery and its attempt
        assert tuple(await pool.fetchrow(counts)) == (before[0] - 1, before[1])
        assert await pool.fetchval("SELECT count(*) FROM webhook_attempts") == 1
        api.services.clock = lambda: real_clock() + timedelta(days=events.EVENT_RETENTION_DAYS + 1)
        assert await prune(api.services) == before[1] - 1  # all but the one still being sent
    finally:
        api.services.clock = real_clock
    assert await pool.fetchval("SELECT count(*) FROM events") == 1


async def test_a_secret_that_does_not_open_is_never_sent_unsigned(api, jwe_key, receiver):
    allow_private(api)
    w = await World().setup(api, jwe_key)
    _, endpoint = await register(w, receiver.url, [events.CARD_ISSUED])
    await api.services.pool.execute(  # sealed under other card keys, or altered
        "UPDATE webhook_endpoints SET secret = $2 WHERE id = $1", uuid.UUID(endpoint["endpointId"]),
        webhooks.new_secret())
    await w.virtual()
    assert await deliver_due(api.services) == 1
    assert receiver.received == []
    _, log = await call(w, "GET", f"/secure/webhooks/{endpoint['endpointId']}/deliveries")
    assert "cannot be opened" in log["items"][0]["lastError"]


async def test_an_authorization_reaches_the_partners_webhook(api, jwe_key, receiver):
    from tests.integration.test_authorizations import Payments

    allow_private(api)
    p = await Payments().setup(api, jwe_key)
    _, endpoint = await register(p.w, receiver.url, [events.AUTHORIZATION_APPROVED])
    answers = await asyncio.gather(*(p.authorize(amount=100 + n) for n in range(5)))
    assert await api.services.pool.fetchval("SELECT count(*) FROM webhook_deliveries") == 5
    assert await deliver_due(api.services) == 5
    messages = [verified(endpoint["secret"], h, b) for h, b in receiver.received]
    assert sorted(m["objectId"] for m in messages) == sorted(a["authorizationId"] for a in answers)
    assert {m["type"] for m in messages} == {events.AUTHORIZATION_APPROVED}
    assert all(p.card["pan"] not in json.dumps(m) for m in messages)
