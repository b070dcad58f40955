"""Corporations, KYB documents and review, corporate balances: over real HTTP and mutual TLS."""

from __future__ import annotations

import hashlib

import aiohttp

from antaca_api.routing import Role
from tests.api_harness import bearer

ADDRESS = {"line1": "Business Park 5", "city": "Gdansk", "postalCode": "80-001", "country": "PL"}
PDF = b"%PDF-1.7\n" + b"0" * 2000 + b"\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100


async def create(api, partner) -> dict:
    async with partner.post(f"{api.https}/lifecycle/v1/corporations", json={
            "name": "Acme Sp. z o.o.", "registrationNumber": "KRS0000123", "country": "PL", "address": ADDRESS}) as r:
        assert r.status == 201, await r.text()
        return await r.json()


async def upload(api, partner, corporation_id: str, content: bytes, kind: str = "REGISTRY_EXTRACT",
                 filename: str = "extract.pdf"):
    form = aiohttp.FormData()
    form.add_field("kind", kind)
    form.add_field("file", content, filename=filename, content_type="application/pdf")
    async with partner.post(f"{api.https}/lifecycle/v1/corporations/{corporation_id}/documents", data=form) as r:
        return r.status, await r.json()


async def review(api, token: str, corporation_id: str, body: dict):
    async with api.client().post(f"{api.http}/admin/corporations/{corporation_id}/kyb", json=body,
                                 headers=bearer(token)) as r:
        return r.status, await r.json()


async def test_onboarding_documents_review_and_corporate_balance(api):
    admin = await api.admin_token()
    _, partner = await api.partner(admin)
    corporation = await create(api, partner)
    cid = corporation["dcCorporationId"]
    assert corporation["kybStatus"] == "SUBMITTED"
    status, document = await upload(api, partner, cid, PDF)
    assert status == 201
    assert (document["sha256"], document["size"], document["contentType"]) == (
        hashlib.sha256(PDF).hexdigest(), len(PDF), "application/pdf")
    status, image = await upload(api, partner, cid, PNG, kind="REPRESENTATIVE_ID", filename="../../etc/id.png")
    assert (status, image["contentType"], image["filename"]) == (201, "image/png", "id.png")
    async with partner.get(f"{api.https}/lifecycle/v1/corporations/{cid}/documents") as r:
        assert [d["documentId"] for d in (await r.json())["items"]] == [document["documentId"], image["documentId"]]
    async with api.services.pool.acquire() as conn:
        stored = await conn.fetchval("SELECT content FROM corporation_documents WHERE sha256 = $1", document["sha256"])
    assert bytes(stored) == PDF

    async with partner.post(f"{api.https}/secure/balances", json={"dcCorporationId": cid, "currency": "EUR"}) as r:
        assert (r.status, (await r.json())["code"]) == (409, "CORPORATION_NOT_APPROVED")
    status, body = await review(api, admin, cid, {"status": "ON_HOLD"})
    assert (status, body["code"]) == (400, "VALIDATION_ERROR")  # a hold needs a reason
    status, held = await review(api, admin, cid, {"status": "ON_HOLD", "reason": "ownership unclear"})
    assert held["corporation"]["kybStatus"] == "ON_HOLD"
    status, _ = await upload(api, partner, cid, PDF, kind="OWNERSHIP_STRUCTURE")
    assert status == 201  # more documents while on hold
    manager = await api.admin_token(Role.MANAGER)
    status, approved = await review(api, manager, cid, {"status": "APPROVED"})
    assert approved["corporation"]["kybStatus"] == "APPROVED"
    assert [h["status"] for h in approved["history"]] == ["SUBMITTED", "ON_HOLD", "APPROVED"]
    status, body = await review(api, admin, cid, {"status": "REJECTED", "reason": "late"})
    assert (status, body["code"]) == (409, "INVALID_STATE_TRANSITION")
    status, body = await upload(api, partner, cid, PDF)
    assert (status, body["code"]) == (409, "KYB_CLOSED")

    async with partner.post(f"{api.https}/secure/balances", json={"dcCorporationId": cid, "currency": "XXQ"}) as r:
        assert r.status == 400
    async with partner.post(f"{api.https}/secure/balances", json={"dcCorporationId": cid, "currency": "USD"}) as r:
        assert r.status == 201
        balance = await r.json()
    assert (balance["dcCorporationId"], balance["posted"], balance["state"]) == (cid, 0, "ACTIVE")
    async with partner.get(f"{api.https}/secure/balances/{balance['balanceId']}") as r:
        assert (await r.json())["currency"] == "USD"

    async with api.client().get(f"{api.http}/admin/audit-log", headers=bearer(admin)) as r:
        entries = (await r.json())["items"]
    reviews = [e for e in entries if e["action"] == "POST /admin/corporations/{dcCorporationId}/kyb"]
    assert {e["target"] for e in reviews} == {f"corporation:{cid}"} and len(reviews) == 2


async def test_documents_are_checked(api):
    _, partner = await api.partner()
    cid = (await create(api, partner))["dcCorporationId"]
    status, body = await upload(api, partner, cid, b"just some text, not a PDF", filename="fake.pdf")
    assert (status, body["code"]) == (400, "DOCUMENT_REJECTED")
    status, body = await upload(api, partner, cid, PDF, kind="SELFIE")
    assert (status, body["code"]) == (400, "VALIDATION_ERROR")
    api.services.settings = api.services.settings.__class__(max_document_bytes=1000)
    status, body = await upload(api, partner, cid, PDF)
    assert (status, body["code"]) == (413, "PAYLOAD_TOO_LARGE")
    async with partner.post(f"{api.https}/lifecycle/v1/corporations/{cid}/documents", json={"kind": "OTHER"}) as r:
        assert (r.status, (await r.json())["code"]) == (415, "UNSUPPORTED_MEDIA_TYPE")
    async with partner.post(f"{api.https}/lifecycle/v1/corporations/{cid}/documents", data=b"--x\r\ngarbage",
                            headers={"Content-Type": "multipart/form-data; boundary=x"}) as r:
        assert 400 <= r.status < 500
        assert "code" in await r.json()
    async with api.services.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM corporation_documents") == 0


async def test_review_roles(api):
    admin = await api.admin_token()
    _, partner = await api.partner(admin)
    cid = (await create(api, partner))["dcCorporationId"]
    employee = await api.admin_token(Role.EMPLOYEE)
    status, body = await review(api, employee, cid, {"status": "APPROVED"})
    assert (status, body["code"]) == (403, "FORBIDDEN")
    async with api.client().get(f"{api.http}/admin/corporations/{cid}", headers=bearer(employee)) as r:
        assert (await r.json())["corporation"]["kybStatus"] == "SUBMITTED"  # reading is open to every role
    status, rejected = await review(api, admin, cid, {"status": "REJECTED", "reason": "sanctions"})
    assert rejected["corporation"]["kybStatus"] == "REJECTED"
    async with partner.post(f"{api.https}/secure/balances", json={"dcCorporationId": cid, "currency": "EUR"}) as r:
        assert r.status == 409


async def test_partners_cannot_see_each_others_corporations(api):
    admin = await api.admin_token()
    _, partner_a = await api.partner(admin)
    _, partner_b = await api.partner(admin)
    cid = (await create(api, partner_a))["dcCorporationId"]
    await review(api, admin, cid, {"status": "APPROVED"})
    async with partner_b.get(f"{api.https}/lifecycle/v1/corporations/{cid}") as r:
        assert r.status == 404
    async with partner_b.get(f"{api.https}/lifecycle/v1/corporations/{cid}/documents") as r:
        assert r.status == 404
    status, _ = await upload(api, partner_b, cid, PDF)
    assert status == 404
    async with partner_b.post(f"{api.https}/secure/balances", json={"dcCorporationId": cid, "currency": "EUR"}) as r:
        assert r.status == 404
    async with partner_b.get(f"{api.https}/lifecycle/v1/corporations") as r:
        assert (await r.json())["items"] == []
    async with api.client().get(f"{api.http}/admin/corporations", headers=bearer(admin)) as r:
        assert [c["dcCorporationId"] for c in (await r.json())["items"]] == [cid]
