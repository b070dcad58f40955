"""Customers and the product's three ways of KYC, over real HTTP and mutual TLS."""

from __future__ import annotations

from tests.api_harness import bearer, customer_body, pair_device, register_customer


async def test_register_get_update_and_list(api):
    _, partner = await api.partner()
    customer = await register_customer(api, partner, external_id="ext-1")
    assert customer["kycStatus"] == "NOT_VERIFIED"
    assert customer["address"]["city"] == "Warsaw"
    url = f"{api.https}/secure/customers/{customer['customerId']}"
    async with partner.patch(url, json={"email": "new@example.com", "address": {
            "line1": "Other 2", "city": "Krakow", "postalCode": "30-001", "country": "PL"}}) as r:
        assert r.status == 200
        updated = await r.json()
    assert (updated["email"], updated["address"]["city"], updated["firstName"]) == ("new@example.com", "Krakow", "Ada")
    async with partner.patch(url, json={"firstName": "Eve"}) as r:
        assert r.status == 400 and (await r.json())["code"] == "VALIDATION_ERROR"  # identity is not editable
    async with partner.post(f"{api.https}/secure/customers", json=customer_body("ext-1")) as r:
        assert r.status == 409 and (await r.json())["code"] == "CUSTOMER_EXISTS"

    for i in range(4):
        await register_customer(api, partner, external_id=f"page-{i}")
    seen, cursor = [], None
    while True:
        query = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        async with partner.get(f"{api.https}/secure/customers", params=query) as r:
            page = await r.json()
        seen += [c["externalId"] for c in page["items"]]
        cursor = page.get("nextCursor")
        if not cursor:
            break
    assert seen == ["ext-1", "page-0", "page-1", "page-2", "page-3"]


async def test_invalid_customer_data_is_refused(api):
    _, partner = await api.partner()
    for bad in ({"email": "not-an-email"}, {"country": "POL"}, {"birthDate": "10/12/1990"}, {"phone": "call me"},
                {"firstName": ""}):
        async with partner.post(f"{api.https}/secure/customers", json=customer_body(**bad)) as r:
            assert r.status == 400, bad
            assert (await r.json())["code"] == "VALIDATION_ERROR"
    async with partner.get(f"{api.https}/secure/customers") as r:
        assert (await r.json())["items"] == []


async def test_antaca_kyc_from_partner_verifies_with_history(api):
    _, partner = await api.partner()
    customer = await register_customer(api, partner)
    url = f"{api.https}/secure/customers/{customer['customerId']}"
    document = {"documentType": "PASSPORT", "documentNumber": "AB123456", "documentCountry": "PL"}
    async with partner.post(f"{url}/register", json=document) as r:
        assert r.status == 200
        assert (await r.json())["kycStatus"] == "VERIFIED"
    async with partner.get(f"{url}/kyc") as r:
        history = await r.json()
    assert history["kycStatus"] == "VERIFIED"
    assert [(e["status"], e["source"]) for e in history["history"]] == [
        ("NOT_VERIFIED", "REGISTRATION"), ("PENDING", "ANTACA_KYC"), ("VERIFIED", "ANTACA_KYC")]
    async with partner.post(f"{url}/register", json=document) as r:
        assert r.status == 409 and (await r.json())["code"] == "KYC_ALREADY_DECIDED"
    # the document number is never kept
    async with api.services.pool.acquire() as conn:
        stored = await conn.fetchval("SELECT string_agg(coalesce(details::text, ''), ' ') FROM kyc_events")
    assert "AB123456" not in stored


async def test_antaca_kyc_from_app_can_reject_and_be_retried(api):
    _, partner = await api.partner()
    minor = await register_customer(api, partner, birthDate="2015-01-01")
    session = await pair_device(api, partner, minor["customerId"])
    headers = bearer(session["sessionToken"])
    document = {"documentType": "ID_CARD", "documentNumber": "XY12345678", "documentCountry": "PL"}
    async with api.client().post(f"{api.http}/customers/me/register", json=document, headers=headers) as r:
        result = await r.json()
    assert (result["kycStatus"], result["reason"]) == ("REJECTED", "the customer is under 18")
    # a rejected customer may try again; still a minor, still rejected
    async with api.client().post(f"{api.http}/customers/me/register", json=document, headers=headers) as r:
        assert (await r.json())["kycStatus"] == "REJECTED"
    async with api.client().get(f"{api.http}/customers/me", headers=headers) as r:
        assert (await r.json())["kycStatus"] == "REJECTED"


async def test_partner_own_kyc_result(api):
    _, partner = await api.partner()
    customer = await register_customer(api, partner)
    url = f"{api.https}/secure/customers/{customer['customerId']}/kyc"
    async with partner.put(url, json={"status": "REJECTED", "reason": "sanctions hit"}) as r:
        assert (await r.json())["kycStatus"] == "REJECTED"
    async with partner.put(url, json={"status": "VERIFIED"}) as r:
        assert (await r.json())["kycStatus"] == "VERIFIED"
    async with partner.put(url, json={"status": "PENDING"}) as r:
        assert r.status == 400
    async with partner.get(url) as r:
        history = (await r.json())["history"]
    assert [(e["status"], e["source"], e["reason"]) for e in history][1:] == [
        ("REJECTED", "PARTNER", "sanctions hit"), ("VERIFIED", "PARTNER", None)]


async def test_admin_create_user_command(database_url):
    import os
    import subprocess
    import sys

    env = dict(os.environ, ANTACA_DATABASE_URL=database_url, ANTACA_ADMIN_PASSWORD="a long enough secret")
    done = subprocess.run([sys.executable, "-m", "antaca_api.cli", "admin", "create-user", "--email",
                           "Root@Example.com"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    again = subprocess.run([sys.executable, "-m", "antaca_api.cli", "admin", "create-user", "--email",
                            "root@example.com"], env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "already exists" in again.stderr
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow("SELECT email, role, password_hash FROM admin_users")
    finally:
        await conn.close()
    assert (row["email"], row["role"]) == ("root@example.com", "ADMIN")
    assert row["password_hash"].startswith("$argon2id$") and "a long enough secret" not in row["password_hash"]
