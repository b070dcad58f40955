"""Spending controls over the real channels (issue 18): every kind and level, precedence, a
customer's tighter limits, velocity across period boundaries and under concurrency, shadow mode
and its report, versions recorded on the authorization."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from antaca_auth.velocity import scope_counters
from tests.api_harness import bearer
from tests.integration.test_authorizations import Payments


@pytest.fixture(scope="module")
def jwe_key():
    from joserfc.jwk import RSAKey

    return RSAKey.generate_key(2048)


class Controls(Payments):
    """Payments with the channels that set controls."""

    async def admin_call(self, method: str, path: str, body: dict | None = None):
        async with self.api.client().request(method, f"{self.api.http}{path}", json=body,
                                             headers=bearer(self.w.admin)) as r:
            return r.status, (None if r.status == 204 else await r.json())

    async def partner_call(self, method: str, path: str, body: dict | None = None):
        async with self.w.partner.request(method, f"{self.api.https}{path}", json=body) as r:
            return r.status, (None if r.status == 204 else await r.json())

    async def control(self, level: str, kind: str, *, by: str = "partner", status: str = "ACTIVE",
                      **rule) -> dict:
        scope = {"PROGRAM": self.w.program["programId"], "PRODUCT": self.w.program["programId"],
                 "BALANCE": self.w.balance, "CARD": self.card["cardId"]}[level]
        body = {"level": level, "scopeId": scope, "kind": kind, "status": status, **rule}
        if by == "admin":
            status_code, answer = await self.admin_call("POST", "/admin/controls", body)
        else:
            status_code, answer = await self.partner_call("POST", "/secure/controls", body)
        assert status_code == 201, answer
        return answer

    async def stored(self, authorization_id: str):
        return await self.api.services.pool.fetchrow(
            "SELECT control_id, control_version, velocity_periods, velocity_day, decision "
            "FROM authorizations WHERE id = $1", uuid.UUID(authorization_id))


async def setup(api, jwe_key, **kw) -> Controls:
    return await Controls().setup(api, jwe_key, user_funds=kw.pop("user_funds", 100_000),
                                  deposit=kw.pop("deposit", 500_000), **kw)


def declined(answer: dict, code: str, reason: str) -> bool:
    return (answer["decision"], answer["responseCode"], answer["reason"]) == (
        "DECLINED", code, reason)


async def test_each_kind_declines_with_its_code_and_records_the_control(api, jwe_key):
    p = await setup(api, jwe_key)
    mcc = await p.control("PRODUCT", "MCC_BLOCK", mccs=["7995", "5960-5969"])
    country = await p.control("BALANCE", "COUNTRY_BLOCK", countries=["RU", "KP"])
    channel = await p.control("CARD", "CHANNEL_BLOCK", channels=["CONTACTLESS", "MAGNETIC_STRIPE"])
    amount = await p.control("CARD", "AMOUNT_MAX", amountMax=5000)
    cases = [({"mcc": "7995"}, "57", "CONTROL_MCC_NOT_PERMITTED", mcc),
             ({"mcc": "5962"}, "57", "CONTROL_MCC_NOT_PERMITTED", mcc),
             ({"merchantCountry": "RU"}, "62", "CONTROL_COUNTRY_RESTRICTED", country),
             ({"type": "POS", "cvc2": None, "posEntryMode": "071"}, "57",
              "CONTROL_CHANNEL_NOT_PERMITTED", channel),
             ({"type": "POS", "cvc2": None, "posEntryMode": "901"}, "57",
              "CONTROL_CHANNEL_NOT_PERMITTED", channel),
             ({"amount": 5001}, "61", "CONTROL_AMOUNT_LIMIT_EXCEEDED", amount)]
    for changes, code, reason, control in cases:
        body = p.request(**changes)
        status, answer = await p.send("/network/authorizations", body)
        assert declined(answer, code, reason), (changes, answer)
        # The answer and the partner's event name the control (and its version) that declined.
        assert (answer["controlId"], answer["controlVersion"]) == (control["controlId"], 1)
        assert await p.send("/network/authorizations", body) == (status, answer)  # a replay
        row = await p.stored(answer["authorizationId"])
        assert (str(row["control_id"]), row["control_version"]) == (control["controlId"], 1)
        payload = await api.services.pool.fetchval(
            "SELECT payload FROM events WHERE object_id = $1", uuid.UUID(answer["authorizationId"]))
        assert (payload["controlId"], payload["responseCode"]) == (control["controlId"], code)
    for changes in ({"mcc": "5411"}, {"mcc": "5970"}, {"merchantCountry": "DE"},
                    {"type": "POS", "cvc2": None, "posEntryMode": "051"}, {"amount": 5000}):
        assert (await p.authorize(**changes))["decision"] == "APPROVED", changes
    await p.assert_clean()


async def test_allow_lists_and_iso8583_entry_mode_absent(api, jwe_key):
    p = await setup(api, jwe_key)
    await p.control("PRODUCT", "MCC_ALLOW", mccs=["5411", "5812"])
    await p.control("CARD", "COUNTRY_ALLOW", countries=["PL", "DE"])
    await p.control("BALANCE", "CHANNEL_ALLOW", channels=["ECOMMERCE", "CHIP"])
    assert (await p.authorize(mcc="5812", merchantCountry="DE"))["decision"] == "APPROVED"
    assert (await p.authorize(type="POS", cvc2=None, posEntryMode="051"))["decision"] == "APPROVED"
    assert declined(await p.authorize(type="POS", cvc2=None, posEntryMode="071"), "57",
                    "CONTROL_CHANNEL_NOT_PERMITTED")
    assert declined(await p.authorize(type="POS", cvc2=None), "57",
                    "CONTROL_CHANNEL_NOT_PERMITTED")  # no entry mode: UNKNOWN, not allowed
    assert declined(await p.authorize(mcc="5999"), "57", "CONTROL_MCC_NOT_PERMITTED")
    assert declined(await p.authorize(merchantCountry="FR"), "62", "CONTROL_COUNTRY_RESTRICTED")
    body = p.request()
    del body["mcc"]  # no MCC sent: an allow-list cannot pass it
    status, answer = await p.send("/network/authorizations", body)
    assert declined(answer, "57", "CONTROL_MCC_NOT_PERMITTED")


async def test_admin_program_control_wins_over_narrower_levels_and_partner_cannot_change_it(
        api, jwe_key):
    p = await setup(api, jwe_key)
    program = await p.control("PROGRAM", "AMOUNT_MAX", by="admin", amountMax=3000)
    card = await p.control("CARD", "AMOUNT_MAX", amountMax=2000)
    # Both decline 3500: the broadest level is named.
    answer = await p.authorize(amount=3500)
    assert declined(answer, "61", "CONTROL_AMOUNT_LIMIT_EXCEEDED")
    assert str((await p.stored(answer["authorizationId"]))["control_id"]) == program["controlId"]
    # Only the card's declines 2500: the strictest applies.
    answer = await p.authorize(amount=2500)
    assert str((await p.stored(answer["authorizationId"]))["control_id"]) == card["controlId"]
    # A partner may not set PROGRAM controls, nor change the administrator's.
    status, body = await p.partner_call("POST", "/secure/controls", {
        "level": "PROGRAM", "scopeId": p.w.program["programId"], "kind": "AMOUNT_MAX",
        "amountMax": 1})
    assert (status, body["code"]) == (400, "INVALID_CONTROL")
    status, body = await p.partner_call("DELETE", f"/secure/controls/{program['controlId']}")
    assert (status, body["code"]) == (403, "FORBIDDEN")
    status, seen = await p.partner_call("GET", f"/secure/controls/{program['controlId']}")
    assert status == 200 and seen["setBy"] == "ADMIN"


async def test_update_makes_a_new_version_recorded_on_the_authorization_and_delete(api, jwe_key):
    p = await setup(api, jwe_key)
    control = await p.control("CARD", "AMOUNT_MAX", amountMax=1000)
    path = f"/secure/controls/{control['controlId']}"
    status, changed = await p.partner_call("PUT", path, {"amountMax": 500})
    assert (status, changed["version"], changed["rule"]["amountMax"]) == (200, 2, 500)
    answer = await p.authorize(amount=800)
    assert declined(answer, "61", "CONTROL_AMOUNT_LIMIT_EXCEEDED")
    assert (await p.stored(answer["authorizationId"]))["control_version"] == 2
    status, body = await p.partner_call("PUT", path, {"countMax": 3})
    assert (status, body["code"]) == (400, "INVALID_CONTROL")
    status, _ = await p.partner_call("DELETE", path)
    assert status == 204
    assert (await p.authorize(amount=800))["decision"] == "APPROVED"
    status, _ = await p.partner_call("GET", path)
    assert status == 404
    status, listing = await p.partner_call("GET", f"/secure/controls?scopeId={p.card['cardId']}")
    assert listing["items"] == []


async def test_invalid_rules_are_refused_and_change_nothing(api, jwe_key):
    p = await setup(api, jwe_key)
    base = {"level": "CARD", "scopeId": p.card["cardId"]}
    bad = [{"kind": "MCC_BLOCK", "mccs": ["5999-5000"]}, {"kind": "MCC_BLOCK"},
           {"kind": "AMOUNT_MAX", "amountMax": 10, "countries": ["PL"]},
           {"kind": "VELOCITY", "period": "DAY", "per": "CARD"},
           {"kind": "VELOCITY", "amountMax": 10, "per": "CARD"},
           {"kind": "AMOUNT_MAX", "amountMax": 0}, {"kind": "NOPE", "amountMax": 1}]
    for body in bad:
        status, answer = await p.partner_call("POST", "/secure/controls", {**base, **body})
        assert status == 400 and set(answer) == {"code", "message"}, (body, answer)
    status, answer = await p.partner_call("POST", "/secure/controls", {
        **base, "scopeId": str(uuid.uuid4()), "kind": "AMOUNT_MAX", "amountMax": 1})
    assert status == 404
    assert await api.services.pool.fetchval("SELECT count(*) FROM spending_controls") == 0


async def test_another_partners_scope_is_not_found(api, jwe_key):
    p = await setup(api, jwe_key)
    q = await setup(api, jwe_key)
    control = await p.control("CARD", "AMOUNT_MAX", amountMax=1000)
    status, body = await q.partner_call("POST", "/secure/controls", {
        "level": "CARD", "scopeId": p.card["cardId"], "kind": "AMOUNT_MAX", "amountMax": 1})
    assert (status, body["code"]) == (404, "NOT_FOUND")
    for method in ("GET", "PUT", "DELETE"):
        status, body = await q.partner_call(method, f"/secure/controls/{control['controlId']}",
                                            {"amountMax": 5} if method == "PUT" else None)
        assert status == 404, method
    status, listing = await q.partner_call("GET", "/secure/controls")
    assert listing["items"] == []


async def test_customer_sets_tighter_limits_never_looser(api, jwe_key):
    p = await setup(api, jwe_key)
    await p.control("CARD", "VELOCITY", period="DAY", per="CARD", amountMax=10_000)
    path = f"/customers/me/cards/{p.card['cardId']}/controls"
    status, body = await p.w.app_plain("POST", path, {
        "kind": "VELOCITY", "period": "DAY", "per": "CARD", "amountMax": 20_000})
    assert (status, body["code"]) == (409, "CONTROL_LOOSER_THAN_PARTNER")
    status, mine = await p.w.app_plain("POST", path, {
        "kind": "VELOCITY", "period": "DAY", "per": "CARD", "amountMax": 3000})
    assert status == 201 and mine["setBy"] == "CUSTOMER"
    status, _ = await p.w.app_plain("POST", path, {"kind": "MCC_BLOCK", "mccs": ["7995"]})
    assert status == 201
    assert (await p.authorize(amount=2000))["decision"] == "APPROVED"
    answer = await p.authorize(amount=1500)
    assert declined(answer, "61", "CONTROL_VELOCITY_AMOUNT_EXCEEDED")
    assert str((await p.stored(answer["authorizationId"]))["control_id"]) == mine["controlId"]
    status, body = await p.w.app_plain("PUT", f"/customers/me/controls/{mine['controlId']}", {
        "period": "DAY", "per": "CARD", "amountMax": 50_000})
    assert (status, body["code"]) == (409, "CONTROL_LOOSER_THAN_PARTNER")
    status, body = await p.w.app_plain("PUT", f"/customers/me/controls/{mine['controlId']}", {
        "period": "DAY", "per": "CARD", "amountMax": 4000, "status": "SHADOW"})
    assert status == 400
    status, listing = await p.w.app_plain("GET", path)
    assert len(listing["items"]) == 3
    # The partner's own control is not the customer's to change.
    partner_control = [c for c in listing["items"] if c["setBy"] == "PARTNER"][0]
    status, _ = await p.w.app_plain(
        "DELETE", f"/customers/me/controls/{partner_control['controlId']}")
    assert status == 404
    status, _ = await p.w.app_plain("DELETE", f"/customers/me/controls/{mine['controlId']}")
    assert status == 204


async def test_velocity_amount_and_count_net_of_reversals_per_card_and_balance(api, jwe_key):
    p = await setup(api, jwe_key)
    await p.control("PRODUCT", "VELOCITY", period="DAY", per="CARD", countMax=3)
    await p.control("BALANCE", "VELOCITY", period="MONTH", per="BALANCE", amountMax=5000)
    first, second = p.request(amount=2000), p.request(amount=2000)
    for body in (first, second):
        status, answer = await p.send("/network/authorizations", body)
        assert answer["decision"] == "APPROVED"
    assert declined(await p.authorize(amount=1500), "61", "CONTROL_VELOCITY_AMOUNT_EXCEEDED")
    # A partial reversal gives back its amount, not the count.
    status, _ = await p.send("/network/reversals", {
        "messageId": "rev-1", "originalMessageId": second["messageId"], "amount": 1000})
    assert status == 200
    assert (await p.authorize(amount=1500))["decision"] == "APPROVED"  # count 3 now
    assert declined(await p.authorize(amount=10), "65", "CONTROL_VELOCITY_COUNT_EXCEEDED")
    # A full reversal gives back the count too.
    status, _ = await p.send("/network/reversals", {
        "messageId": "rev-2", "originalMessageId": first["messageId"]})
    assert status == 200
    assert (await p.authorize(amount=10))["decision"] == "APPROVED"
    async with api.services.pool.acquire() as conn:
        card = await scope_counters(conn, uuid.UUID(p.card["cardId"]))
        balance = await scope_counters(conn, uuid.UUID(p.w.balance))
    assert [v for v in card.values()] == [(2000 - 1000 + 1500 + 10, 3)]
    assert [v for v in balance.values()] == [(2000 - 1000 + 1500 + 10, 3)]
    await p.assert_clean()


async def test_velocity_day_follows_the_program_time_zone(api, jwe_key):
    p = await setup(api, jwe_key)
    status, program = await p.admin_call(
        "PUT", f"/admin/programs/{p.w.program['programId']}/time-zone", {"timeZone": "Asia/Tokyo"})
    assert (status, program["timeZone"]) == (200, "Asia/Tokyo")
    status, body = await p.admin_call(
        "PUT", f"/admin/programs/{p.w.program['programId']}/time-zone", {"timeZone": "Mars/Base"})
    assert (status, body["code"]) == (400, "INVALID_TIME_ZONE")
    await p.control("CARD", "VELOCITY", period="DAY", per="CARD", countMax=1)
    engine = api.services.engine
    clock = engine.clock
    # 14:59 UTC is 23:59 in Tokyo; 15:00 UTC is the next day there (still the same UTC day).
    engine.clock = lambda: datetime(2027, 1, 1, 14, 59, tzinfo=UTC)
    try:
        first = await p.authorize()
        assert first["decision"] == "APPROVED"
        assert declined(await p.authorize(), "65", "CONTROL_VELOCITY_COUNT_EXCEEDED")
        engine.clock = lambda: datetime(2027, 1, 1, 15, 0, tzinfo=UTC)
        assert (await p.authorize())["decision"] == "APPROVED"
    finally:
        engine.clock = clock
    row = await p.stored(first["authorizationId"])
    assert str(row["velocity_day"]) == "2027-01-01"


async def test_two_payments_in_one_batch_and_concurrent_batches_count_against_each_other(
        api, jwe_key):
    p = await setup(api, jwe_key)
    await p.control("CARD", "VELOCITY", period="DAY", per="CARD", amountMax=10_000, countMax=7)
    answers = await asyncio.gather(*(p.authorize(amount=1000) for _ in range(40)))
    approved = [a for a in answers if a["decision"] == "APPROVED"]
    assert len(approved) == 7
    assert all(declined(a, "65", "CONTROL_VELOCITY_COUNT_EXCEEDED") for a in answers
               if a["decision"] != "APPROVED")
    async with api.services.pool.acquire() as conn:
        counters = await scope_counters(conn, uuid.UUID(p.card["cardId"]))
    assert list(counters.values()) == [(7000, 7)]


async def test_shadow_records_without_changing_the_answer_report_and_promote(api, jwe_key):
    p = await setup(api, jwe_key)
    shadow = await p.control("PRODUCT", "MCC_BLOCK", status="SHADOW", mccs=["7995"])
    limit = await p.control("CARD", "AMOUNT_MAX", status="SHADOW", amountMax=1500)
    answers = [await p.authorize(mcc="7995", amount=1000),
               await p.authorize(mcc="7995", amount=2000),
               await p.authorize(mcc="5411", amount=3000)]
    assert [a["decision"] for a in answers] == ["APPROVED"] * 3
    path = f"/secure/controls/{shadow['controlId']}/shadow-report"
    status, report = await p.partner_call("GET", path)
    assert status == 200, report
    assert report["totals"] == [{"currency": "EUR", "authorizations": 2, "amount": 3000}]
    assert {h["authorizationId"] for h in report["sample"]} == {
        answers[0]["authorizationId"], answers[1]["authorizationId"]}
    assert {(h["responseCode"], h["decision"]) for h in report["sample"]} == {("57", "APPROVED")}
    status, report = await p.admin_call(
        "GET", f"/admin/controls/{limit['controlId']}/shadow-report")
    assert report["totals"] == [{"currency": "EUR", "authorizations": 2, "amount": 5000}]
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat().replace("+00:00", "Z")
    status, report = await p.partner_call("GET", f"{path}?since={later}&until={later}")
    assert status == 400
    status, promoted = await p.partner_call(
        "POST", f"/secure/controls/{shadow['controlId']}/promote")
    assert (status, promoted["status"], promoted["version"]) == (200, "ACTIVE", 2)
    status, body = await p.partner_call("POST", f"/secure/controls/{shadow['controlId']}/promote")
    assert (status, body["code"]) == (409, "CONTROL_NOT_SHADOW")
    answer = await p.authorize(mcc="7995")
    assert declined(answer, "57", "CONTROL_MCC_NOT_PERMITTED")
    row = await p.stored(answer["authorizationId"])
    assert (str(row["control_id"]), row["control_version"]) == (shadow["controlId"], 2)
    await p.assert_clean()
