"""Fees end to end: schedules and their versions, every fee type, the waiver rule, the exactly-once
recurring charge, unpaid-fee collection, currency conversion, and the revenue report."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from antaca_auth import charges
from antaca_auth.fees import fee_revenue_account
from tests.api_harness import bearer
from tests.integration.test_authorizations import Payments
from tests.integration.test_partner_money import admin_call, ledger_clean


@pytest.fixture(scope="module")
def jwe_key():
    from joserfc.jwk import RSAKey

    return RSAKey.generate_key(2048)


async def publish(p: Payments, schedule: dict, effective_from: datetime | None = None) -> dict:
    body = {"schedule": schedule}
    if effective_from is not None:
        body["effectiveFrom"] = effective_from.isoformat()
    status, version = await admin_call(p, "POST", f"/admin/programs/{p.w.program['programId']}/fees", body)
    assert status == 201, version
    return version


async def charge_rows(p: Payments, fee_type: str | None = None) -> list[dict]:
    rows = await p.api.services.pool.fetch(
        "SELECT * FROM fee_charges WHERE program_id = $1 AND ($2::text IS NULL OR fee_type = $2) ORDER BY seq",
        uuid.UUID(p.w.program["programId"]), fee_type)
    return [dict(r) for r in rows]


async def balance_of(p: Payments, balance_id: str | None = None) -> dict:
    async with p.w.partner.get(f"{p.api.https}/secure/customers/{p.w.cid}/balances/{balance_id or p.w.balance}") as r:
        return await r.json()


async def history_types(p: Payments, balance_id: str | None = None) -> list[str]:
    url = f"{p.api.https}/secure/customers/{p.w.cid}/balances/{balance_id or p.w.balance}/transactions"
    async with p.w.partner.get(url) as r:
        return [t["type"] for t in (await r.json())["items"]]


async def revenue(p: Payments) -> dict:
    status, report = await admin_call(p, "GET", f"/admin/programs/{p.w.program['programId']}/fees/revenue")
    assert status == 200
    return report


async def test_schedules_are_validated_and_versioned(api, jwe_key):
    p = await Payments().setup(api, jwe_key)
    path = f"/admin/programs/{p.w.program['programId']}/fees"
    bad = [
        ({"schedule": {"pos": {"minimum": 50, "maximum": 10}}}, "INVALID_FEE_SCHEDULE"),
        ({"schedule": {"pos": {"percentBp": 10_001}}}, "VALIDATION_ERROR"),
        ({"schedule": {"virtualCardCreation": -1}}, "VALIDATION_ERROR"),
        ({"schedule": {"surprise": 1}}, "VALIDATION_ERROR"),
        ({"schedule": {"waivers": [{"name": "w", "fee": "CARD_RECURRING",
                                    "when": [{"metric": "APPROVED_SPEND_PREVIOUS_PERIOD"}]}]}}, "INVALID_FEE_SCHEDULE"),
        ({"schedule": {}, "effectiveFrom": "2020-01-01T00:00:00+00:00"}, "EFFECTIVE_DATE_IN_PAST"),
    ]
    for body, code in bad:
        status, error = await admin_call(p, "POST", path, body)
        assert (status, error["code"]) == (400, code), body
    assert (await admin_call(p, "GET", "/admin/programs/" + str(uuid.uuid4()) + "/fees"))[0] == 404

    v1 = await publish(p, {"ecom": {"fixed": 10}})
    v2 = await publish(p, {"ecom": {"fixed": 99}}, datetime.now(UTC) + timedelta(days=30))
    status, listed = await admin_call(p, "GET", path)
    assert [v["version"] for v in listed["items"]] == [1, 2]
    assert listed["inForce"] == v1["scheduleId"] != v2["scheduleId"]  # the future version is not in force yet
    assert (await p.authorize(amount=1_000))["fee"] == 10
    employee = await api.admin_token(role="EMPLOYEE")
    async with api.client().post(f"{api.http}{path}", json={"schedule": {}}, headers=bearer(employee)) as r:
        assert r.status == 403


async def test_transaction_fees_are_held_with_the_payment_posted_with_clearing_released_with_reversal(api, jwe_key):
    p = await Payments().setup(api, jwe_key, user_funds=100_000, deposit=1_000_000)
    await publish(p, {"pos": {"fixed": 25, "percentBp": 150, "minimum": 50, "maximum": 500},
                      "ecom": {"percentBp": 200}, "atm": {"fixed": 300}})
    status, _ = await p.w.app_jwe("POST", f"/customers/me/cards/{p.card['cardId']}/pin", {"pin": "4821"})
    assert status == 204

    # POS 10,000: 25 + 1.5% = 175; ATM 2,000: 300; ECOM 1,234: 2% = 24.68 -> 25 (half up).
    pos = p.request(amount=10_000, type="POS", pin="4821", cvc2=None)
    status, answer = await p.send("/network/authorizations", pos)
    assert (answer["decision"], answer["fee"], answer["availableAfter"]) == ("APPROVED", 175, 100_000 - 10_175)
    atm = await p.authorize(amount=2_000, type="ATM", pin="4821", cvc2=None)
    assert atm["fee"] == 300
    ecom = p.request(amount=1_234)
    status, answer = await p.send("/network/authorizations", ecom)
    assert answer["fee"] == 25
    assert (await p.user_account()).available == 100_000 - 10_175 - 2_300 - 1_259
    assert (await revenue(p))["held"] == 175 + 300 + 25

    # Clearing the POS in part: the fee is recomputed on what was captured (25 + 1.5% of 4,000 = 85).
    status, _ = await p.send("/network/clearings", {"messageId": "clr-pos", "originalMessageId": pos["messageId"],
                                                    "amount": 4_000})
    assert status == 200
    # Reversing the e-commerce payment releases its fee with it.
    status, _ = await p.send("/network/reversals", {"messageId": "rev-ecom", "originalMessageId": ecom["messageId"]})
    assert status == 200
    user = await p.user_account()
    assert user.posted == 100_000 - 4_085
    assert user.available == 100_000 - 4_085 - 2_300
    report = await revenue(p)
    assert report["revenueAccountPosted"] == report["totalPaid"] == 85 and report["held"] == 300
    assert {(t["feeType"], t["paid"]) for t in report["byType"]} == {("POS", 85)}
    assert "FEE_TRANSACTION" in await history_types(p)
    await p.assert_clean()


async def test_amount_plus_fee_must_be_available(api, jwe_key):
    p = await Payments().setup(api, jwe_key, user_funds=1_000)
    await publish(p, {"ecom": {"fixed": 1}})
    answer = await p.authorize(amount=1_000)
    assert (answer["decision"], answer["reason"]) == ("DECLINED", "INSUFFICIENT_FUNDS")
    user, deposit = await p.user_account(), await p.counters(p.deposit)
    assert user.balance.debits_pending == 0 and deposit.balance.debits_pending == 0  # the whole chain undone
    assert (await p.authorize(amount=999))["decision"] == "APPROVED"
    await p.assert_clean()


async def test_a_partial_reversal_keeps_the_fee_of_what_stays_held(api, jwe_key):
    p = await Payments().setup(api, jwe_key, user_funds=10_000)
    await publish(p, {"ecom": {"percentBp": 1_000}})  # 10%
    body = p.request(amount=5_000)
    await p.send("/network/authorizations", body)
    status, _ = await p.send("/network/reversals", {"messageId": "r1", "originalMessageId": body["messageId"],
                                                    "amount": 2_000})
    assert status == 200
    user = await p.user_account()
    assert user.balance.debits_pending == 3_000 + 300
    await p.assert_clean()


async def test_currency_conversion_at_the_rate_in_force_with_its_fee(api, jwe_key):
    p = await Payments().setup(api, jwe_key, user_funds=100_000)
    await publish(p, {"ecom": {"fixed": 10}, "currencyConversionBp": 250})
    assert (await p.authorize(currency="USD", amount=1_000))["reason"] == "CURRENCY_NOT_SUPPORTED"
    status, rate = await admin_call(p, "POST", "/admin/fx-rates", {"base": "USD", "quote": "EUR", "rate": "0.9251"})
    assert status == 201 and rate["rate"] == "0.9251"
    for bad in ({"base": "USD", "quote": "USD", "rate": "1"}, {"base": "USD", "quote": "EUR", "rate": "0"},
                {"base": "USD", "quote": "EUR", "rate": "1e5"}, {"base": "ZZZ", "quote": "EUR", "rate": "1"}):
        assert (await admin_call(p, "POST", "/admin/fx-rates", bad))[0] == 400, bad
    # 12.34 USD at 0.9251 = 11.415734 EUR -> 1,142 cents (half up); 2.5% of it = 28.55 -> 29; plus the 10 fixed.
    body = p.request(currency="USD", amount=1_234)
    status, answer = await p.send("/network/authorizations", body)
    assert (answer["decision"], answer["approvedAmount"], answer["billingAmount"], answer["fee"]) == \
        ("APPROVED", 1_234, 1_142, 39)
    # A new rate applies to the next payment: the engine keeps rates for a second, but setting one
    # empties that cache. 10.00 USD at 0.5 = 5.00 EUR.
    await admin_call(p, "POST", "/admin/fx-rates", {"base": "USD", "quote": "EUR", "rate": "0.5"})
    assert (await p.authorize(currency="USD", amount=1_000))["billingAmount"] == 500
    # JPY has no minor unit: 1,000 JPY at 0.0062 = 6.20 EUR = 620 cents.
    await admin_call(p, "POST", "/admin/fx-rates", {"base": "JPY", "quote": "EUR", "rate": "0.0062"})
    assert (await p.authorize(currency="JPY", amount=1_000))["billingAmount"] == 620
    status, _ = await p.send("/network/clearings", {"messageId": "c", "originalMessageId": body["messageId"],
                                                    "amount": 1_234})
    assert status == 200
    assert {(r["fee_type"], r["amount"]) for r in await charge_rows(p)} == {("ECOM", 10), ("CURRENCY_CONVERSION", 29)}
    async with p.w.partner.get(f"{api.https}/secure/customers/{p.w.cid}/transactions") as r:
        usd = [t for t in (await r.json())["items"] if t["authorizationId"] == answer["authorizationId"]]
    assert [(t["amount"], t["currency"], t["billingAmount"], t["transactionFee"], t["conversionFee"]) for t in usd] == [
        (1_234, "USD", 1_142, 10, 29)]
    await p.assert_clean()


async def test_a_new_version_applies_to_new_charges_only(api, jwe_key):
    p = await Payments().setup(api, jwe_key, user_funds=100_000)
    await publish(p, {"ecom": {"fixed": 100}})
    old = p.request(amount=1_000)
    assert (await p.send("/network/authorizations", old))[1]["fee"] == 100
    await publish(p, {"ecom": {"fixed": 300}})
    assert (await p.authorize(amount=1_000))["fee"] == 300
    # The old authorization clears under the version it was authorized with.
    await p.send("/network/clearings", {"messageId": "c-old", "originalMessageId": old["messageId"], "amount": 1_000})
    (paid,) = await charge_rows(p, "ECOM")
    assert paid["amount"] == 100
    await p.assert_clean()


async def open_balance(p: Payments) -> str:
    async with p.w.partner.post(f"{p.api.https}/secure/customers/{p.w.cid}/balances", json={"currency": "EUR"}) as r:
        assert r.status == 201, await r.text()
        return (await r.json())["balanceId"]


async def test_balance_creation_fee_is_unpaid_until_money_arrives(api, jwe_key):
    p = await Payments().setup(api, jwe_key)
    await publish(p, {"balanceCreation": 150})
    balance = await open_balance(p)
    (charge,) = await charge_rows(p, "BALANCE_CREATION")
    assert charge["state"] == "UNPAID" and charge["amount"] == 150
    assert (await balance_of(p, balance))["posted"] == 0  # never negative
    async with p.w.partner.post(f"{api.https}/secure/customers/{p.w.cid}/balances/{balance}/reload",
                                json={"amount": 100, "reference": "a"}) as r:
        assert (await r.json())["balance"]["posted"] == 100  # not enough: still unpaid
    assert (await charge_rows(p, "BALANCE_CREATION"))[0]["state"] == "UNPAID"
    async with p.w.partner.post(f"{api.https}/secure/customers/{p.w.cid}/balances/{balance}/reload",
                                json={"amount": 1_000, "reference": "b"}) as r:
        assert (await r.json())["balance"]["posted"] == 1_100 - 150
    assert (await charge_rows(p, "BALANCE_CREATION"))[0]["state"] == "PAID"
    assert await history_types(p, balance) == ["BALANCE_RELOAD", "BALANCE_RELOAD", "FEE_BALANCE_CREATION"]
    await p.assert_clean()


async def test_card_creation_fees_virtual_and_physical(api, jwe_key):
    p = await Payments().setup(api, jwe_key, user_funds=10_000)
    await publish(p, {"virtualCardCreation": 200, "physicalCardCreation": 900})
    await p.w.virtual()
    order = {"balanceId": p.w.balance, "nameOnCard": "ADA LOVELACE",
             "deliveryAddress": {"line1": "Main 1", "city": "Warsaw", "postalCode": "00-001", "country": "PL"}}
    status, card = await p.w.app_jwe("POST", "/customers/me/cards/physical", order)
    assert status == 201, card
    assert {(r["fee_type"], r["amount"], r["state"]) for r in await charge_rows(p)} == {
        ("VIRTUAL_CARD_CREATION", 200, "PAID"), ("PHYSICAL_CARD_CREATION", 900, "PAID")}
    assert (await balance_of(p))["posted"] == 10_000 - 1_100
    await p.assert_clean()


async def test_a_failed_card_gets_its_creation_fee_back(api, jwe_key, monkeypatch):
    from antaca_api.processors import PROCESSORS, ProcessorError

    p = await Payments().setup(api, jwe_key, user_funds=10_000)
    await publish(p, {"virtualCardCreation": 200})

    async def refuse(*args, **kwargs):
        raise ProcessorError("BIN range exhausted")

    monkeypatch.setattr(PROCESSORS["simulated"], "generate_card", refuse)
    status, _ = await p.w.app_jwe("POST", "/customers/me/cards/virtual", {"balanceId": p.w.balance})
    assert status == 502
    (charge,) = await charge_rows(p, "VIRTUAL_CARD_CREATION")
    assert charge["state"] == "REFUNDED"
    assert (await balance_of(p))["posted"] == 10_000
    assert (await revenue(p))["revenueAccountPosted"] == 0
    await p.assert_clean()


async def test_recurring_fee_is_charged_once_per_card_and_period_and_waived_by_the_rule(api, jwe_key):
    p = await Payments().setup(api, jwe_key, user_funds=500_000, deposit=1_000_000)
    await publish(p, {"cardRecurring": {"period": "MONTHLY", "amount": 499}, "waivers": [
        {"name": "no monthly fee after 1,000 EUR of spend", "fee": "CARD_RECURRING",
         "when": [{"metric": "APPROVED_SPEND_PREVIOUS_PERIOD", "atLeast": 100_000}]}]})
    spender, quiet = p.card, await p.w.virtual()
    # Last month the first card spent 1,000.00 EUR (approved), the second 999.99.
    now = datetime.now(UTC)
    last_month = now.replace(day=1) - timedelta(days=3)
    for card, amount in ((spender, 100_000), (quiet, 99_999)):
        p.card = card
        assert (await p.authorize(amount=amount))["decision"] == "APPROVED"
    await api.services.pool.execute("UPDATE authorizations SET created_at = $1", last_month)

    pool, ledger = api.services.pool, api.services.ledger
    first, second = await asyncio.gather(charges.charge_recurring(pool, ledger, now),
                                         charges.charge_recurring(pool, ledger, now))
    assert len(first) + len(second) == 2  # two runs at once: each card charged once
    status, run = await admin_call(p, "POST", "/admin/fees/run")
    assert status == 200 and run["charged"] == 0  # a third run for the same period: nothing more
    rows = {r["card_id"]: r for r in await charge_rows(p, "CARD_RECURRING")}
    assert rows[uuid.UUID(spender["cardId"])]["state"] == "WAIVED"
    assert rows[uuid.UUID(quiet["cardId"])]["state"] == "PAID"
    # The next month is a new period: charged again.
    next_month = (now.replace(day=1) + timedelta(days=32)).replace(day=1, hour=12)
    assert len(await charges.charge_recurring(pool, ledger, next_month)) == 2
    assert len(await charge_rows(p, "CARD_RECURRING")) == 4
    await p.assert_clean()


async def test_daily_and_weekly_periods(api, jwe_key):
    p = await Payments().setup(api, jwe_key, user_funds=10_000)
    await publish(p, {"cardRecurring": {"period": "WEEKLY", "amount": 100}})
    pool, ledger = api.services.pool, api.services.ledger
    monday = datetime(2030, 1, 7, 9, tzinfo=UTC)
    assert len(await charges.charge_recurring(pool, ledger, monday)) == 1
    assert len(await charges.charge_recurring(pool, ledger, monday + timedelta(days=6))) == 0  # same ISO week
    assert len(await charges.charge_recurring(pool, ledger, monday + timedelta(days=7))) == 1
    await publish(p, {"cardRecurring": {"period": "DAILY", "amount": 7}})
    day = datetime.now(UTC) + timedelta(hours=1)
    assert len(await charges.charge_recurring(pool, ledger, day)) == 1
    assert len(await charges.charge_recurring(pool, ledger, day)) == 0
    assert len(await charges.charge_recurring(pool, ledger, day + timedelta(days=1))) == 1
    await p.assert_clean()


async def test_unpaid_recurring_fees_are_collected_oldest_first_when_funds_arrive(api, jwe_key):
    p = await Payments().setup(api, jwe_key, user_funds=0)
    await publish(p, {"cardRecurring": {"period": "DAILY", "amount": 300}})
    pool, ledger = api.services.pool, api.services.ledger
    day = datetime.now(UTC) + timedelta(minutes=1)
    for offset in range(3):
        (charge,) = await charges.charge_recurring(pool, ledger, day + timedelta(days=offset))
        assert charge.state == "UNPAID"
    assert (await balance_of(p))["posted"] == 0
    async with p.w.partner.post(f"{api.https}/secure/customers/{p.w.cid}/balances/{p.w.balance}/reload",
                                json={"amount": 700, "reference": "salary"}) as r:
        assert (await r.json())["balance"]["posted"] == 100  # two of three collected; never below zero
    states = [r["state"] for r in await charge_rows(p, "CARD_RECURRING")]
    assert states == ["PAID", "PAID", "UNPAID"]
    async with p.w.partner.post(f"{api.https}/secure/customers/{p.w.cid}/balances/{p.w.balance}/reload",
                                json={"amount": 500, "reference": "bonus"}) as r:
        assert (await r.json())["balance"]["posted"] == 300
    assert [r["state"] for r in await charge_rows(p, "CARD_RECURRING")] == ["PAID"] * 3
    assert (await revenue(p))["revenueAccountPosted"] == 900
    await p.assert_clean()


async def test_money_transfer_with_its_fee(api, jwe_key):
    p = await Payments().setup(api, jwe_key, user_funds=10_000)
    await publish(p, {"moneyTransfer": {"fixed": 50, "percentBp": 10, "maximum": 200}})
    url = f"{api.https}/secure/customers/{p.w.cid}/balances/{p.w.balance}/transfers"
    body = {"amount": 5_000, "iban": "DE89 3704 0044 0532 0130 00", "beneficiaryName": "Ada", "reference": "t1"}
    async with p.w.partner.post(url, json={**body, "iban": "DE00370400440532013000"}) as r:
        assert (r.status, (await r.json())["code"]) == (400, "INVALID_IBAN")
    async with p.w.partner.post(url, json={**body, "amount": 9_990}) as r:
        assert r.status == 409  # 9,990 + 60 is more than the balance: nothing moves
    assert (await balance_of(p))["posted"] == 10_000
    async with p.w.partner.post(url, json=body) as r:
        assert r.status == 201
        sent = await r.json()
    assert (sent["fee"], sent["iban"], sent["replayed"]) == (55, "DE89370400440532013000", False)
    async with p.w.partner.post(url, json=body) as r:
        assert (await r.json())["replayed"]
    assert (await balance_of(p))["posted"] == 10_000 - 5_055
    assert await history_types(p) == ["BALANCE_RELOAD", "MONEY_TRANSFER", "FEE_MONEY_TRANSFER"]
    assert (await revenue(p))["revenueAccountPosted"] == 55
    _, other = await api.partner(p.w.admin)
    async with other.post(url, json={**body, "reference": "t2"}) as r:
        assert r.status == 404  # another partner's customer
    await p.assert_clean()


async def test_revenue_report_matches_the_ledger(api, jwe_key):
    p = await Payments().setup(api, jwe_key, user_funds=50_000)
    await publish(p, {"ecom": {"fixed": 40}, "virtualCardCreation": 100})
    await p.w.virtual()
    for i in range(3):
        body = p.request(amount=1_000 + i)
        await p.send("/network/authorizations", body)
        await p.send("/network/clearings", {"messageId": f"c{i}", "originalMessageId": body["messageId"],
                                            "amount": 1_000 + i})
    report = await revenue(p)
    (account,) = await api.services.ledger.lookup_accounts(
        [fee_revenue_account(uuid.UUID(p.w.program["programId"]), "EUR")])
    assert report["revenueAccountPosted"] == account.posted == report["totalPaid"] == 100 + 3 * 40
    await ledger_clean(api)
