"""Cards end to end over HTTP and mutual TLS: issuing, the physical flow, operations, card data safety."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from datetime import timedelta

import pytest

from antaca_api.personalization import process_due_orders
from antaca_api.routing import Role
from antaca_auth.pans import luhn_check_digit, luhn_valid
from tests.api_harness import JweClient, bearer, create_network, pair_device, register_customer

BIN = "535522"
APP_PIN = "2580"  # the test customers' application PIN (step-up)
# Customer-channel requests that need a fresh step-up proof: full card data, CVV reset, PIN set.
STEP_UP_PATH = re.compile(r"/customers/me/cards/[0-9a-f-]{36}(/cvv|/pin)?")


def needs_step_up(method: str, path: str) -> bool:
    match = STEP_UP_PATH.fullmatch(path)
    if match is None or method == "DELETE":
        return False
    return (method == "GET") == (match.group(1) is None)


@pytest.fixture(scope="module")
def jwe_key():
    from joserfc.jwk import RSAKey

    return RSAKey.generate_key(2048)


class World:
    """An admin, a partner with a EUR program, a verified customer with a funded balance and a paired app."""

    async def setup(self, api, jwe_key, **program_config):
        self.api = api
        self.admin = await api.admin_token()
        self.partner_id, self.partner = await api.partner(self.admin)
        async with api.client().post(f"{api.http}/admin/programs", headers=bearer(self.admin), json={
                "partnerId": self.partner_id, "name": "Debit EUR", "binPrefix": BIN, "panLength": 16,
                "currency": "EUR", "fundingModel": "DEPOSIT", "validityMonths": 36,
                "processorConfig": program_config}) as r:
            assert r.status == 201, await r.text()
            self.program = await r.json()
        self.customer = await register_customer(api, self.partner, verified=True)
        self.cid = self.customer["customerId"]
        async with self.partner.post(f"{api.https}/secure/customers/{self.cid}/balances", json={"currency": "EUR"}) as r:
            self.balance = (await r.json())["balanceId"]
        self.session = await pair_device(api, self.partner, self.cid)
        self.app = api.client()
        self.me = bearer(self.session["sessionToken"])
        async with api.client().get(f"{api.http}/public-key") as r:
            self.jwe = JweClient((await r.json())["pem"], jwe_key)
        status, body = await self.jwe.request(self.app, "PUT", f"{api.http}/customers/me/app-pin",
                                              {"pin": APP_PIN}, headers=self.me)
        assert status == 204, body
        return self

    async def step_up(self, pin: str = APP_PIN) -> tuple[int, dict]:
        return await self.jwe.request(self.app, "POST", f"{self.api.http}/customers/me/step-up",
                                      {"pin": pin}, headers=self.me)

    async def app_jwe(self, method, path, body=None, *, step_up: bool = True):
        """A JWE request of the app; a fresh step-up proof goes with those that need one."""
        headers = dict(self.me)
        if step_up and needs_step_up(method, path):
            status, proof = await self.step_up()
            assert status == 201, proof
            headers["Step-Up-Token"] = proof["stepUpToken"]
        return await self.jwe.request(self.app, method, f"{self.api.http}{path}", body,
                                      headers=headers)

    async def app_plain(self, method, path, body=None):
        async with self.app.request(method, f"{self.api.http}{path}", json=body, headers=self.me) as r:
            return r.status, (await r.json() if r.status != 204 else None)

    async def virtual(self):
        status, card = await self.app_jwe("POST", "/customers/me/cards/virtual", {"balanceId": self.balance})
        assert status == 201, card
        return card


async def test_virtual_card_is_active_with_valid_data_and_masked_in_lists(api, jwe_key):
    w = await World().setup(api, jwe_key)
    card = await w.virtual()
    assert card["status"] == "ACTIVE" and card["kind"] == "VIRTUAL"
    assert card["pan"].startswith(BIN) and len(card["pan"]) == 16 and luhn_valid(card["pan"])
    assert len(card["cvc2"]) == 3 and card["cvc2"].isdigit() and len(card["expiry"]) == 5
    status, body = await w.app_plain("POST", "/customers/me/cards/virtual", {"balanceId": w.balance})
    assert (status, body["code"]) == (400, "ENCRYPTION_REQUIRED")
    status, listing = await w.app_plain("GET", "/customers/me/cards")
    assert [c["maskedPan"] for c in listing["items"]] == [f"{BIN}******{card['pan'][-4:]}"]
    assert card["pan"] not in str(listing)
    status, data = await w.app_jwe("GET", f"/customers/me/cards/{card['cardId']}")
    assert (status, data["pan"], data["cvc2"]) == (200, card["pan"], card["cvc2"])
    status, data = await w.jwe.request(w.partner, "GET", f"{api.https}/secure/customers/{w.cid}/cards/{card['cardId']}")
    assert data["pan"] == card["pan"]
    status, balance = await w.app_plain("GET", f"/customers/me/balances/{w.balance}")
    assert [(c["cardId"], c["maskedPan"]) for c in balance["cards"]] == [(card["cardId"], listing["items"][0]["maskedPan"])]


async def test_card_data_is_never_stored_or_logged_in_clear(api, jwe_key, caplog):
    caplog.set_level(logging.DEBUG)
    w = await World().setup(api, jwe_key)
    card = await w.virtual()
    status, _ = await w.app_jwe("POST", f"/customers/me/cards/{card['cardId']}/pin", {"pin": "4821"})
    assert status == 204
    async with api.services.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM cards WHERE id = $1", uuid.UUID(card["cardId"]))
        dump = " ".join(str(v) for v in row.values())
        events = str(await conn.fetch("SELECT * FROM card_events"))
        audit = str(await conn.fetch("SELECT * FROM audit_log"))
    for secret in (card["pan"], card["pan"][6:12]):
        assert secret not in dump and secret.encode() not in bytes(row["pan_ciphertext"])
        assert secret not in events and secret not in audit
    assert "4821" not in dump and row["pin_verification"] is not None
    assert (row["bin"], row["last4"]) == (BIN, card["pan"][-4:])
    logged = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    for secret in (card["pan"], card["cvc2"] + '"', "4821"):
        assert secret not in logged


async def test_admin_issues_virtual_cards_but_never_sees_card_data(api, jwe_key):
    w = await World().setup(api, jwe_key)
    path = f"{api.http}/admin/customers/{w.cid}/cards/virtual"
    for role, expected in ((Role.EMPLOYEE, 403), (Role.MANAGER, 201), (Role.ADMIN, 201)):
        token = await api.admin_token(role)
        status, body = await w.jwe.request(api.client(), "POST", path, {"balanceId": w.balance},
                                           headers=bearer(token))
        assert status == expected, body
        if status == 201:
            assert "pan" not in body and "cvc2" not in body and body["maskedPan"].startswith(BIN)
    async with api.client().get(f"{api.http}/admin/audit-log", headers=bearer(w.admin)) as r:
        actions = [e["action"] for e in (await r.json())["items"]]
    assert actions.count("POST /admin/customers/{customerId}/cards/virtual") == 2


async def test_async_virtual_card_and_failure(api, jwe_key):
    w = await World().setup(api, jwe_key)
    status, pending = await w.app_plain("POST", "/customers/me/cards/virtual/async", {"balanceId": w.balance})
    assert (status, pending["status"]) == (202, "PENDING")
    await asyncio.gather(*api.services.tasks)
    status, card = await w.app_plain("GET", f"/customers/me/cards/{pending['cardId']}/status")
    assert card["status"] == "ACTIVE" and card["maskedPan"].startswith(BIN)
    status, data = await w.app_jwe("GET", f"/customers/me/cards/{pending['cardId']}")
    assert luhn_valid(data["pan"])

    failing = await World().setup(api, jwe_key, fail_generation=True)
    status, pending = await failing.app_plain("POST", "/customers/me/cards/virtual/async", {"balanceId": failing.balance})
    await asyncio.gather(*api.services.tasks)
    status, card = await failing.app_plain("GET", f"/customers/me/cards/{pending['cardId']}/status")
    assert card["status"] == "FAILED" and card["failureReason"] and card["maskedPan"] is None
    status, body = await failing.app_jwe("POST", "/customers/me/cards/virtual", {"balanceId": failing.balance})
    assert (status, body["code"]) == (502, "PROCESSOR_ERROR")


async def test_physical_card_order_report_link_activate_pin(api, jwe_key):
    w = await World().setup(api, jwe_key, personalization_seconds=60)
    order = {"balanceId": w.balance, "nameOnCard": "ADA LOVELACE",
             "deliveryAddress": {"line1": "Main 1", "city": "Warsaw", "postalCode": "00-001", "country": "PL"}}
    status, card = await w.app_jwe("POST", "/customers/me/cards/physical", order)
    assert (status, card["status"], card["kind"]) == (201, "ORDERED", "PHYSICAL")
    card_id = card["cardId"]
    assert (await w.app_plain("GET", "/customers/me/cards"))[1]["items"] == []  # not the user's yet
    assert (await w.app_plain("GET", f"/customers/me/cards/{card_id}/status"))[0] == 404

    assert await process_due_orders(api.services) == 0  # still in production
    real_clock = api.services.clock
    try:
        api.services.clock = lambda: real_clock() + timedelta(seconds=61)
        assert await process_due_orders(api.services, recheck_seconds=0) == 1
        assert await process_due_orders(api.services, recheck_seconds=0) == 0  # a second pass changes nothing
        status, linked = await w.app_plain("GET", f"/customers/me/cards/{card_id}/status")
        assert linked["status"] == "INACTIVE"
        api.services.clock = lambda: real_clock() + timedelta(seconds=200)
        await process_due_orders(api.services, recheck_seconds=0)
    finally:
        api.services.clock = real_clock
    async with api.services.pool.acquire() as conn:
        assert await conn.fetchval("SELECT status FROM card_orders WHERE card_id = $1", uuid.UUID(card_id)) == "DELIVERED"

    status, body = await w.app_jwe("POST", f"/customers/me/cards/{card_id}/pin", {"pin": "1234"})
    assert (status, body["code"]) == (400, "INVALID_PIN")
    status, _ = await w.app_plain("POST", f"/customers/me/cards/{card_id}/activate")
    assert status == 200
    status, again = await w.app_plain("POST", f"/customers/me/cards/{card_id}/activate")
    assert (status, again["code"]) == (409, "CARD_NOT_INACTIVE")
    status, _ = await w.app_jwe("POST", f"/customers/me/cards/{card_id}/pin", {"pin": "4821"})
    assert status == 204
    async with api.client().get(f"{api.http}/admin/cards/{card_id}/events", headers=bearer(w.admin)) as r:
        events = [(e["event"], e["fromState"], e["toState"]) for e in (await r.json())["items"]]
    assert events == [("CREATED", None, "ORDERED"), ("LINKED", "ORDERED", "INACTIVE"),
                      ("ACTIVATED", "INACTIVE", "ACTIVE"), ("PIN_SET", "ACTIVE", "ACTIVE")]


async def test_lock_unlock_and_irreversible_locks(api, jwe_key):
    w = await World().setup(api, jwe_key)
    card = (await w.virtual())["cardId"]
    status, locked = await w.app_plain("POST", f"/customers/me/cards/{card}/lock", {"reason": 3})
    assert (status, locked["status"], locked["lockReason"]) == (200, "LOCKED", 3)
    status, unlocked = await w.app_plain("POST", f"/customers/me/cards/{card}/unlock")
    assert unlocked["status"] == "ACTIVE"
    status, body = await w.app_plain("POST", f"/customers/me/cards/{card}/lock", {"reason": 9})
    assert status == 400
    async with w.partner.post(f"{api.https}/secure/customers/{w.cid}/cards/{card}/lock", json={"reason": 2}) as r:
        assert (await r.json())["lockReason"] == 2
    status, body = await w.app_plain("POST", f"/customers/me/cards/{card}/unlock")
    assert (status, body["code"]) == (409, "CARD_LOCK_IRREVERSIBLE")
    async with api.client().post(f"{api.http}/admin/cards/{card}/unlock", headers=bearer(w.admin)) as r:
        assert (r.status, (await r.json())["code"]) == (409, "CARD_LOCK_IRREVERSIBLE")


async def test_removed_card_stays_removed(api, jwe_key):
    w = await World().setup(api, jwe_key)
    card = (await w.virtual())["cardId"]
    status, removed = await w.app_plain("DELETE", f"/customers/me/cards/{card}")
    assert removed["status"] == "REMOVED"
    for method, path, body in (("POST", f"/customers/me/cards/{card}/lock", {"reason": 3}),
                               ("POST", f"/customers/me/cards/{card}/unlock", None),
                               ("POST", f"/customers/me/cards/{card}/activate", None),
                               ("DELETE", f"/customers/me/cards/{card}", None)):
        status, body = await w.app_plain(method, path, body)
        assert (status, body["code"]) == (409, "CARD_REMOVED"), (path, body)
    async with w.partner.post(f"{api.https}/secure/customers/{w.cid}/cards/{card}/unlock") as r:
        assert (r.status, (await r.json())["code"]) == (409, "CARD_REMOVED")
    status, body = await w.app_jwe("GET", f"/customers/me/cards/{card}")
    assert (status, body["code"]) == (409, "CARD_DATA_UNAVAILABLE")
    status, body = await w.app_jwe("POST", f"/customers/me/cards/{card}/cvv")
    assert status == 409
    assert (await w.app_plain("GET", "/customers/me/cards"))[1]["items"] == []
    assert (await w.app_plain("GET", f"/customers/me/cards/{card}/status"))[1]["status"] == "REMOVED"


async def test_cvv_reset_invalidates_the_previous_cvc2(api, jwe_key):
    w = await World().setup(api, jwe_key)
    card = await w.virtual()
    status, fresh = await w.app_jwe("POST", f"/customers/me/cards/{card['cardId']}/cvv")
    assert status == 200 and fresh["pan"] == card["pan"]
    keys = api.services.card_keys
    expiry = card["expiry"][3:] + card["expiry"][:2]
    async with api.services.pool.acquire() as conn:
        counter = await conn.fetchval("SELECT cvc_counter FROM cards WHERE id = $1", uuid.UUID(card["cardId"]))
    assert counter == 1
    assert keys.cvc2_matches(card["pan"], expiry, counter, fresh["cvc2"])
    if fresh["cvc2"] != card["cvc2"]:  # one chance in a thousand that the new code equals the old
        assert not keys.cvc2_matches(card["pan"], expiry, counter, card["cvc2"])
    async with api.client().post(f"{api.http}/admin/cards/{card['cardId']}/cvv", headers=bearer(w.admin)) as r:
        assert r.status == 400  # JWE required for administrators too
    status, body = await w.jwe.request(api.client(), "POST", f"{api.http}/admin/cards/{card['cardId']}/cvv",
                                       headers=bearer(w.admin))
    assert status == 200 and "cvc2" not in body


async def test_network_locks_a_card_by_pan(api, jwe_key):

    w = await World().setup(api, jwe_key)
    card = await w.virtual()
    _, certificate = await create_network(api, w.admin)
    network_client = api.client(cert=certificate)
    async with w.partner.post(f"{api.https}/network/cards/lock", json={"pan": card["pan"], "reason": 1}) as r:
        assert r.status == 401  # a partner certificate is not a network's
    async with network_client.post(f"{api.https}/network/cards/lock", json={"pan": card["pan"], "reason": 1}) as r:
        result = await r.json()
    assert (result["status"], result["lockReason"], result["actionCode"]) == ("LOCKED", 1, "2008")
    assert card["pan"] not in str(result)
    async with network_client.post(f"{api.https}/network/cards/lock", json={"pan": "5355220000000000", "reason": 7}) as r:
        assert r.status == 404
    status, body = await w.app_plain("POST", f"/customers/me/cards/{card['cardId']}/unlock")
    assert body["code"] == "CARD_LOCK_IRREVERSIBLE"


async def test_cards_need_verified_owner_and_own_balance(api, jwe_key):
    w = await World().setup(api, jwe_key)
    other = await register_customer(api, w.partner)  # not verified
    status, body = await w.jwe.request(w.partner, "POST", f"{api.https}/secure/customers/{other['customerId']}/cards/virtual",
                                       {"balanceId": w.balance})
    assert (status, body["code"]) == (409, "CUSTOMER_NOT_VERIFIED")
    verified_other = await register_customer(api, w.partner, verified=True)
    status, body = await w.jwe.request(
        w.partner, "POST", f"{api.https}/secure/customers/{verified_other['customerId']}/cards/virtual",
        {"balanceId": w.balance})
    assert status == 404  # someone else's balance
    card = await w.virtual()
    _, stranger = await api.partner(w.admin)
    async with stranger.get(f"{api.https}/secure/customers/{w.cid}/cards/{card['cardId']}/status") as r:
        assert r.status == 404
    async with w.partner.post(f"{api.https}/secure/customers/{w.cid}/balances/{w.balance}/block") as r:
        assert r.status == 200
    status, body = await w.app_jwe("POST", "/customers/me/cards/virtual", {"balanceId": w.balance})
    assert (status, body["code"]) == (409, "BALANCE_NOT_ACTIVE")


async def test_pans_are_unique_even_in_a_tiny_bin_range(api, jwe_key):
    """A 14-digit range with two free digits has a hundred PANs; with ninety taken, ten are left:
    cards never share one, the rest fail cleanly."""
    w = await World().setup(api, jwe_key)
    async with api.client().post(f"{api.http}/admin/programs", headers=bearer(w.admin), json={
            "partnerId": w.partner_id, "name": "Tiny", "binPrefix": "53552212345", "panLength": 14,
            "currency": "EUR", "fundingModel": "DEPOSIT", "validityMonths": 12}) as r:
        tiny = (await r.json())["programId"]
    taken = [body + luhn_check_digit(body) for body in (f"53552212345{n:02d}" for n in range(90))]
    async with api.services.pool.acquire() as conn:
        await conn.executemany(
            """INSERT INTO cards (id, program_id, partner_id, balance_id, customer_id, kind, state,
                                  pan_fingerprint)
               VALUES ($1, $2, $3, $4, $5, 'VIRTUAL', 'FAILED', $6)""",
            [(uuid.uuid4(), uuid.UUID(tiny), uuid.UUID(w.partner_id), uuid.UUID(w.balance),
              uuid.UUID(w.cid), api.services.card_keys.fingerprint(pan)) for pan in taken])
    pans, failures = [], 0
    for _ in range(14):
        status, body = await w.app_jwe("POST", "/customers/me/cards/virtual",
                                       {"balanceId": w.balance, "programId": tiny})
        if status == 201:
            pans.append(body["pan"])
        else:
            assert (status, body["code"]) == (502, "PROCESSOR_ERROR")
            failures += 1
    assert len(pans) == len(set(pans)) <= 10 and failures >= 4 and not set(pans) & set(taken)
    assert all(p.startswith("53552212345") and luhn_valid(p) for p in pans)
    status, body = await w.app_jwe("POST", "/customers/me/cards/virtual", {"balanceId": w.balance})
    assert (status, body["code"]) == (400, "PROGRAM_REQUIRED")  # two EUR programs now: name one


CORPORATE_ADDRESS = {"line1": "Business Park 5", "city": "Gdansk", "postalCode": "80-001",
                     "country": "PL"}


async def approved_corporation(api, partner_id: str) -> tuple[str, str]:
    """A KYB-approved corporation of the partner with a EUR balance (set up directly in the database)."""
    from antaca_api.balances import open_balance

    corporation_id = uuid.uuid4()
    async with api.services.pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """INSERT INTO corporations (id, partner_id, name, registration_number, country, address, kyb_status)
               VALUES ($1, $2, 'Acme', 'KRS-1', 'PL', $3::jsonb, 'APPROVED')""",
            corporation_id, uuid.UUID(partner_id), json.dumps(CORPORATE_ADDRESS),
        )
        balance_id = await open_balance(conn, api.services.ledger, partner_id=uuid.UUID(partner_id),
                                        currency="EUR", corporation_id=corporation_id)
    return str(corporation_id), str(balance_id)


async def test_corporate_cards(api, jwe_key):
    w = await World().setup(api, jwe_key)
    corporation, balance = await approved_corporation(api, w.partner_id)
    async with w.partner.post(f"{api.https}/lifecycle/v1/corporations/{corporation}/employees",
                              json={"name": "Grace Hopper", "email": "grace@acme.example"}) as r:
        assert r.status == 201, await r.text()
        employee = (await r.json())["employeeId"]
    status, card = await w.jwe.request(w.partner, "POST", f"{api.https}/secure/cards/virtual", {
        "dcCorporationId": corporation, "balanceId": balance, "employeeId": employee})
    assert status == 201 and card["balanceId"] == balance and luhn_valid(card["pan"])
    status, body = await w.jwe.request(w.partner, "POST", f"{api.https}/secure/cards/virtual", {
        "dcCorporationId": corporation, "balanceId": w.balance, "employeeId": employee})
    assert status == 404  # a user's balance is not the corporation's: cards never cross balances
    address = {"line1": "Main 1", "city": "Warsaw", "postalCode": "00-001", "country": "PL"}
    status, ordered = await w.jwe.request(w.partner, "POST", f"{api.https}/secure/cards/physical_with_pin", {
        "dcCorporationId": corporation, "balanceId": balance, "employeeId": employee,
        "nameOnCard": "GRACE HOPPER", "deliveryAddress": address, "pin": "4821"})
    assert status == 201 and ordered["status"] == "ORDERED"
    async with api.services.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT pin_verification, holder_name, employee_id FROM cards WHERE id = $1",
            uuid.UUID(ordered["cardId"]))
    assert row["pin_verification"] is not None and row["holder_name"] == "Grace Hopper"
    assert str(row["employee_id"]) == employee
    status, body = await w.jwe.request(w.partner, "POST", f"{api.https}/secure/cards/physical_with_pin", {
        "dcCorporationId": corporation, "balanceId": balance, "employeeId": employee,
        "nameOnCard": "G", "deliveryAddress": address, "pin": "1111"})
    assert (status, body["code"]) == (400, "INVALID_PIN")
    async with api.services.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM cards WHERE corporation_id = $1",
                                   uuid.UUID(corporation)) == 2  # the refused order left no card behind
    _, stranger = await api.partner(w.admin)
    status, body = await w.jwe.request(stranger, "POST", f"{api.https}/secure/cards/virtual", {
        "dcCorporationId": corporation, "balanceId": balance, "employeeId": employee})
    assert status == 404


@pytest.mark.parametrize("channel", ["customer", "partner", "admin-employee"])
async def test_every_operation_on_every_channel(api, jwe_key, channel):
    """Order → link → activate → lock → unlock, and list, through one channel at a time."""
    w = await World().setup(api, jwe_key)
    if channel == "customer":
        session, base, headers, prefix = w.app, api.http, w.me, "/customers/me/cards"
        card_base = prefix
    elif channel == "partner":
        session, base, headers, prefix = w.partner, api.https, {}, f"/secure/customers/{w.cid}/cards"
        card_base = prefix
    else:
        token = await api.admin_token(Role.EMPLOYEE)  # the product lets every admin role order and activate
        session, base, headers = api.client(), api.http, bearer(token)
        prefix, card_base = f"/admin/customers/{w.cid}/cards", "/admin/cards"
    order = {"balanceId": w.balance, "nameOnCard": "ADA",
             "deliveryAddress": {"line1": "Main 1", "city": "Warsaw", "postalCode": "00-001", "country": "PL"}}
    status, card = await w.jwe.request(session, "POST", f"{base}{prefix}/physical", order, headers=headers)
    assert (status, card["status"]) == (201, "ORDERED"), card
    real_clock = api.services.clock
    try:
        api.services.clock = lambda: real_clock() + timedelta(minutes=5)
        await process_due_orders(api.services)
    finally:
        api.services.clock = real_clock

    async def call(method, path, body=None):
        async with session.request(method, f"{base}{path}", json=body, headers=headers) as r:
            return r.status, await r.json()

    card_path = f"{card_base}/{card['cardId']}"
    assert (await call("POST", f"{card_path}/activate"))[1]["status"] == "ACTIVE"
    assert (await call("POST", f"{card_path}/lock", {"reason": 7}))[1]["lockReason"] == 7
    assert (await call("POST", f"{card_path}/unlock"))[1]["status"] == "ACTIVE"
    status, listing = await call("GET", prefix)
    assert [c["cardId"] for c in listing["items"]] == [card["cardId"]]
    assert "pan" not in listing["items"][0]


async def test_an_order_that_breaks_midway_leaves_a_failed_card_not_a_half_made_one(api, jwe_key, monkeypatch):
    from antaca_api.processors import PROCESSORS

    w = await World().setup(api, jwe_key)

    async def broken(*args, **kwargs):
        raise RuntimeError("processor connection reset")

    monkeypatch.setattr(PROCESSORS["simulated"], "order_physical", broken)
    order = {"balanceId": w.balance, "nameOnCard": "ADA",
             "deliveryAddress": {"line1": "Main 1", "city": "Warsaw", "postalCode": "00-001", "country": "PL"}}
    status, body = await w.app_jwe("POST", "/customers/me/cards/physical", order)
    assert (status, body["code"]) == (500, "INTERNAL_ERROR")
    async with api.services.pool.acquire() as conn:
        rows = await conn.fetch("SELECT state, pan_ciphertext, failure_reason FROM cards WHERE balance_id = $1",
                                uuid.UUID(w.balance))
        orders = await conn.fetchval("SELECT count(*) FROM card_orders")
    assert [(r["state"], r["pan_ciphertext"], r["failure_reason"]) for r in rows] == [("FAILED", None, "internal error")]
    assert orders == 0


async def test_another_customer_of_the_same_partner_cannot_see_a_card(api, jwe_key):
    """The app's card routes are scoped to the customer, not only to the partner: another app user
    of the same partner gets 404 and none of the card's data on each of them, and changes nothing."""
    w = await World().setup(api, jwe_key)
    card = await w.virtual()
    other = await register_customer(api, w.partner, verified=True)
    other_session = await pair_device(api, w.partner, other["customerId"], device_id="device-2")
    other_app = bearer(other_session["sessionToken"])
    base = f"{api.http}/customers/me/cards/{card['cardId']}"
    status, body = await w.jwe.request(api.client(), "GET", base, headers=other_app)
    assert (status, body["code"]) == (403, "STEP_UP_REQUIRED")  # the same for any card id
    status, _ = await w.jwe.request(api.client(), "PUT", f"{api.http}/customers/me/app-pin",
                                    {"pin": "1470"}, headers=other_app)
    status, proof = await w.jwe.request(api.client(), "POST", f"{api.http}/customers/me/step-up",
                                        {"pin": "1470"}, headers=other_app)
    assert status == 201, proof
    stepped_up = {**other_app, "Step-Up-Token": proof["stepUpToken"]}
    status, body = await w.jwe.request(api.client(), "GET", base, headers=stepped_up)
    assert (status, body["code"]) == (404, "NOT_FOUND")
    assert card["pan"] not in str(body) and card["pan"][-4:] not in body["message"]
    for method, path, payload in (("GET", "/status", None), ("POST", "/lock", {"reason": 3}),
                                  ("POST", "/unlock", None), ("DELETE", "", None)):
        async with api.client().request(method, base + path, json=payload, headers=other_app) as r:
            assert r.status == 404, (method, path, r.status)
            assert card["pan"][-4:] not in await r.text()
    async with api.client().get(f"{api.http}/customers/me/cards", headers=other_app) as r:
        assert (await r.json())["items"] == []
    status, mine = await w.app_plain("GET", f"/customers/me/cards/{card['cardId']}/status")
    assert (status, mine["status"]) == (200, "ACTIVE")  # the owner's card is untouched
    status, data = await w.app_jwe("GET", f"/customers/me/cards/{card['cardId']}")
    assert (status, data["pan"]) == (200, card["pan"])
