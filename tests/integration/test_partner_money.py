"""Partners' money end to end: deposit and credit balances over the admin and partner APIs, the DEPOSIT
model running out and recovering, CREDIT-model top-ups, and low-balance alerts sent once per crossing
to a real SMTP server and a real webhook receiver."""

from __future__ import annotations

import dataclasses
import json
import uuid

import msgspec
import pytest

from antaca_api.notifications import deliver_due
from antaca_auth.verify import verify_ledger
from tests.api_harness import bearer
from tests.integration.test_authorizations import Payments
from tests.integration.test_notifications import receiver, smtp  # noqa: F401  (fixtures)


@pytest.fixture(scope="module")
def jwe_key():
    from joserfc.jwk import RSAKey

    return RSAKey.generate_key(2048)


async def ledger_clean(api) -> None:
    async with api.services.pool.acquire() as conn:
        assert await verify_ledger(conn) == []


async def admin_call(p: Payments, method: str, path: str, body=None):
    async with p.api.client().request(method, f"{p.api.http}{path}", json=body, headers=bearer(p.w.admin)) as r:
        return r.status, await r.json()


async def partner_balance(p: Payments, kind: str) -> dict:
    status, listed = await admin_call(p, "GET", f"/admin/partners/{p.w.partner_id}/balances")
    assert status == 200
    (balance,) = [b for b in listed["items"] if b["kind"] == kind]
    return balance


async def test_admin_creates_reads_and_reloads_partner_balances_idempotently(api, jwe_key):
    p = await Payments().setup(api, jwe_key, deposit=0)
    base = f"/admin/partners/{p.w.partner_id}/balances"
    status, credit = await admin_call(p, "POST", base, {"kind": "CREDIT", "currency": "EUR",
                                                          "lowBalanceThreshold": 500})
    assert status == 201 and credit["posted"] == 0 and credit["lowBalanceThreshold"] == 500
    assert (await admin_call(p, "POST", base, {"kind": "CREDIT", "currency": "EUR"}))[0] == 409
    assert (await admin_call(p, "POST", base, {"kind": "CREDIT", "currency": "XXZ"}))[1]["code"] == \
        "UNSUPPORTED_CURRENCY"

    reload = {"amount": 7_500, "bankReference": "SEPA-2026-11-25-001"}
    status, first = await admin_call(p, "POST", f"{base}/{credit['balanceId']}/reload", reload)
    assert status == 200 and not first["replayed"] and first["balance"]["posted"] == 7_500
    status, again = await admin_call(p, "POST", f"{base}/{credit['balanceId']}/reload", reload)
    assert status == 200 and again["replayed"] and again["balance"]["posted"] == 7_500
    status, conflict = await admin_call(p, "POST", f"{base}/{credit['balanceId']}/reload",
                                        {**reload, "amount": 1})
    assert status == 409 and conflict["code"] == "IDEMPOTENCY_CONFLICT"
    status, bad = await admin_call(p, "POST", f"{base}/{credit['balanceId']}/reload", {**reload, "amount": -5})
    assert status == 400

    # The partner reads its own; another partner sees none of them and cannot read them by id.
    async with p.w.partner.get(f"{api.https}/secure/partner/balances") as r:
        mine = (await r.json())["items"]
    assert {(b["kind"], b["posted"]) for b in mine} == {("DEPOSIT", 0), ("CREDIT", 7_500)}
    _, other = await api.partner(p.w.admin)
    async with other.get(f"{api.https}/secure/partner/balances") as r:
        assert (await r.json())["items"] == []
    other_id = (await admin_call(p, "GET", "/admin/partners"))[1]["items"][-1]["id"]
    assert (await admin_call(p, "GET", f"/admin/partners/{other_id}/balances/{credit['balanceId']}"))[0] == 404
    # An employee can read but not reload.
    employee = await api.admin_token(role="EMPLOYEE")
    async with api.client().post(f"{api.http}{base}/{credit['balanceId']}/reload", headers=bearer(employee),
                                 json={"amount": 1, "bankReference": "x"}) as r:
        assert r.status == 403
    await ledger_clean(api)


async def test_deposit_runs_out_then_an_admin_reload_lets_authorizations_through(api, jwe_key):
    p = await Payments().setup(api, jwe_key, user_funds=10_000, deposit=2_500)
    assert (await p.authorize(amount=2_000))["decision"] == "APPROVED"
    declined = await p.authorize(amount=1_000)
    assert (declined["decision"], declined["responseCode"], declined["reason"]) == \
        ("DECLINED", "51", "INSUFFICIENT_PARTNER_DEPOSIT")
    deposit = await partner_balance(p, "DEPOSIT")
    assert deposit["available"] == 500
    status, _ = await admin_call(p, "POST", f"/admin/partners/{p.w.partner_id}/balances/{deposit['balanceId']}/reload",
                                 {"amount": 5_000, "bankReference": "wire-42"})
    assert status == 200
    assert (await p.authorize(amount=1_000))["decision"] == "APPROVED"
    assert (await partner_balance(p, "DEPOSIT"))["available"] == 4_500
    await ledger_clean(api)


async def test_credit_model_top_up_charges_the_partner_credit_and_fails_when_it_is_empty(api, jwe_key):
    p = await Payments().setup(api, jwe_key, user_funds=3_000, funding_model="CREDIT")
    credit = await partner_balance(p, "CREDIT")
    assert credit["posted"] == 0  # the initial 3,000 top-up consumed it all
    url = f"{api.https}/secure/customers/{p.w.cid}/balances/{p.w.balance}/reload"
    async with p.w.partner.post(url, json={"amount": 1, "reference": "more"}) as r:
        assert r.status == 409
        assert (await r.json())["code"] == "INSUFFICIENT_PARTNER_CREDIT"
    async with p.w.partner.get(f"{api.https}/secure/customers/{p.w.cid}/balances/{p.w.balance}") as r:
        assert (await r.json())["posted"] == 3_000  # nothing moved
    await admin_call(p, "POST", f"/admin/partners/{p.w.partner_id}/balances/{credit['balanceId']}/reload",
                     {"amount": 1_000, "bankReference": "wire-1"})
    async with p.w.partner.post(url, json={"amount": 600, "reference": "more"}) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["balance"]["posted"] == 3_600
    assert (await partner_balance(p, "CREDIT"))["posted"] == 400
    # The authorization then holds only user funds: the credit balance does not move.
    assert (await p.authorize(amount=3_000))["decision"] == "APPROVED"
    assert (await partner_balance(p, "CREDIT"))["posted"] == 400
    await ledger_clean(api)


async def test_credit_model_without_a_credit_balance_refuses_top_ups(api, jwe_key):
    p = await Payments().setup(api, jwe_key)
    async with api.services.pool.acquire() as conn:
        await conn.execute("UPDATE card_programs SET funding_model = 'CREDIT' WHERE id = $1",
                           uuid.UUID(p.w.program["programId"]))
    async with p.w.partner.post(f"{api.https}/secure/customers/{p.w.cid}/balances/{p.w.balance}/reload",
                                json={"amount": 5, "reference": "r"}) as r:
        assert r.status == 409 and (await r.json())["code"] == "PARTNER_CREDIT_BALANCE_MISSING"


async def test_one_email_and_one_signed_webhook_per_threshold_crossing(api, jwe_key, smtp, receiver):  # noqa: F811
    p = await Payments().setup(api, jwe_key, user_funds=50_000, deposit=10_000)
    host, port, inbox = smtp
    _, contact = await admin_call(p, "PUT", f"/admin/partners/{p.w.partner_id}/contact",
                                  {"contactEmail": "finance@partner.example", "webhookUrl": receiver.url})
    assert contact["webhookUrl"] == receiver.url
    _, rotated = await admin_call(p, "POST", f"/admin/partners/{p.w.partner_id}/webhook-secret")
    receiver.secret = rotated["webhookSecret"]
    deposit = await partner_balance(p, "DEPOSIT")
    base = f"/admin/partners/{p.w.partner_id}/balances/{deposit['balanceId']}"
    status, _ = await admin_call(p, "PUT", f"{base}/threshold", {"lowBalanceThreshold": 6_000})
    assert status == 200
    services = dataclasses.replace(api.services, settings=msgspec.structs.replace(
        api.services.settings, smtp_host=host, smtp_port=port))

    # 10,000 -> 7,000 (above) -> 5,000 (crossing) -> 4,000 -> 3,000: one alert.
    for amount in (3_000, 2_000, 1_000, 1_000):
        assert (await p.authorize(amount=amount))["decision"] == "APPROVED"
    assert await deliver_due(services) == 2
    assert await deliver_due(services) == 0
    assert len(inbox.messages) == 1 and len(receiver.received) == 1
    sender, recipients, message = inbox.messages[0]
    assert recipients == ["finance@partner.example"]
    assert "deposit" in message["Subject"].lower() and "EUR" in message["Subject"]
    assert receiver.received[0]["verified"]
    event = json.loads(receiver.received[0]["body"])
    assert (event["type"], event["kind"], event["threshold"], event["available"], event["balanceId"]) == \
        ("partner.balance.low", "DEPOSIT", 6_000, 5_000, deposit["balanceId"])
    assert (await partner_balance(p, "DEPOSIT"))["belowThreshold"]

    # A reload above the threshold re-arms it; the next crossing alerts once more.
    await admin_call(p, "POST", f"{base}/reload", {"amount": 4_000, "bankReference": "top-up-1"})
    assert not (await partner_balance(p, "DEPOSIT"))["belowThreshold"]
    assert (await p.authorize(amount=2_000))["decision"] == "APPROVED"  # 7,000 -> 5,000
    assert (await p.authorize(amount=100))["decision"] == "APPROVED"
    assert await deliver_due(services) == 2
    assert len(inbox.messages) == 2 and len(receiver.received) == 2
    assert all(r["verified"] for r in receiver.received)
    # The delivery log is visible to admins.
    status, alerts = await admin_call(p, "GET", f"/admin/partners/{p.w.partner_id}/alerts")
    assert status == 200 and len(alerts["items"]) == 2
    assert all(d["state"] == "SENT" for a in alerts["items"] for d in a["deliveries"])


async def test_a_reload_that_stays_below_the_threshold_does_not_rearm(api, jwe_key):
    p = await Payments().setup(api, jwe_key, user_funds=50_000, deposit=10_000)
    deposit = await partner_balance(p, "DEPOSIT")
    base = f"/admin/partners/{p.w.partner_id}/balances/{deposit['balanceId']}"
    await admin_call(p, "PUT", f"{base}/threshold", {"lowBalanceThreshold": 8_000})
    assert (await p.authorize(amount=5_000))["decision"] == "APPROVED"  # 5,000: crossed
    await admin_call(p, "POST", f"{base}/reload", {"amount": 1_000, "bankReference": "small"})  # 6,000: still below
    assert (await p.authorize(amount=500))["decision"] == "APPROVED"
    count = await api.services.pool.fetchval("SELECT count(*) FROM partner_alerts WHERE account_id = $1",
                                             uuid.UUID(deposit["balanceId"]))
    assert count == 1
