"""Partner events over the real channels: each event type appears, with its object's id, in the
partner's `GET /secure/events`, and no payload carries a PAN, a CVV or a PIN; the list's cursor."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta

import msgspec
import pytest

from antaca_auth import events
from tests.api_harness import bearer
from tests.integration.test_authorizations import Payments
from tests.integration.test_cards import World

PIN = "4821"
SEEN: set[str] = set()  # the types the tests of this module checked (test_every_type_is_tested)
# Card events no test here causes: processor failures (test_cards covers their card events).
NOT_CAUSED_HERE = {"card.order_failed", "card.generation_failed", "card.generated"}


@pytest.fixture(scope="module")
def jwe_key():
    from joserfc.jwk import RSAKey

    return RSAKey.generate_key(2048)


async def partner_events(api, partner, **query) -> list[dict]:
    """Every event of the partner matching the query, oldest first, through the cursor."""
    found, cursor = [], None
    while True:
        params = {"order": "oldest", "limit": "50", **query}
        if cursor:
            params["cursor"] = cursor
        async with partner.get(f"{api.https}/secure/events", params=params) as r:
            assert r.status == 200, await r.text()
            page = await r.json()
        found += page["items"]
        if not page["hasMore"]:
            return found
        cursor = page["nextCursor"]


def assert_clean(event: dict, card: dict | None) -> None:
    """No card data anywhere in the event, and no key that would name it."""
    text = json.dumps(event)
    if card is not None:
        assert card["pan"] not in text and card["pan"][-10:] not in text
        assert f'"{card["cvc2"]}"' not in text
    assert f'"{PIN}"' not in text
    assert not set(map(str.lower, event["payload"])) & events.FORBIDDEN_PAYLOAD_KEYS


async def expect(api, partner, event_type: str, object_id: str, card: dict | None = None,
                 count: int | None = None) -> list[dict]:
    """The partner's events of this type about this object (at least one, or exactly `count`)."""
    found = await partner_events(api, partner, type=event_type, objectId=str(object_id))
    assert found if count is None else len(found) == count, (event_type, object_id, found)
    for event in found:
        assert (event["type"], event["objectId"]) == (event_type, str(object_id))
        assert uuid.UUID(event["eventId"]).version == 7
        assert_clean(event, card)
    SEEN.add(event_type)
    return found


async def test_payment_events(api, jwe_key):
    p = await Payments().setup(api, jwe_key, user_funds=10_000, deposit=50_000)
    partner, card = p.w.partner, p.card
    approved = await p.authorize(amount=2500)
    (event,) = await expect(api, partner, events.AUTHORIZATION_APPROVED,
                            approved["authorizationId"], card)
    assert event["payload"]["cardId"] == card["cardId"] and event["payload"]["amount"] == 2500
    declined = await p.authorize(amount=999_999)
    await expect(api, partner, events.AUTHORIZATION_DECLINED, declined["authorizationId"], card, 1)
    refund = await p.authorize(type="REFUND", amount=300)
    await expect(api, partner, events.REFUND_APPROVED, refund["authorizationId"], card, 1)

    first = p.request(amount=4000)
    answer = (await p.send("/network/authorizations", first))[1]
    status, _ = await p.send("/network/reversals", {"messageId": uuid.uuid4().hex,
                                                     "originalMessageId": first["messageId"],
                                                     "amount": 1000})
    assert status == 200
    await expect(api, partner, events.REVERSAL, answer["authorizationId"], card, 1)
    status, _ = await p.send("/network/clearings", {"messageId": uuid.uuid4().hex,
                                                     "originalMessageId": first["messageId"],
                                                     "amount": 3000})
    assert status == 200
    await expect(api, partner, events.CLEARING, answer["authorizationId"], card, 1)
    status, _ = await p.send("/network/clearings/batch", {"items": [
        {"messageId": uuid.uuid4().hex, "pan": card["pan"], "currency": "EUR", "amount": 700}]})
    assert status == 200
    (forced,) = await expect(api, partner, events.FORCE_POST, card["cardId"], card)
    assert forced["payload"]["amount"] == 700
    status, _ = await p.send("/network/reversals", {"messageId": uuid.uuid4().hex,
                                                     "originalMessageId": "no-such-message"})
    assert status == 404
    await expect(api, partner, events.REVERSAL, answer["authorizationId"], card, 1)
    # Nothing of another partner shows, and another partner sees none of these.
    _, other = await api.partner(p.w.admin)
    assert await partner_events(api, other) == []


async def test_a_decline_by_the_ledger_is_a_declined_event(api, jwe_key):
    p = await Payments().setup(api, jwe_key, user_funds=10_000, deposit=500)
    answer = await p.authorize(amount=800)  # the deposit declines it in the ledger, after the row
    assert answer["reason"] == "INSUFFICIENT_PARTNER_DEPOSIT"
    (event,) = await expect(api, p.w.partner, events.AUTHORIZATION_DECLINED,
                            answer["authorizationId"], p.card, 1)
    assert event["payload"]["reason"] == "INSUFFICIENT_PARTNER_DEPOSIT"
    assert await partner_events(api, p.w.partner, type=events.AUTHORIZATION_APPROVED) == []


async def test_fee_low_balance_and_expired_hold_events(api, jwe_key):
    p = await Payments().setup(api, jwe_key, user_funds=10_000, deposit=5_000)
    status, _ = await p.w.app_plain("GET", "/customers/me/cards")
    async with api.client().put(
            f"{api.http}/admin/partners/{p.w.partner_id}/balances/{p.deposit}/threshold",
            json={"lowBalanceThreshold": 4_000}, headers=bearer(p.w.admin)) as r:
        assert r.status == 200, await r.text()
    await p.authorize(amount=1_500)  # the deposit's available amount falls to 3,500: under 4,000
    (low,) = await expect(api, p.w.partner, events.PARTNER_BALANCE_LOW, p.deposit, count=1)
    assert (low["payload"]["kind"], low["payload"]["available"]) == ("DEPOSIT", 3_500)

    async with api.client().post(f"{api.http}/admin/programs/{p.w.program['programId']}/fees",
                                 json={"schedule": {"virtualCardCreation": 150}},
                                 headers=bearer(p.w.admin)) as r:
        assert r.status == 201, await r.text()
    second = await p.w.virtual()
    (charged,) = await partner_events(api, p.w.partner, type=events.FEE_CHARGED)
    await expect(api, p.w.partner, events.FEE_CHARGED, charged["objectId"], second, 1)
    assert (charged["payload"]["cardId"], charged["payload"]["amount"]) == (second["cardId"], 150)

    # A fee charged unpaid (a new balance is empty) is `fee.charged` when the money arrives.
    async with api.client().post(f"{api.http}/admin/programs/{p.w.program['programId']}/fees",
                                 json={"schedule": {"balanceCreation": 40}},
                                 headers=bearer(p.w.admin)) as r:
        assert r.status == 201, await r.text()
    base = f"{api.https}/secure/customers/{p.w.cid}/balances"
    async with p.w.partner.post(base, json={"currency": "EUR"}) as r:
        fresh_balance = (await r.json())["balanceId"]
    charged_now = await partner_events(api, p.w.partner, type=events.FEE_CHARGED)
    # Only the card's fee so far: the new balance's is unpaid, and no event says it was charged.
    assert [e["payload"]["balanceId"] for e in charged_now] == [p.w.balance]
    async with p.w.partner.post(f"{base}/{fresh_balance}/reload",
                                json={"amount": 500, "reference": "first"}) as r:
        assert r.status == 200, await r.text()
    (collected,) = [e for e in await partner_events(api, p.w.partner, type=events.FEE_CHARGED)
                    if e["payload"]["balanceId"] == fresh_balance]
    assert (collected["payload"]["amount"], collected["payload"]["state"]) == (40, "PAID")

    held = await p.authorize(amount=700)
    ledger = api.services.ledger
    real_clock = ledger.clock
    ledger.clock = lambda: real_clock() + timedelta(days=40)
    try:
        assert await ledger.expire_pending() >= 1
    finally:
        ledger.clock = real_clock
    expired = await partner_events(api, p.w.partner, type=events.HOLD_EXPIRED)
    assert {e["payload"]["balanceId"] for e in expired} == {p.w.balance}
    async with api.services.pool.acquire() as conn:
        hold = await conn.fetchval("SELECT user_hold_id FROM authorizations WHERE id = $1",
                                   uuid.UUID(held["authorizationId"]))
    await expect(api, p.w.partner, events.HOLD_EXPIRED, hold, p.card, 1)


async def test_a_stand_in_is_an_event(api, jwe_key):
    p = await Payments().setup(api, jwe_key)
    body = p.request(amount=100)
    account = uuid.UUID(p.w.balance)
    async with api.services.pool.acquire() as conn, conn.transaction():
        # The user's account row held: the batch waits at the ledger past the stand-in time.
        await conn.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", account)
        status, answer = await p.send("/network/authorizations", body)
    assert (status, answer["responseCode"], answer["standIn"]) == (200, "91", True)
    for _ in range(100):  # the stand-in's record (and its event) is written after the answer
        if await partner_events(api, p.w.partner, type=events.AUTHORIZATION_STAND_IN):
            break
        await asyncio.sleep(0.05)
    await expect(api, p.w.partner, events.AUTHORIZATION_STAND_IN, answer["authorizationId"],
                 p.card, 1)


async def test_card_events(api, jwe_key):
    from antaca_api.personalization import process_due_orders

    w = await World().setup(api, jwe_key, personalization_seconds=60)
    card = await w.virtual()
    card_id = card["cardId"]
    await expect(api, w.partner, events.CARD_ISSUED, card_id, card, 1)
    status, _ = await w.app_plain("POST", f"/customers/me/cards/{card_id}/lock", {"reason": 3})
    assert status == 200
    (locked,) = await expect(api, w.partner, "card.locked", card_id, card, 1)
    assert (locked["payload"]["reason"], locked["payload"]["toState"]) == (3, "LOCKED")
    assert (await w.app_plain("POST", f"/customers/me/cards/{card_id}/unlock"))[0] == 200
    await expect(api, w.partner, "card.unlocked", card_id, card, 1)
    status, fresh = await w.app_jwe("POST", f"/customers/me/cards/{card_id}/cvv")
    assert status == 200
    await expect(api, w.partner, "card.cvv_reset", card_id, fresh, 1)
    assert (await w.app_jwe("POST", f"/customers/me/cards/{card_id}/pin", {"pin": PIN}))[0] == 204
    await expect(api, w.partner, "card.pin_set", card_id, fresh, 1)
    assert (await w.app_plain("DELETE", f"/customers/me/cards/{card_id}"))[0] == 200
    await expect(api, w.partner, "card.removed", card_id, fresh, 1)
    # A refused change writes no event: the event lives and dies with its transaction.
    status, _ = await w.app_plain("POST", f"/customers/me/cards/{card_id}/lock", {"reason": 3})
    assert status == 409
    await expect(api, w.partner, "card.locked", card_id, fresh, 1)

    order = {"balanceId": w.balance, "nameOnCard": "ADA LOVELACE", "deliveryAddress": {
        "line1": "Main 1", "city": "Warsaw", "postalCode": "00-001", "country": "PL"}}
    status, physical = await w.app_jwe("POST", "/customers/me/cards/physical", order)
    assert status == 201
    real_clock = api.services.clock
    api.services.clock = lambda: real_clock() + timedelta(seconds=61)
    try:
        assert await process_due_orders(api.services, recheck_seconds=0) == 1
    finally:
        api.services.clock = real_clock
    await expect(api, w.partner, "card.linked", physical["cardId"], count=1)
    status, _ = await w.app_plain("POST", f"/customers/me/cards/{physical['cardId']}/activate")
    assert status == 200
    await expect(api, w.partner, "card.activated", physical["cardId"], count=1)


async def test_customer_corporation_and_balance_events(api, jwe_key):
    from tests.integration.test_corporations import create, review_http

    w = await World().setup(api, jwe_key)
    (kyc,) = await expect(api, w.partner, events.KYC_RESULT, w.cid, count=1)
    assert kyc["payload"]["status"] == "VERIFIED"
    await expect(api, w.partner, events.BALANCE_OPENED, w.balance, count=1)
    base = f"{api.https}/secure/customers/{w.cid}/balances/{w.balance}"
    for action, event_type in (("block", events.BALANCE_BLOCKED),
                               ("unblock", events.BALANCE_UNBLOCKED),
                               ("close", events.BALANCE_CLOSED)):
        async with w.partner.post(f"{base}/{action}") as r:
            assert r.status == 200, await r.text()
        await expect(api, w.partner, event_type, w.balance, count=1)

    corporation = await create(api, w.partner)
    status, _ = await review_http(api, w.admin, corporation["dcCorporationId"],
                                  {"status": "APPROVED"})
    assert status == 200
    (kyb,) = await expect(api, w.partner, events.KYB_RESULT, corporation["dcCorporationId"],
                          count=1)
    assert kyb["payload"]["status"] == "APPROVED"


async def test_the_events_list_cursor_order_and_filters(api, jwe_key):
    w = await World().setup(api, jwe_key)
    for _ in range(3):
        await w.virtual()
    everything = await partner_events(api, w.partner, limit="2")  # oldest first, two a page
    ids = [e["eventId"] for e in everything]
    assert len(ids) == len(set(ids)) >= 5 and ids == sorted(ids)
    async with w.partner.get(f"{api.https}/secure/events", params={"limit": "2"}) as r:
        newest = await r.json()
    assert [e["eventId"] for e in newest["items"]] == ids[::-1][:2] and newest["hasMore"]
    async with w.partner.get(f"{api.https}/secure/events",
                             params={"limit": "2", "cursor": newest["nextCursor"]}) as r:
        assert [e["eventId"] for e in (await r.json())["items"]] == ids[::-1][2:4]
    # A cursor of one direction is refused in the other, and so is anything else.
    for cursor in (newest["nextCursor"], "bm90IGEgY3Vyc29y", "!!"):
        async with w.partner.get(f"{api.https}/secure/events",
                                 params={"order": "oldest", "cursor": cursor}) as r:
            assert (r.status, (await r.json())["code"]) == (400, "INVALID_CURSOR")
    for params in ({"type": "no.such.type"}, {"objectId": "x"}, {"order": "sideways"},
                   {"limit": "0"}, {"limit": "1000"}):
        async with w.partner.get(f"{api.https}/secure/events", params=params) as r:
            assert r.status == 400, params
    issued = await partner_events(api, w.partner, type=events.CARD_ISSUED)
    assert len(issued) == 3
    # Oldest first, the last page still has a cursor: polling it later gives what came since.
    async with w.partner.get(f"{api.https}/secure/events", params={"order": "oldest"}) as r:
        page = await r.json()
    assert not page["hasMore"] and page["nextCursor"]
    await w.virtual()
    async with w.partner.get(f"{api.https}/secure/events",
                             params={"order": "oldest", "cursor": page["nextCursor"]}) as r:
        later = (await r.json())["items"]
    assert events.CARD_ISSUED in {e["type"] for e in later} and later[0]["eventId"] > ids[-1]


async def test_network_advices_are_events_even_over_a_decline(api, jwe_key):
    from antaca_auth.authorization import AuthorizationRequest

    p = await Payments().setup(api, jwe_key, user_funds=1_000)
    network_id, engine = uuid.UUID(p.network_id), api.services.engine
    body = p.request(amount=5_000)
    declined = (await p.send("/network/authorizations", body))[1]
    assert declined["decision"] == "DECLINED"
    # The network stood in and approved (an 0120 advice): the decline's event stays, a new one
    # says the authorization is approved.
    advice = await engine.book_advice(network_id, msgspec.convert(body, AuthorizationRequest))
    assert advice.decision == "APPROVED"
    found = await partner_events(api, p.w.partner, objectId=declined["authorizationId"])
    assert [e["type"] for e in found] == [events.AUTHORIZATION_DECLINED,
                                          events.AUTHORIZATION_APPROVED]
    assert found[0]["eventId"] == declined["authorizationId"] != found[1]["eventId"]
    fresh = await engine.book_advice(network_id, msgspec.convert(p.request(amount=200),
                                                                 AuthorizationRequest))
    await expect(api, p.w.partner, events.AUTHORIZATION_APPROVED, fresh.authorization_id,
                 p.card, 1)


def test_every_type_is_tested():
    """Runs last in this module: every event type was checked by a test above."""
    missing = events.EVENT_TYPES - SEEN - NOT_CAUSED_HERE
    if not SEEN:
        pytest.skip("run with the rest of the module")
    assert missing == set()
