"""Card replacement and renewal, delivery tracking, activation with a PIN, the never-activated
decline and PAN lengths, through the real HTTP channels (and ISO 8583) against PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from antaca_api.personalization import process_due_orders
from antaca_api.replacement import renew_expiring_cards
from antaca_api.routing import Role
from antaca_auth.pans import luhn_valid
from tests.api_harness import bearer
from tests.integration.test_authorizations import Payments
from tests.integration.test_iso8583 import Network, listener  # noqa: F401 (the fixture)

ADDRESS = {"line1": "Main 1", "city": "Warsaw", "postalCode": "00-001", "country": "PL"}
NEW_ADDRESS = {"line1": "Long 7", "city": "Krakow", "postalCode": "30-001", "country": "PL"}


def shown(address: dict) -> dict:
    """An address as the API answers it: the optional second line too."""
    return {"line2": None, **address}


@pytest.fixture(scope="module")
def jwe_key():
    from joserfc.jwk import RSAKey

    return RSAKey.generate_key(2048)


async def later(api, seconds: float, job):
    """Run a background job as if `seconds` had passed."""
    real_clock = api.services.clock
    try:
        api.services.clock = lambda: real_clock() + timedelta(seconds=seconds)
        return await job()
    finally:
        api.services.clock = real_clock


async def link_orders(api):
    """The processor's reports for every order placed so far: personalized and linked."""
    await later(api, 61, lambda: process_due_orders(api.services, recheck_seconds=0))


async def admin_call(p: Payments, method: str, path: str, body=None):
    async with p.api.client().request(method, f"{p.api.http}{path}", json=body,
                                      headers=bearer(p.w.admin)) as r:
        return r.status, await r.json()


async def partner_call(p: Payments, method: str, path: str, body=None, partner=None):
    async with (partner or p.w.partner).request(method, f"{p.api.https}{path}", json=body) as r:
        return r.status, await r.json()


def payment_for(card: dict) -> dict:
    """A payment request's card fields for card data as the holder reads it (expiry MM/YY)."""
    return {"pan": card["pan"], "expiry": card["expiry"][3:] + card["expiry"][:2],
            "cvc2": card["cvc2"]}


async def events(p: Payments, card_id: str) -> list[tuple]:
    status, body = await admin_call(p, "GET", f"/admin/cards/{card_id}/events")
    assert status == 200, body
    return [(e["event"], e["fromState"], e["toState"], e["reason"]) for e in body["items"]]


async def test_a_replaced_card_declines_1011_and_its_successor_pays_from_the_same_balance(
        api, jwe_key):
    p = await Payments().setup(api, jwe_key, user_funds=10_000)
    w, old = p.w, p.card
    assert (await p.authorize(amount=1000))["decision"] == "APPROVED"

    status, new = await w.app_plain("POST", f"/customers/me/cards/{old['cardId']}/replace",
                                    {"reason": "LOST"})
    assert status == 201, new
    assert (new["status"], new["kind"], new["balanceId"]) == ("ACTIVE", "VIRTUAL", w.balance)
    assert (new["replacesCardId"], new["replacementReason"]) == (old["cardId"], "LOST")
    status, locked = await w.app_plain("GET", f"/customers/me/cards/{old['cardId']}/status")
    assert (locked["status"], locked["lockReason"]) == ("LOCKED", 8)

    answer = await p.authorize(amount=500)
    assert (answer["decision"], answer["responseCode"], answer["actionCode"], answer["reason"]) == (
        "DECLINED", "62", "1011", "CARD_LOCKED_CARD_REPLACED")
    status, data = await w.app_jwe("GET", f"/customers/me/cards/{new['cardId']}")
    assert status == 200 and data["pan"] != old["pan"] and luhn_valid(data["pan"])
    answer = await p.authorize(amount=2000, **payment_for(data))
    assert (answer["decision"], answer["availableAfter"]) == ("APPROVED", 10_000 - 1000 - 2000)

    status, body = await w.app_plain("POST", f"/customers/me/cards/{old['cardId']}/unlock")
    assert (status, body["code"]) == (409, "CARD_LOCK_IRREVERSIBLE")
    status, body = await w.app_plain("POST", f"/customers/me/cards/{old['cardId']}/replace",
                                     {"reason": "STOLEN"})
    assert (status, body["code"]) == (409, "CARD_ALREADY_REPLACED")
    status, body = await w.app_plain("POST", f"/customers/me/cards/{new['cardId']}/replace",
                                     {"reason": "LOSTT"})
    assert status == 400
    assert await events(p, old["cardId"]) == [("CREATED", None, "PENDING", None),
                                              ("GENERATED", "PENDING", "ACTIVE", None),
                                              ("REPLACED", "ACTIVE", "LOCKED", 8)]
    status, listing = await w.app_plain("GET", "/customers/me/cards")
    assert [(c["cardId"], c["status"]) for c in listing["items"]] == [
        (old["cardId"], "LOCKED"), (new["cardId"], "ACTIVE")]

    # The partner and administrators replace through their own routes, the same function.
    status, by_partner = await partner_call(
        p, "POST", f"/secure/customers/{w.cid}/cards/{new['cardId']}/replace", {"reason": "STOLEN"})
    assert (status, by_partner["replacesCardId"]) == (201, new["cardId"]), by_partner
    _, stranger = await api.partner(w.admin)
    status, body = await partner_call(
        p, "POST", f"/secure/customers/{w.cid}/cards/{by_partner['cardId']}/replace",
        {"reason": "LOST"}, partner=stranger)
    assert status == 404
    token = await api.admin_token(Role.EMPLOYEE)
    async with api.client().post(f"{api.http}/admin/cards/{by_partner['cardId']}/replace",
                                 json={"reason": "DAMAGED"}, headers=bearer(token)) as r:
        by_admin = await r.json()
        assert r.status == 201, by_admin
    assert by_admin["replacementReason"] == "DAMAGED" and by_admin["balanceId"] == w.balance
    await p.assert_clean()


async def test_a_physical_replacement_is_ordered_linked_and_activated_with_its_pin(api, jwe_key):
    p = await Payments().setup(api, jwe_key, user_funds=5_000)
    w = p.w
    order = {"balanceId": w.balance, "nameOnCard": "ADA LOVELACE", "deliveryAddress": ADDRESS,
             "deliveryMethod": "COURIER"}
    status, card = await w.app_jwe("POST", "/customers/me/cards/physical", order)
    assert status == 201, card
    await link_orders(api)
    status, body = await w.app_plain("POST", f"/customers/me/cards/{card['cardId']}/activate")
    assert body["status"] == "ACTIVE"

    status, new = await partner_call(
        p, "POST", f"/secure/customers/{w.cid}/cards/{card['cardId']}/replace",
        {"reason": "DAMAGED", "deliveryAddress": NEW_ADDRESS})
    assert (status, new["status"], new["kind"]) == (201, "ORDERED", "PHYSICAL"), new
    status, delivery = await w.app_plain("GET", f"/customers/me/cards/{new['cardId']}/delivery")
    assert (status, delivery["deliveryMethod"], delivery["status"]) == (200, "COURIER", "ORDERED")
    # The new address, the old card's delivery method.
    assert delivery["deliveryAddress"] == shown(NEW_ADDRESS)
    await link_orders(api)
    status, linked = await w.app_plain("GET", f"/customers/me/cards/{new['cardId']}/status")
    assert linked["status"] == "INACTIVE"

    # The PIN comes with the activation, and only in a JWE.
    activate = f"/customers/me/cards/{new['cardId']}/activate"
    status, body = await w.app_plain("POST", activate, {"pin": "4821"})
    assert (status, body["code"]) == (400, "ENCRYPTION_REQUIRED")
    status, body = await w.app_jwe("POST", activate, {"pin": "1111"})
    assert (status, body["code"]) == (400, "INVALID_PIN")
    status, body = await w.jwe.request(p.api.client(), "POST",
                                       f"{api.http}/admin/cards/{new['cardId']}/activate",
                                       {"pin": "4821"}, headers=bearer(w.admin))
    assert (status, body["code"]) == (403, "FORBIDDEN")  # administrators never set a PIN
    status, body = await w.app_jwe("POST", activate, {"pin": "4821"})
    assert (status, body["status"]) == (200, "ACTIVE"), body
    assert await events(p, new["cardId"]) == [("CREATED", None, "ORDERED", None),
                                              ("LINKED", "ORDERED", "INACTIVE", None),
                                              ("ACTIVATED", "INACTIVE", "ACTIVE", None),
                                              ("PIN_SET", "ACTIVE", "ACTIVE", None)]
    status, data = await w.app_jwe("GET", f"/customers/me/cards/{new['cardId']}")
    p.card = data
    answer = await p.authorize(type="POS", cvc2=None, pin="4821", amount=700)
    assert (answer["decision"], answer["availableAfter"]) == ("APPROVED", 4_300)


async def test_delivery_is_tracked_on_every_channel(api, jwe_key):
    p = await Payments().setup(api, jwe_key, user_funds=0)
    w = p.w
    status, card = await partner_call(p, "POST", f"/secure/customers/{w.cid}/cards/physical", None)
    assert status == 400  # JWE required to order
    order = {"balanceId": w.balance, "nameOnCard": "ADA", "deliveryAddress": ADDRESS}
    status, card = await w.jwe.request(
        w.partner, "POST", f"{api.https}/secure/customers/{w.cid}/cards/physical", order)
    assert status == 201, card
    paths = {"customer": f"/customers/me/cards/{card['cardId']}/delivery",
             "partner": f"/secure/customers/{w.cid}/cards/{card['cardId']}/delivery",
             "admin": f"/admin/cards/{card['cardId']}/delivery"}

    async def seen() -> dict[str, tuple]:
        answers = {"customer": await w.app_plain("GET", paths["customer"]),
                   "partner": await partner_call(p, "GET", paths["partner"]),
                   "admin": await admin_call(p, "GET", paths["admin"])}
        return {who: (status, body["deliveryMethod"], body["status"],
                      body["deliveryAddress"] == shown(ADDRESS))
                for who, (status, body) in answers.items()}

    assert set((await seen()).values()) == {(200, "POST", "ORDERED", True)}  # post by default
    await link_orders(api)
    assert set((await seen()).values()) == {(200, "POST", "LINKED", True)}
    await later(api, 200, lambda: process_due_orders(api.services, recheck_seconds=0))
    assert set((await seen()).values()) == {(200, "POST", "DELIVERED", True)}

    _, stranger = await api.partner(w.admin)
    status, body = await partner_call(p, "GET", paths["partner"], partner=stranger)
    assert (status, body["code"]) == (404, "NOT_FOUND")
    status, body = await w.app_plain("GET", f"/customers/me/cards/{p.card['cardId']}/delivery")
    assert (status, body["code"]) == (409, "PHYSICAL_CARD_ONLY")  # a virtual card


async def test_a_never_activated_card_declines_57_with_1018(api, jwe_key):
    p = await Payments().setup(api, jwe_key)
    w = p.w
    order = {"balanceId": w.balance, "nameOnCard": "ADA", "deliveryAddress": ADDRESS}
    status, card = await w.app_jwe("POST", "/customers/me/cards/physical", order)
    await link_orders(api)
    status, data = await w.jwe.request(
        w.partner, "GET", f"{api.https}/secure/customers/{w.cid}/cards/{card['cardId']}")
    assert (status, data["status"]) == (200, "INACTIVE"), data
    answer = await p.authorize(**payment_for(data))
    assert (answer["decision"], answer["responseCode"], answer["actionCode"], answer["reason"]) == (
        "DECLINED", "57", "1018", "CARD_NOT_ACTIVATED")
    status, _ = await w.app_plain("POST", f"/customers/me/cards/{card['cardId']}/activate", {})
    assert status == 200  # `{}` is an activation without a PIN
    assert (await p.authorize(**payment_for(data)))["decision"] == "APPROVED"


async def test_unlocking_a_pin_tries_lock_gives_the_full_tries_back(api, jwe_key):
    p = await Payments().setup(api, jwe_key)
    w, card = p.w, p.card["cardId"]
    status, _ = await w.app_jwe("POST", f"/customers/me/cards/{card}/pin", {"pin": "4821"})
    assert status == 204
    pos = {"type": "POS", "cvc2": None}
    reasons = [(await p.authorize(**pos, pin="1357"))["reason"] for _ in range(3)]
    assert reasons == ["WRONG_PIN", "WRONG_PIN", "PIN_TRIES_EXCEEDED"]
    status, locked = await w.app_plain("GET", f"/customers/me/cards/{card}/status")
    assert (locked["status"], locked["lockReason"]) == ("LOCKED", 6)
    status, unlocked = await w.app_plain("POST", f"/customers/me/cards/{card}/unlock")
    assert (status, unlocked["status"]) == (200, "ACTIVE")
    async with api.services.pool.acquire() as conn:
        assert await conn.fetchval("SELECT pin_failures FROM cards WHERE id = $1",
                                   uuid.UUID(card)) == 0
    # Three tries again: two wrong PINs decline without locking, the right one pays.
    reasons = [(await p.authorize(**pos, pin="1357"))["reason"] for _ in range(2)]
    assert reasons == ["WRONG_PIN", "WRONG_PIN"]
    assert (await p.authorize(**pos, pin="4821"))["decision"] == "APPROVED"


def renewal_clock(card: dict, days_before: int) -> datetime:
    """`days_before` days before the last day of the card's expiry month (expiry MM/YY)."""
    month, year = int(card["expiry"][:2]), 2000 + int(card["expiry"][3:])
    first_of_next = datetime(year + month // 12, month % 12 + 1, 1, 12, tzinfo=UTC)
    return first_of_next - timedelta(days=1 + days_before)


async def test_the_renewal_job_renews_cards_expiring_within_its_window(api, jwe_key):
    p = await Payments().setup(api, jwe_key, user_funds=10_000)
    w, virtual = p.w, p.card
    order = {"balanceId": w.balance, "nameOnCard": "ADA", "deliveryAddress": ADDRESS,
             "deliveryMethod": "COURIER"}
    status, physical = await w.app_jwe("POST", "/customers/me/cards/physical", order)
    await link_orders(api)
    await w.app_plain("POST", f"/customers/me/cards/{physical['cardId']}/activate")

    # Both cards expire at the end of the same month; ten days before it, a five-day window
    # renews nothing and a thirty-day window renews both, once.
    now = renewal_clock(virtual, days_before=10)
    real_clock = api.services.clock
    api.services.clock = lambda: now
    try:
        assert await renew_expiring_cards(api.services, window_days=5) == 0
        assert await renew_expiring_cards(api.services, window_days=30) == 2
        assert await renew_expiring_cards(api.services, window_days=30) == 0
    finally:
        api.services.clock = real_clock

    # The virtual card keeps its PAN with a new expiry and CVC2; the old ones stop working.
    status, renewed = await w.app_jwe("GET", f"/customers/me/cards/{virtual['cardId']}")
    assert renewed["pan"] == virtual["pan"] and renewed["expiry"] != virtual["expiry"]
    answer = await p.authorize(amount=100)
    assert (answer["decision"], answer["reason"]) == ("DECLINED", "WRONG_EXPIRY")
    assert (await p.authorize(amount=100, **payment_for(renewed)))["decision"] == "APPROVED"
    assert (await events(p, virtual["cardId"]))[-1] == ("RENEWED", "ACTIVE", "ACTIVE", None)

    # The physical card gets a new order (same method and address) and works until its
    # successor is activated.
    async with api.services.pool.acquire() as conn:
        successor = str(await conn.fetchval("SELECT id FROM cards WHERE replaces_card_id = $1",
                                            uuid.UUID(physical["cardId"])))
    status, new = await partner_call(p, "GET",
                                     f"/secure/customers/{w.cid}/cards/{successor}/status")
    assert (new["status"], new["replacementReason"]) == ("ORDERED", "RENEWAL")
    status, delivery = await admin_call(p, "GET", f"/admin/cards/{successor}/delivery")
    assert (delivery["deliveryMethod"], delivery["deliveryAddress"]) == ("COURIER", shown(ADDRESS))
    status, old = await w.app_plain("GET", f"/customers/me/cards/{physical['cardId']}/status")
    assert old["status"] == "ACTIVE"
    assert (await events(p, physical["cardId"]))[-1] == ("RENEWAL_ORDERED", "ACTIVE", "ACTIVE",
                                                         None)
    api.services.clock = lambda: now + timedelta(seconds=61)  # the order was placed at `now`
    try:
        await process_due_orders(api.services, recheck_seconds=0)
    finally:
        api.services.clock = real_clock
    status, body = await w.app_plain("POST", f"/customers/me/cards/{successor}/activate")
    assert body["status"] == "ACTIVE"
    status, old = await w.app_plain("GET", f"/customers/me/cards/{physical['cardId']}/status")
    assert (old["status"], old["lockReason"]) == ("LOCKED", 8)


@pytest.mark.parametrize("length", [14, 19])
async def test_pan_lengths_14_and_19_end_to_end(api, jwe_key, listener, length):  # noqa: F811
    p = await Network().setup(api, jwe_key)
    w = p.w
    async with api.client().post(f"{api.http}/admin/programs", headers=bearer(w.admin), json={
            "partnerId": w.partner_id, "name": f"PAN {length}", "binPrefix": "535522",
            "panLength": length, "currency": "EUR", "fundingModel": "DEPOSIT",
            "validityMonths": 24}) as r:
        assert r.status == 201, await r.text()
        program = (await r.json())["programId"]
    status, card = await w.app_jwe("POST", "/customers/me/cards/virtual",
                                   {"balanceId": w.balance, "programId": program})
    assert status == 201 and len(card["pan"]) == length and luhn_valid(card["pan"])
    p.card = card
    assert (await p.authorize(amount=100))["decision"] == "APPROVED"  # JSON
    client = await p.connect(listener)
    mti, answer = await client.request("0100", p.fields(amount=200))  # ISO 8583
    assert (mti, answer[39], answer[2]) == ("0110", "00", card["pan"])
    await p.done()


async def test_pan_lengths_outside_14_to_19_are_refused(api, jwe_key, listener):  # noqa: F811
    p = await Network().setup(api, jwe_key)
    w = p.w
    for length in (13, 20):
        async with api.client().post(f"{api.http}/admin/programs", headers=bearer(w.admin), json={
                "partnerId": w.partner_id, "name": "Bad", "binPrefix": "535522",
                "panLength": length, "currency": "EUR", "fundingModel": "DEPOSIT",
                "validityMonths": 24}) as r:
            assert r.status == 400, length
    for pan in ("5355220000000", "53552200000000000000"):  # 13 and 20 digits
        status, body = await p.send("/network/authorizations", p.request(pan=pan))
        assert (status, body["code"]) == (400, "VALIDATION_ERROR")
        async with p.network.post(f"{api.https}/network/cards/lock",
                                  json={"pan": pan, "reason": 3}) as r:
            assert r.status == 400
    client = await p.connect(listener)
    mti, answer = await client.request("0100", p.fields(f2="5355220000000"))
    assert (mti, answer[39]) == ("0110", "30")  # a format error
    await p.done()


async def test_a_replaced_card_pays_no_recurring_fee_and_its_replacement_no_creation_fee(
        api, jwe_key):
    from antaca_auth import charges
    from tests.integration.test_fees import charge_rows, publish

    p = await Payments().setup(api, jwe_key, user_funds=10_000)
    await publish(p, {"cardRecurring": {"period": "MONTHLY", "amount": 100},
                      "virtualCardCreation": 250})
    status, new = await p.w.app_plain("POST", f"/customers/me/cards/{p.card['cardId']}/replace",
                                      {"reason": "STOLEN"})
    assert status == 201, new
    assert await charge_rows(p, "VIRTUAL_CARD_CREATION") == []
    next_month = (datetime.now(UTC).replace(day=1) + timedelta(days=32)).replace(day=1, hour=12)
    charged = await charges.charge_recurring(api.services.pool, api.services.ledger, next_month)
    assert len(charged) == 1
    assert [r["card_id"] for r in await charge_rows(p, "CARD_RECURRING")] == [
        uuid.UUID(new["cardId"])]
    await p.assert_clean()
