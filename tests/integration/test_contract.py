"""The product description's contract over the real channels: sensitive bodies only as JWE,
body-less POSTs, JSON media types, per-customer lists."""

from __future__ import annotations

import re
import uuid

import pytest

from antaca_api.routes import load_all
from antaca_api.routing import ROUTES
from tests.api_harness import bearer, customer_body
from tests.integration.test_cards import World

ME = "/customers/me/cards"


@pytest.fixture(scope="module")
def jwe_key():
    from joserfc.jwk import RSAKey

    return RSAKey.generate_key(2048)


async def pin_verification(api, card_id: str):
    async with api.services.pool.acquire() as conn:
        return await conn.fetchval("SELECT pin_verification FROM cards WHERE id = $1",
                                   uuid.UUID(card_id))


async def test_a_pin_travels_only_inside_a_jwe(api, jwe_key):
    """Encrypt-Response alone no longer lets a clear PIN through: the request must be a JWE."""
    w = await World().setup(api, jwe_key)
    card = await w.virtual()
    status, proof = await w.step_up()
    headers = {**w.me, "Step-Up-Token": proof["stepUpToken"]}
    url = f"{api.http}{ME}/{card['cardId']}/pin"
    for extra in ({}, {"Encrypt-Response": "true", "Public-Key": w.jwe.public_header}):
        async with w.app.post(url, json={"pin": "4821"}, headers={**headers, **extra}) as r:
            assert r.status == 400
            body = await r.json()
            assert body["code"] == "ENCRYPTION_REQUIRED" and "4821" not in body["message"]
    assert await pin_verification(api, card["cardId"]) is None
    status, _ = await w.jwe.request(w.app, "POST", url, {"pin": "4821"}, headers=headers)
    assert status == 204 and await pin_verification(api, card["cardId"]) is not None


async def test_a_physical_card_with_pin_is_ordered_only_as_a_jwe(api, jwe_key):
    w = await World().setup(api, jwe_key)
    async with w.partner.post(f"{api.https}/lifecycle/v1/corporations", json={
            "name": "Acme", "registrationNumber": "KRS1", "country": "PL",
            "address": {"line1": "Main 1", "city": "Warsaw", "postalCode": "00-001",
                        "country": "PL"}}) as r:
        assert r.status == 201, await r.text()
        corporation = (await r.json())["dcCorporationId"]
    order = {"dcCorporationId": corporation, "balanceId": str(uuid.uuid4()), "employeeId": str(uuid.uuid4()),
             "nameOnCard": "ADA", "pin": "4821",
             "deliveryAddress": {"line1": "Main 1", "city": "Warsaw", "postalCode": "00-001",
                                 "country": "PL"}}
    url = f"{api.https}/secure/cards/physical_with_pin"
    async with w.partner.post(url, json=order, headers={
            "Encrypt-Response": "true", "Public-Key": w.jwe.public_header}) as r:
        assert (r.status, (await r.json())["code"]) == (400, "ENCRYPTION_REQUIRED")
    status, body = await w.jwe.request(w.partner, "POST", url, order)
    # Past the JWE check, the domain answers (the corporation is not approved yet).
    assert (status, body["code"]) == (409, "CORPORATION_NOT_APPROVED")


async def test_body_less_posts_take_an_empty_body_or_an_empty_object(api, jwe_key):
    w = await World().setup(api, jwe_key)
    card = (await w.virtual())["cardId"]
    base = f"{api.http}{ME}/{card}"
    for raw in (b"", b"{}", b" { } "):
        async with w.app.post(f"{base}/lock", json={"reason": 3}, headers=w.me) as r:
            assert r.status == 200
        async with w.app.post(f"{base}/unlock", data=raw,
                              headers={**w.me, "Content-Type": "application/json"}) as r:
            assert (r.status, (await r.json())["status"]) == (200, "ACTIVE"), raw
    status, _ = await w.step_up()
    # An encrypted body, even an encrypted {}, is refused before any RSA work on a route that
    # takes none (issue 20, docs/api.md "Hardening"); without a body the answer is encrypted.
    status, refused = await w.app_jwe("POST", f"{ME}/{card}/cvv", {})
    assert (status, refused["code"]) == (400, "VALIDATION_ERROR")
    status, fresh = await w.app_jwe("POST", f"{ME}/{card}/cvv")
    assert status == 200 and fresh["cvv"].isdigit()
    async with w.app.post(f"{base}/unlock", json={"reason": 3}, headers=w.me) as r:
        assert (r.status, (await r.json())["code"]) == (400, "VALIDATION_ERROR")
    async with w.partner.post(f"{api.https}/secure/customers/{w.cid}/cards/{card}/activate",
                              json={}) as r:
        assert (r.status, (await r.json())["code"]) == (409, "CARD_NOT_INACTIVE")  # past the body


async def test_json_routes_refuse_other_media_types(api, jwe_key):
    """A text/plain (or form) body is 415 UNSUPPORTED_MEDIA_TYPE and books nothing."""
    w = await World().setup(api, jwe_key)
    reload = f"{api.https}/secure/customers/{w.cid}/balances/{w.balance}/reload"
    for media_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        async with w.partner.post(reload, data=b'{"amount": 500, "reference": "r-1"}',
                                  headers={"Content-Type": media_type}) as r:
            assert r.status == 415, await r.text()
            assert await r.json() == {"code": "UNSUPPORTED_MEDIA_TYPE",
                                      "message": "send the body as application/json",
                                      "requestId": r.headers["X-Request-Id"]}
        async with w.partner.post(f"{api.https}/secure/customers", data=b"{}",
                                  headers={"Content-Type": media_type}) as r:
            assert r.status == 415
    async with w.partner.get(f"{api.https}/secure/customers/{w.cid}/balances/{w.balance}") as r:
        assert (await r.json())["available"] == 0
    for media_type in ("application/json", "application/json; charset=utf-8",
                       "application/merge-patch+json"):
        async with w.partner.post(reload, data=b'{"amount": 500, "reference": "r-2"}',
                                  headers={"Content-Type": media_type}) as r:
            assert r.status == 200, (media_type, await r.text())
    async with w.partner.post(f"{api.https}/secure/customers", json=customer_body(),
                              headers={"Content-Type": "text/plain"}) as r:
        assert r.status == 415


PER_CUSTOMER_LIST = re.compile(r"/(secure|admin)/customers/\{customerId\}/[a-z-]+")


async def test_per_customer_lists_answer_404_for_unknown_or_foreign_customers(api, jwe_key):
    """Every GET list under one customer (from the route table) answers an unknown customer, and on
    the partner channel another partner's, with the 404 of every other per-customer route."""
    load_all()
    lists = [r.path for r in ROUTES if r.method == "GET" and PER_CUSTOMER_LIST.fullmatch(r.path)]
    assert "/secure/customers/{customerId}/cards" in lists and len(lists) >= 4
    w = await World().setup(api, jwe_key)
    other = await World().setup(api, jwe_key)  # another partner's customer
    admin = bearer(w.admin)
    for path in lists:
        partner_channel = path.startswith("/secure")
        for customer in (str(uuid.uuid4()), other.cid) if partner_channel else (str(uuid.uuid4()),):
            base = api.https if partner_channel else api.http
            url = base + path.replace("{customerId}", customer)
            session = w.partner if partner_channel else api.client()
            async with session.get(url, headers=None if partner_channel else admin) as r:
                assert (r.status, (await r.json())["code"]) == (404, "NOT_FOUND"), url
        own = path.replace("{customerId}", w.cid)
        session = w.partner if partner_channel else api.client()
        url = (api.https if partner_channel else api.http) + own
        async with session.get(url, headers=None if partner_channel else admin) as r:
            assert r.status == 200, (own, await r.text())


async def test_countries_and_birth_dates_are_checked(api, jwe_key):
    """Country codes must be assigned ISO 3166-1 alpha-2 codes; a birth date must be in the past
    and at most 130 years back. A refused registration creates nothing."""
    _, partner = await api.partner()
    base = customer_body()
    bad = [{"country": "XX"}, {"country": "UK"}, {"address": {**base["address"], "country": "ZZ"}},
           {"birthDate": "2999-01-01"}, {"birthDate": "1850-06-01"}]
    for change in bad:
        async with partner.post(f"{api.https}/secure/customers", json={**base, **change}) as r:
            assert (r.status, (await r.json())["code"]) == (400, "VALIDATION_ERROR"), change
    async with api.services.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM customers") == 0
    async with partner.post(f"{api.https}/lifecycle/v1/corporations", json={
            "name": "Acme", "registrationNumber": "KRS1", "country": "XX",
            "address": base["address"]}) as r:
        assert r.status == 400
    async with partner.post(f"{api.https}/secure/customers", json={**base, "country": "SS"}) as r:
        assert r.status == 201  # South Sudan: assigned in 2011, valid
        customer = await r.json()
    document = {"documentType": "PASSPORT", "documentNumber": "AB123456", "documentCountry": "QQ"}
    async with partner.post(f"{api.https}/secure/customers/{customer['customerId']}/register",
                            json=document) as r:
        assert (r.status, (await r.json())["code"]) == (400, "VALIDATION_ERROR")
