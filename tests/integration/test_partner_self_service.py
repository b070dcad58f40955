"""Partner self-service over the partner channel: its own deposit or credit balance (with the
optional admin approval), its level, its statement reconciling with the ledger, its own
low-balance threshold and alert e-mails."""

from __future__ import annotations

import uuid

import msgspec
import pytest

from tests.api_harness import bearer
from tests.integration.test_authorizations import Payments
from tests.integration.test_partner_money import admin_call, ledger_clean


@pytest.fixture(scope="module")
def jwe_key():
    from joserfc.jwk import RSAKey

    return RSAKey.generate_key(2048)


async def partner_call(p: Payments, method: str, path: str, body=None):
    async with p.w.partner.request(method, f"{p.api.https}{path}", json=body) as r:
        return r.status, await r.json()


async def whole_statement(p: Payments, balance_id, limit: int) -> tuple[list[dict], dict, int]:
    """Every line of the statement, page by page: (lines, the balance, how many pages)."""
    lines, cursor, pages = [], None, 0
    while True:
        query = f"?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        status, page = await partner_call(
            p, "GET", f"/secure/partner/balances/{balance_id}/statement{query}")
        assert status == 200, page
        lines += page["items"]
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            return lines, page["balance"], pages


async def test_partner_opens_its_own_balance_for_a_program_currency(api, jwe_key):
    p = await Payments().setup(api, jwe_key, deposit=0)
    status, credit = await partner_call(p, "POST", "/secure/partner/balances",
                                        {"kind": "CREDIT", "currency": "EUR",
                                         "lowBalanceThreshold": 300})
    assert status == 201, credit
    assert (credit["kind"], credit["posted"], credit["approval"]) == ("CREDIT", 0, "APPROVED")
    assert credit["lowBalanceThreshold"] == 300
    status, again = await partner_call(p, "POST", "/secure/partner/balances",
                                       {"kind": "CREDIT", "currency": "EUR"})
    assert (status, again["code"]) == (409, "PARTNER_BALANCE_EXISTS")
    status, usd = await partner_call(p, "POST", "/secure/partner/balances",
                                     {"kind": "DEPOSIT", "currency": "USD"})
    assert (status, usd["code"]) == (409, "NO_PROGRAM_IN_CURRENCY")
    status, level = await partner_call(p, "GET", f"/secure/partner/balances/{credit['balanceId']}")
    assert status == 200 and level == credit
    # Another partner's balance answers exactly like one that does not exist.
    _, other = await api.partner(p.w.admin)
    async with other.get(f"{api.https}/secure/partner/balances/{credit['balanceId']}") as r:
        body = await r.json()
        foreign = (r.status, body["code"], body["message"])
    async with other.get(f"{api.https}/secure/partner/balances/{uuid.uuid4()}") as r:
        body = await r.json()
        assert (r.status, body["code"], body["message"]) == foreign and foreign[0] == 404
    await ledger_clean(api)


async def test_with_approval_required_a_new_balance_takes_no_reload_until_approved(api, jwe_key):
    p = await Payments().setup(api, jwe_key, deposit=0)
    settings = api.services.settings
    api.services.settings = msgspec.structs.replace(settings, partner_balance_approval=True)
    try:
        status, credit = await partner_call(p, "POST", "/secure/partner/balances",
                                            {"kind": "CREDIT", "currency": "EUR"})
    finally:
        api.services.settings = settings
    assert status == 201 and credit["approval"] == "PENDING"
    base = f"/admin/partners/{p.w.partner_id}/balances/{credit['balanceId']}"
    status, refused = await admin_call(p, "POST", f"{base}/reload",
                                       {"amount": 1_000, "bankReference": "wire-1"})
    assert (status, refused["code"]) == (409, "PARTNER_BALANCE_PENDING")
    manager = await api.admin_token(role="MANAGER")
    async with api.client().post(f"{api.http}{base}/approve", headers=bearer(manager)) as r:
        assert r.status == 403  # approving is an ADMIN's decision
    status, approved = await admin_call(p, "POST", f"{base}/approve")
    assert status == 200 and approved["approval"] == "APPROVED"
    status, booked = await admin_call(p, "POST", f"{base}/reload",
                                      {"amount": 1_000, "bankReference": "wire-1"})
    assert status == 200 and booked["balance"]["posted"] == 1_000
    async with api.services.pool.acquire() as conn:
        actions = [r["action"] for r in await conn.fetch(
            "SELECT action FROM audit_log WHERE target = $1 ORDER BY id",
            f"partner-balance:{credit['balanceId']}")]
    assert actions == [f"POST /admin/partners/{{partnerId}}/balances/{{balanceId}}/{a}"
                       for a in ("approve", "reload")]


async def test_the_statement_reconciles_with_the_ledger(api, jwe_key):
    p = await Payments().setup(api, jwe_key, user_funds=20_000, deposit=6_000)
    first = p.request(amount=4_000)
    assert (await p.send("/network/authorizations", first))[1]["decision"] == "APPROVED"
    status, _ = await p.send("/network/reversals", {"messageId": "rev-1", "amount": 1_000,
                                                    "originalMessageId": first["messageId"]})
    assert status == 200
    status, _ = await p.send("/network/clearings", {"messageId": "clr-1", "amount": 2_500,
                                                    "originalMessageId": first["messageId"]})
    assert status == 200
    second = p.request(amount=1_500)
    assert (await p.send("/network/authorizations", second))[1]["decision"] == "APPROVED"
    await admin_call(p, "POST", f"/admin/partners/{p.w.partner_id}/balances/{p.deposit}/reload",
                     {"amount": 700, "bankReference": "wire-2"})

    lines, balance, pages = await whole_statement(p, p.deposit, limit=2)
    assert pages > 2  # the opaque cursor carried the reading across pages
    assert {line["category"] for line in lines} >= {"RELOAD", "CHARGE", "RELEASE"}
    # The sum of the lines is the level; each line's level follows from the one before it.
    assert sum(line["postedChange"] for line in lines) == balance["posted"]
    assert lines[-1]["postedAfter"] == balance["posted"]
    assert lines[-1]["availableAfter"] == balance["available"]
    level = 0
    for line in lines:
        level += line["postedChange"]
        assert line["postedAfter"] == level
    # And the ledger agrees, transfer by transfer.
    async with api.services.pool.acquire() as conn:
        ledger_rows = await conn.fetch(
            """SELECT id, kind, amount, credit_account_id = $1 AS credit FROM transfers
               WHERE debit_account_id = $1 OR credit_account_id = $1 ORDER BY seq""", p.deposit)
        account = await conn.fetchrow("SELECT * FROM accounts WHERE id = $1", p.deposit)
    assert [str(r["id"]) for r in ledger_rows] == [line["transactionId"] for line in lines]
    assert balance["posted"] == account["credits_posted"] - account["debits_posted"]
    assert balance["available"] == balance["posted"] - account["debits_pending"]
    status, bad = await partner_call(
        p, "GET", f"/secure/partner/balances/{p.deposit}/statement?cursor=not-ours")
    assert (status, bad["code"]) == (400, "INVALID_CURSOR")
    # An administrator reads the same statement.
    status, seen = await admin_call(
        p, "GET", f"/admin/partners/{p.w.partner_id}/balances/{p.deposit}/statement?limit=200")
    assert status == 200 and [x["transactionId"] for x in seen["items"]] == \
        [line["transactionId"] for line in lines]
    await ledger_clean(api)


async def test_the_partner_sets_its_threshold_and_alert_emails(api, jwe_key):
    p = await Payments().setup(api, jwe_key, user_funds=10_000, deposit=5_000)
    path = f"/secure/partner/balances/{p.deposit}/alerts"
    status, bad = await partner_call(p, "PUT", path, {"lowBalanceThreshold": 1,
                                                      "alertEmails": ["not-an-email"]})
    assert status == 400
    status, changed = await partner_call(p, "PUT", path, {
        "lowBalanceThreshold": 3_000,
        "alertEmails": ["Treasury@Partner.example", "ops@partner.example",
                        "treasury@partner.example"]})
    assert status == 200, changed
    assert changed["lowBalanceThreshold"] == 3_000
    assert changed["alertEmails"] == ["treasury@partner.example", "ops@partner.example"]
    assert (await p.authorize(amount=2_500))["decision"] == "APPROVED"  # 5,000 -> 2,500 < 3,000
    async with api.services.pool.acquire() as conn:
        targets = {(r["channel"], r["target"]) for r in await conn.fetch(
            """SELECT d.channel, d.target FROM alert_deliveries d
               JOIN partner_alerts a ON a.id = d.alert_id WHERE a.account_id = $1""", p.deposit)}
    assert targets == {("EMAIL", "treasury@partner.example"), ("EMAIL", "ops@partner.example")}
    # Another partner cannot change it.
    _, other = await api.partner(p.w.admin)
    async with other.put(f"{api.https}{path}", json={"lowBalanceThreshold": None}) as r:
        assert r.status == 404
    await ledger_clean(api)


async def test_the_partner_removes_a_card_for_good(api, jwe_key):
    p = await Payments().setup(api, jwe_key)
    card_id = p.card["cardId"]
    path = f"/secure/customers/{p.w.cid}/cards/{card_id}"
    _, other = await api.partner(p.w.admin)
    async with other.delete(f"{api.https}{path}") as r:
        assert r.status == 404  # another partner's card is unknown
    status, removed = await partner_call(p, "DELETE", path)
    assert status == 200 and removed["status"] == "REMOVED"
    declined = await p.authorize(amount=100)
    assert declined["decision"] == "DECLINED"
    status, again = await partner_call(p, "POST", f"{path}/unlock")
    assert status == 409  # a removed card never comes back
    # The Lifecycle API's path removes by card id alone.
    second = await p.w.virtual()
    status, gone = await partner_call(p, "DELETE", f"/lifecycle/v1/cards/{second['cardId']}")
    assert status == 200 and gone["status"] == "REMOVED"
    async with api.services.pool.acquire() as conn:
        events = await conn.fetch("SELECT event, actor FROM card_events WHERE card_id = $1",
                                  uuid.UUID(card_id))
    assert ("REMOVED", f"partner:{p.w.partner_id}") in {(e["event"], e["actor"]) for e in events}


async def test_the_partner_lists_and_unpairs_a_customers_devices(api, jwe_key):
    from tests.api_harness import pair_device

    p = await Payments().setup(api, jwe_key, deposit=0)
    second = await pair_device(api, p.w.partner, p.w.cid, device_id="tablet-7")
    status, listed = await partner_call(p, "GET", f"/secure/customers/{p.w.cid}/devices")
    assert status == 200
    assert {(d["deviceId"], d["active"]) for d in listed["items"]} == {("device-1", True),
                                                                        ("tablet-7", True)}
    tablet = next(d for d in listed["items"] if d["deviceId"] == "tablet-7")
    session = bearer(second["sessionToken"])
    async with api.client().get(f"{api.http}/customers/me", headers=session) as r:
        assert r.status == 200
    _, other = await api.partner(p.w.admin)
    unpair = f"/secure/customers/{p.w.cid}/devices/{tablet['installationId']}"
    async with other.delete(f"{api.https}{unpair}") as r:
        assert r.status == 404
    status, gone = await partner_call(p, "DELETE", unpair)
    assert status == 200 and gone["active"] is False and gone["unpairedAt"] is not None
    async with api.client().get(f"{api.http}/customers/me", headers=session) as r:
        assert r.status == 401  # the device's session ended with it
    async with api.client().post(f"{api.http}/customers/sessions", json={
            "installationId": second["installationId"],
            "installationSecret": second["installationSecret"]}) as r:
        assert r.status == 401  # and it cannot start a new one
    async with api.client().get(f"{api.http}/customers/me", headers=bearer(
            p.w.session["sessionToken"])) as r:
        assert r.status == 200  # the other device is untouched
    status, unknown = await partner_call(p, "DELETE",
                                         f"/secure/customers/{p.w.cid}/devices/{uuid.uuid4()}")
    assert status == 404
