"""The low-balance alert worker against a real SMTP server (aiosmtpd) and a real webhook receiver.

Alerts and deliveries are inserted with SQL as the threshold crossing writes them; the worker is
driven pass by pass with `now` pushed forward instead of sleeping through backoffs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from antaca_api.balances import partner_account
from antaca_api.notifications import (
    BACKOFF_CAP,
    LEASE,
    backoff,
    claim_due,
    deliver_due,
    format_amount,
    sign,
    verify_signature,
)
from antaca_api.routing import Role
from antaca_api.services import Services
from antaca_api.settings import Settings
from antaca_auth.accounts import AccountKind
from antaca_auth.ledger import Ledger
from tests.api_harness import bearer, free_port

SECRET = "whsec_test_3f9a"
LATER = timedelta(hours=2)  # past any backoff (capped at an hour) and any lease


# --- a real SMTP server and a real webhook receiver -------------------------------------------
class Inbox:
    """aiosmtpd handler keeping every accepted message."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


@pytest.fixture
async def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    await asyncio.to_thread(controller.start)
    yield controller.hostname, controller.port, inbox
    await asyncio.to_thread(controller.stop)


@dataclass
class Receiver:
    url: str
    secret: str = SECRET
    statuses: list[int] = field(default_factory=list)  # answers to give, in order; then 200
    received: list[dict] = field(default_factory=list)


@pytest.fixture
async def receiver():
    state = Receiver(url="")

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        verified = verify_signature(state.secret, request.headers.get("X-Antaca-Signature", ""), body)
        state.received.append({"headers": dict(request.headers), "body": body, "verified": verified})
        if not verified:
            return web.Response(status=401)
        return web.Response(status=state.statuses.pop(0) if state.statuses else 200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    state.url = f"http://127.0.0.1:{port}/hook"
    yield state
    await runner.cleanup()


def services_for(pool, smtp=None, **settings) -> Services:
    smtp_settings = {"smtp_host": smtp[0], "smtp_port": smtp[1]} if smtp else {}
    return Services(pool=pool, ledger=Ledger(pool), settings=Settings(**smtp_settings, **settings), jwe_key=None)


@dataclass
class Seeded:
    partner_id: uuid.UUID
    account_id: uuid.UUID
    alert_ids: list[int]
    deliveries: dict[str, list[int]]  # channel -> delivery ids, one per alert


async def seed(pool, *, email_to: str | None = "ops@partner.example", webhook_url: str | None = None,
               secret: str | None = SECRET, alerts: int = 1, currency: str = "EUR",
               kind: AccountKind = AccountKind.PARTNER_DEPOSIT, name: str = "Acme Payments") -> Seeded:
    """A partner, its balance with a threshold, and alerts with their deliveries, as a crossing writes them."""
    partner_id = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO partners (id, name, contact_email, webhook_url, webhook_secret) VALUES ($1, $2, $3, $4, $5)",
            partner_id, name, email_to, webhook_url, secret,
        )
        account_id = await partner_account(conn, Ledger(pool), partner_id, currency, kind)
        await conn.execute("UPDATE partner_accounts SET low_balance_threshold = 10000, below_threshold = true "
                           "WHERE account_id = $1", account_id)
        alert_ids, deliveries = [], {"EMAIL": [], "WEBHOOK": []}
        for _ in range(alerts):
            alert_id = await conn.fetchval(
                """INSERT INTO partner_alerts (partner_id, account_id, kind, currency, threshold, available)
                   VALUES ($1, $2, $3, $4, 10000, 9950) RETURNING id""",
                partner_id, account_id, str(kind), currency,
            )
            alert_ids.append(alert_id)
            for channel, target in (("EMAIL", email_to), ("WEBHOOK", webhook_url)):
                if target is not None:
                    deliveries[channel].append(await conn.fetchval(
                        "INSERT INTO alert_deliveries (alert_id, channel, target) VALUES ($1, $2, $3) RETURNING id",
                        alert_id, channel, target,
                    ))
    return Seeded(partner_id, account_id, alert_ids, deliveries)


async def delivery(pool, delivery_id: int) -> dict:
    return dict(await pool.fetchrow("SELECT * FROM alert_deliveries WHERE id = $1", delivery_id))


async def attempts(pool, delivery_id: int) -> list[dict]:
    rows = await pool.fetch("SELECT * FROM alert_delivery_attempts WHERE delivery_id = $1 ORDER BY attempt",
                            delivery_id)
    return [dict(r) for r in rows]


async def db_now(pool) -> datetime:
    return await pool.fetchval("SELECT now()")


# --- pure parts -----------------------------------------------------------------------------
def test_amounts_are_formatted_with_the_currency_exponent():
    assert format_amount(12345, 2) == "123.45"
    assert format_amount(5, 2) == "0.05"
    assert format_amount(0, 3) == "0.000"
    assert format_amount(-150, 2) == "-1.50"
    assert format_amount(1500, 0) == "1500"
    assert format_amount(12345678, 4) == "1234.5678"


def test_backoff_doubles_from_the_base_and_is_capped():
    assert [backoff(n, 1.0) for n in range(1, 6)] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert backoff(3, 0.25) == 1.0
    assert backoff(13, 1.0) == BACKOFF_CAP and backoff(10_000, 1.0) == BACKOFF_CAP


def test_signatures_verify_only_with_the_right_secret_body_and_time():
    body = b'{"type":"partner.balance.low"}'
    header = sign(SECRET, 1_700_000_000, body)
    assert header.startswith("t=1700000000,v1=") and len(header.split("v1=")[1]) == 64
    assert verify_signature(SECRET, header, body, tolerance_s=300, now=1_700_000_100)
    assert not verify_signature("another secret", header, body, tolerance_s=300, now=1_700_000_100)
    assert not verify_signature(SECRET, header, body + b" ", tolerance_s=300, now=1_700_000_100)
    assert not verify_signature(SECRET, header, body, tolerance_s=300, now=1_700_000_301)  # replayed later
    # The timestamp is signed: moving it forward breaks the signature.
    forged = header.replace("t=1700000000", "t=1700000290")
    assert not verify_signature(SECRET, forged, body, tolerance_s=300, now=1_700_000_300)
    # Several v1 values (a secret being rotated): one match is enough.
    rotated = f"{header},v1={'0' * 64}"
    assert verify_signature(SECRET, rotated, body, tolerance_s=300, now=1_700_000_000)
    for malformed in ("", "t=,v1=", "v1=abc", "t=1700000000", "t=17e8,v1=00", "garbage", "t=1700000000,v1=é"):
        assert not verify_signature(SECRET, malformed, body, tolerance_s=300, now=1_700_000_000)


# --- the worker -----------------------------------------------------------------------------
async def test_both_channels_are_delivered_once_with_content_and_signature(pool, smtp, receiver):
    services = services_for(pool, smtp)
    seeded = await seed(pool, webhook_url=receiver.url)
    [email_id], [webhook_id] = seeded.deliveries["EMAIL"], seeded.deliveries["WEBHOOK"]

    assert await deliver_due(services) == 2
    assert await deliver_due(services) == 0  # nothing is due any more

    [(mail_from, rcpt_tos, message)] = smtp[2].messages
    assert mail_from == "alerts@antaca.local" and rcpt_tos == ["ops@partner.example"]
    assert message["Subject"] == "Antaca: low deposit balance (EUR)"
    assert message["X-Antaca-Delivery"] == str(email_id)
    text = message.get_content()
    for expected in ("Acme Payments", str(seeded.partner_id), "DEPOSIT", "Threshold:  100.00 EUR",
                     "Available:  99.50 EUR"):
        assert expected in text, text

    [hook] = receiver.received
    assert hook["verified"]
    assert hook["headers"]["Content-Type"] == "application/json"
    assert hook["headers"]["X-Antaca-Delivery"] == str(webhook_id)
    event = json.loads(hook["body"])
    occurred_at = datetime.fromisoformat(event.pop("occurredAt"))
    assert event == {"type": "partner.balance.low", "alertId": seeded.alert_ids[0], "deliveryId": webhook_id,
                     "partnerId": str(seeded.partner_id), "balanceId": str(seeded.account_id), "kind": "DEPOSIT",
                     "currency": "EUR", "threshold": 10000, "available": 9950}
    created_at = await pool.fetchval("SELECT created_at FROM partner_alerts WHERE id = $1", seeded.alert_ids[0])
    assert occurred_at == created_at

    for delivery_id, code in ((email_id, 250), (webhook_id, 200)):
        row = await delivery(pool, delivery_id)
        assert row["state"] == "SENT" and row["sent_at"] is not None and row["attempts"] == 1
        assert row["last_error"] is None
        [attempt] = await attempts(pool, delivery_id)
        assert (attempt["attempt"], attempt["ok"], attempt["status_code"], attempt["error"]) == (1, True, code, None)


async def test_amounts_use_the_currency_exponent_and_credit_kind(pool, smtp, receiver):
    services = services_for(pool, smtp)
    await seed(pool, webhook_url=receiver.url, currency="KWD", kind=AccountKind.PARTNER_CREDIT)
    assert await deliver_due(services) == 2
    [(_, _, message)] = smtp[2].messages
    assert message["Subject"] == "Antaca: low credit balance (KWD)"
    assert "Threshold:  10.000 KWD" in message.get_content() and "Available:  9.950 KWD" in message.get_content()
    assert json.loads(receiver.received[0]["body"])["kind"] == "CREDIT"


async def test_a_failing_receiver_is_retried_with_growing_backoff_until_sent(pool, receiver):
    services = services_for(pool, alert_backoff_base=0.5)
    seeded = await seed(pool, email_to=None, webhook_url=receiver.url)
    [webhook_id] = seeded.deliveries["WEBHOOK"]
    receiver.statuses = [500, 500]
    start = await db_now(pool)

    waits = []
    for n in range(1, 4):
        now = start + n * LATER
        assert await deliver_due(services, now=now) == 1
        row = await delivery(pool, webhook_id)
        if n < 3:
            assert row["state"] == "PENDING" and row["attempts"] == n and row["last_error"] == "HTTP 500"
            waits.append((row["next_attempt_at"] - now).total_seconds())
            # Not due before its backoff is over.
            assert await deliver_due(services, now=row["next_attempt_at"] - timedelta(milliseconds=1)) == 0
    assert waits == [0.5, 1.0]

    row = await delivery(pool, webhook_id)
    assert row["state"] == "SENT" and row["attempts"] == 3 and row["sent_at"] == start + 3 * LATER
    log = [(a["attempt"], a["ok"], a["status_code"], a["error"]) for a in await attempts(pool, webhook_id)]
    assert log == [(1, False, 500, "HTTP 500"), (2, False, 500, "HTTP 500"), (3, True, 200, None)]
    assert len(receiver.received) == 3 and all(r["verified"] for r in receiver.received)
    assert {r["headers"]["X-Antaca-Delivery"] for r in receiver.received} == {str(webhook_id)}


async def test_a_permanently_failing_target_goes_failed_after_max_attempts(pool):
    services = services_for(pool, alert_backoff_base=0.01, alert_max_attempts=3)
    closed = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    seeded = await seed(pool, email_to=None, webhook_url=closed)
    [webhook_id] = seeded.deliveries["WEBHOOK"]
    start = await db_now(pool)

    for n in range(1, 4):
        assert await deliver_due(services, now=start + n * LATER) == 1
    assert await deliver_due(services, now=start + 10 * LATER) == 0  # given up: never claimed again

    row = await delivery(pool, webhook_id)
    assert row["state"] == "FAILED" and row["attempts"] == 3 and row["sent_at"] is None
    assert row["last_error"].startswith("connection error")
    log = await attempts(pool, webhook_id)
    assert [(a["attempt"], a["ok"], a["status_code"]) for a in log] == [(1, False, None), (2, False, None),
                                                                       (3, False, None)]


async def test_max_attempts_can_be_given_per_pass(pool):
    services = services_for(pool, alert_max_attempts=10)
    seeded = await seed(pool, email_to=None, webhook_url=f"http://127.0.0.1:{free_port()}/hook")
    assert await deliver_due(services, max_attempts=1) == 1
    assert (await delivery(pool, seeded.deliveries["WEBHOOK"][0]))["state"] == "FAILED"


async def test_a_wrong_secret_fails_the_receivers_verification(pool, receiver):
    services = services_for(pool)
    seeded = await seed(pool, email_to=None, webhook_url=receiver.url, secret="not the partner's real secret")
    [webhook_id] = seeded.deliveries["WEBHOOK"]

    assert await deliver_due(services) == 1
    [hook] = receiver.received
    assert not hook["verified"]
    assert not verify_signature(SECRET, hook["headers"]["X-Antaca-Signature"], hook["body"])
    assert verify_signature("not the partner's real secret", hook["headers"]["X-Antaca-Signature"], hook["body"])
    row = await delivery(pool, webhook_id)
    assert row["state"] == "PENDING" and row["last_error"] == "HTTP 401"
    [attempt] = await attempts(pool, webhook_id)
    assert not attempt["ok"] and attempt["status_code"] == 401


async def test_a_partner_without_a_webhook_secret_is_never_sent_unsigned(pool, receiver):
    services = services_for(pool)
    seeded = await seed(pool, email_to=None, webhook_url=receiver.url, secret=None)
    [webhook_id] = seeded.deliveries["WEBHOOK"]
    assert await deliver_due(services) == 1
    assert receiver.received == []
    row = await delivery(pool, webhook_id)
    assert row["state"] == "PENDING" and row["last_error"] == "the partner has no webhook secret"
    [attempt] = await attempts(pool, webhook_id)
    assert (attempt["ok"], attempt["status_code"], attempt["error"]) == (False, None,
                                                                         "the partner has no webhook secret")


async def test_concurrent_passes_send_each_delivery_once(pool, smtp, receiver):
    services = services_for(pool, smtp)
    seeded = await seed(pool, webhook_url=receiver.url, alerts=6)

    async def worker() -> int:
        # Small claims, so the workers' claims interleave and meet each other's row locks.
        total = 0
        while attempted := await deliver_due(services, limit=2):
            total += attempted
        return total

    counts = await asyncio.gather(*(worker() for _ in range(4)))
    assert sum(counts) == 12 and sum(1 for c in counts if c) > 1

    assert len(smtp[2].messages) == 6
    assert sorted(m["X-Antaca-Delivery"] for _, _, m in smtp[2].messages) == sorted(
        str(d) for d in seeded.deliveries["EMAIL"])
    assert sorted(r["headers"]["X-Antaca-Delivery"] for r in receiver.received) == sorted(
        str(d) for d in seeded.deliveries["WEBHOOK"])
    states = await pool.fetch("SELECT state, attempts FROM alert_deliveries")
    assert {(r["state"], r["attempts"]) for r in states} == {("SENT", 1)}
    assert await pool.fetchval("SELECT count(*) FROM alert_delivery_attempts") == 12


async def test_a_claim_that_never_finishes_is_retried_after_its_lease(pool, smtp, receiver):
    services = services_for(pool, smtp)
    seeded = await seed(pool, webhook_url=receiver.url)
    now = await db_now(pool)

    claimed = await claim_due(pool, limit=50, now=now)  # a worker claims, then dies before sending
    assert len(claimed) == 2 and "webhook_secret" not in repr(claimed[0])
    assert await deliver_due(services, now=now + LEASE - timedelta(seconds=1)) == 0  # still leased

    assert await deliver_due(services, now=now + LEASE + timedelta(seconds=1)) == 2
    assert len(smtp[2].messages) == 1 and len(receiver.received) == 1
    for delivery_id in seeded.deliveries["EMAIL"] + seeded.deliveries["WEBHOOK"]:
        row = await delivery(pool, delivery_id)
        assert row["state"] == "SENT" and row["attempts"] == 1


async def test_without_smtp_the_email_attempt_fails_and_stays_pending(pool):
    services = services_for(pool, alert_backoff_base=2.0)
    seeded = await seed(pool, webhook_url=None)
    [email_id] = seeded.deliveries["EMAIL"]
    now = await db_now(pool)

    assert await deliver_due(services, now=now) == 1
    row = await delivery(pool, email_id)
    assert row["state"] == "PENDING" and row["attempts"] == 1 and row["last_error"] == "SMTP is not configured"
    assert row["next_attempt_at"] == now + timedelta(seconds=2)
    [attempt] = await attempts(pool, email_id)
    assert (attempt["ok"], attempt["status_code"], attempt["error"]) == (False, None, "SMTP is not configured")


async def test_an_smtp_server_that_is_down_is_a_failed_attempt(pool):
    services = services_for(pool, ("127.0.0.1", free_port()))
    seeded = await seed(pool, webhook_url=None)
    assert await deliver_due(services) == 1
    row = await delivery(pool, seeded.deliveries["EMAIL"][0])
    assert row["state"] == "PENDING" and row["last_error"].startswith("SMTP error")


# --- the admin view -------------------------------------------------------------------------
async def test_admin_sees_alerts_newest_first_with_deliveries_and_their_log(api, smtp, receiver):
    pool = api.services.pool
    services = dataclasses.replace(api.services, settings=Settings(smtp_host=smtp[0], smtp_port=smtp[1]))
    seeded = await seed(pool, webhook_url=receiver.url, alerts=2)
    other = await seed(pool, webhook_url=receiver.url)  # another partner's alert is not listed
    receiver.statuses = [503]
    now = await db_now(pool)
    assert await deliver_due(services, now=now) == 6
    assert await deliver_due(services, now=now + LATER) == 1  # the webhook that got the 503

    token = await api.admin_token(Role.EMPLOYEE)  # any administrator may read it
    client = api.client()
    async with client.get(f"{api.http}/admin/partners/{seeded.partner_id}/alerts", headers=bearer(token)) as r:
        assert r.status == 200, await r.text()
        page = await r.json()
    assert [a["id"] for a in page["items"]] == sorted(seeded.alert_ids, reverse=True)
    assert page["nextCursor"] is None
    assert other.alert_ids[0] not in [a["id"] for a in page["items"]]
    first = page["items"][0]
    assert {k: first[k] for k in ("partnerId", "balanceId", "kind", "currency", "threshold", "available")} == {
        "partnerId": str(seeded.partner_id), "balanceId": str(seeded.account_id), "kind": "DEPOSIT",
        "currency": "EUR", "threshold": 10000, "available": 9950}
    logs = {}
    for alert in page["items"]:
        assert [d["channel"] for d in alert["deliveries"]] == ["EMAIL", "WEBHOOK"]
        for d in alert["deliveries"]:
            assert d["state"] == "SENT" and d["attempts"] == len(d["log"]) and d["sentAt"]
            logs[d["id"]] = [(a["attempt"], a["ok"], a["statusCode"], a["error"]) for a in d["log"]]
    retried = [log for log in logs.values() if len(log) == 2]
    assert retried == [[(1, False, 503, "HTTP 503"), (2, True, 200, None)]]
    assert sorted(len(log) for log in logs.values()) == [1, 1, 1, 2]

    async with client.get(f"{api.http}/admin/partners/{seeded.partner_id}/alerts?limit=1",
                          headers=bearer(token)) as r:
        first_page = await r.json()
    async with client.get(f"{api.http}/admin/partners/{seeded.partner_id}/alerts?limit=1&cursor="
                          f"{first_page['nextCursor']}", headers=bearer(token)) as r:
        second_page = await r.json()
    assert [a["id"] for a in first_page["items"] + second_page["items"]] == sorted(seeded.alert_ids, reverse=True)

    async with client.get(f"{api.http}/admin/partners/{uuid.uuid4()}/alerts", headers=bearer(token)) as r:
        assert r.status == 404 and (await r.json())["code"] == "NOT_FOUND"
    async with client.get(f"{api.http}/admin/partners/{seeded.partner_id}/alerts") as r:
        assert r.status == 401
    async with client.get(f"{api.http}/admin/partners/{seeded.partner_id}/alerts?limit=0",
                          headers=bearer(token)) as r:
        assert r.status == 400
