"""Corporations, KYB documents and review, corporate balances: over real HTTP and mutual TLS."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import uuid

import aiohttp
import msgspec
import pytest

from antaca_api.corporations import KybStatus, detect_type, document_type, review, safe_filename
from antaca_api.domain_errors import InvalidStateTransition, ValidationFailed
from antaca_api.routing import Role
from tests.api_harness import bearer

ADDRESS = {"line1": "Business Park 5", "city": "Gdansk", "postalCode": "80-001", "country": "PL"}
PDF = b"%PDF-1.7\n" + b"0" * 2000 + b"\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 100
KYB = "POST /admin/corporations/{dcCorporationId}/kyb"


async def create(api, partner, name: str = "Acme Sp. z o.o.") -> dict:
    async with partner.post(f"{api.https}/lifecycle/v1/corporations", json={
            "name": name, "registrationNumber": "KRS0000123", "country": "PL", "address": ADDRESS}) as r:
        assert r.status == 201, await r.text()
        return await r.json()


async def upload(api, partner, corporation_id: str, content: bytes, kind: str = "REGISTRY_EXTRACT",
                 filename: str = "extract.pdf", content_type: str = "application/pdf"):
    form = aiohttp.FormData()
    form.add_field("kind", kind)
    form.add_field("file", content, filename=filename, content_type=content_type)
    async with partner.post(f"{api.https}/lifecycle/v1/corporations/{corporation_id}/documents", data=form) as r:
        return r.status, await r.json()


async def post_raw(api, partner, corporation_id: str, body: bytes, content_type: str):
    async with partner.post(f"{api.https}/lifecycle/v1/corporations/{corporation_id}/documents", data=body,
                            headers={"Content-Type": content_type}) as r:
        return r.status, await r.json()


async def review_http(api, token: str, corporation_id: str, body: dict):
    async with api.client().post(f"{api.http}/admin/corporations/{corporation_id}/kyb", json=body,
                                 headers=bearer(token)) as r:
        return r.status, await r.json()


async def open_corporate(api, partner, corporation_id: str, currency: str = "EUR"):
    async with partner.post(f"{api.https}/secure/balances",
                            json={"dcCorporationId": corporation_id, "currency": currency}) as r:
        return r.status, await r.json()


async def stored_documents(api) -> int:
    async with api.services.pool.acquire() as conn:
        return await conn.fetchval("SELECT count(*) FROM corporation_documents")


# --- the rules, as plain functions -----------------------------------------------------------

S, A, R, H = KybStatus.SUBMITTED, KybStatus.APPROVED, KybStatus.REJECTED, KybStatus.ON_HOLD
ALLOWED = {(S, A), (S, R), (S, H), (H, A), (H, R), (H, H)}


@pytest.mark.parametrize("current", [S, A, R, H])
@pytest.mark.parametrize("decision", [A, R, H])
def test_review_allows_exactly_the_open_transitions(current, decision):
    if (current, decision) in ALLOWED:
        assert review(current, decision, "a reason") is decision
    else:
        with pytest.raises(InvalidStateTransition):
            review(current, decision, "a reason")


@pytest.mark.parametrize("decision", [R, H])
def test_refusals_and_holds_need_a_reason(decision):
    for reason in (None, "", "   "):
        with pytest.raises(ValidationFailed):
            review(S, decision, reason)
    assert review(S, A, None) is A  # approval needs none
    with pytest.raises(ValidationFailed):
        review(S, S, "back to the start")


def test_document_type_is_judged_by_content():
    assert [detect_type(x) for x in (PDF, PNG, JPEG, b"%PDF", b"just text", b"")] == [
        "application/pdf", "image/png", "image/jpeg", None, None, None]
    assert document_type(PNG, "application/octet-stream") == "image/png"  # generic declarations say nothing
    assert document_type(PNG, None) == "image/png"
    assert document_type(JPEG, "IMAGE/JPEG; q=1") == "image/jpeg"
    assert document_type(PNG, "application/pdf") is None  # declared one accepted type, holds another
    assert document_type(b"hello", "application/pdf") is None


def test_file_names_are_bounded_base_names():
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename("C:\\Users\\x\\scan.pdf") == "scan.pdf"
    assert safe_filename("a\x00b\x1f<c>.pdf") == "abc.pdf"
    assert safe_filename("..") == safe_filename(None) == safe_filename("  ") == "document"
    assert len(safe_filename("x" * 1000 + ".pdf")) == 128


# --- over HTTP ------------------------------------------------------------------------------


async def test_onboarding_documents_review_and_corporate_balance(api):
    admin = await api.admin_token()
    _, partner = await api.partner(admin)
    corporation = await create(api, partner)
    cid = corporation["dcCorporationId"]
    assert (corporation["kybStatus"], corporation["registrationNumber"], corporation["address"]) == (
        "SUBMITTED", "KRS0000123", {**ADDRESS, "line2": None})
    async with partner.get(f"{api.https}/lifecycle/v1/corporations/{cid}") as r:
        assert await r.json() == corporation

    status, document = await upload(api, partner, cid, PDF)
    assert status == 201
    assert (document["sha256"], document["size"], document["contentType"], document["kind"]) == (
        hashlib.sha256(PDF).hexdigest(), len(PDF), "application/pdf", "REGISTRY_EXTRACT")
    status, image = await upload(api, partner, cid, PNG, kind="REPRESENTATIVE_ID", filename="../../etc/id.png",
                                 content_type="application/octet-stream")
    assert (status, image["contentType"], image["filename"]) == (201, "image/png", "id.png")
    async with partner.get(f"{api.https}/lifecycle/v1/corporations/{cid}/documents") as r:
        listed = (await r.json())["items"]
    assert listed == [document, image]  # metadata only: no content field
    async with api.services.pool.acquire() as conn:
        stored = await conn.fetchrow("SELECT content, sha256 FROM corporation_documents WHERE id = $1",
                                     document["documentId"])
    # Encrypted at rest: the stored bytes are not the file, and hold none of it in clear.
    assert PDF[:64] not in bytes(stored["content"])
    assert stored["sha256"] == hashlib.sha256(PDF).hexdigest()
    # A reviewer downloads the file exactly as uploaded.
    document_path = f"/admin/corporations/{cid}/documents/{image['documentId']}"
    async with api.client().get(f"{api.http}{document_path}", headers=bearer(admin)) as r:
        assert r.status == 200
        downloaded = await r.json()
    assert downloaded["document"] == image and base64.b64decode(downloaded["contentBase64"]) == PNG
    async with api.client().get(f"{api.http}/admin/corporations/{cid}/documents/{uuid.uuid4()}",
                                headers=bearer(admin)) as r:
        assert r.status == 404

    status, body = await open_corporate(api, partner, cid)
    assert (status, body["code"]) == (409, "CORPORATION_NOT_APPROVED")
    status, body = await review_http(api, admin, cid, {"status": "ON_HOLD"})
    assert (status, body["code"]) == (400, "VALIDATION_ERROR")  # a hold needs a reason
    status, held = await review_http(api, admin, cid, {"status": "ON_HOLD", "reason": "ownership unclear"})
    assert (status, held["corporation"]["kybStatus"]) == (200, "ON_HOLD")
    status, _ = await upload(api, partner, cid, JPEG, kind="OWNERSHIP_STRUCTURE", filename="chart.jpg",
                             content_type="image/jpeg")
    assert status == 201  # more documents while on hold
    manager = await api.admin_token(Role.MANAGER)
    status, approved = await review_http(api, manager, cid, {"status": "APPROVED"})
    assert (status, approved["corporation"]["kybStatus"]) == (200, "APPROVED")
    assert [(h["status"], h["reason"]) for h in approved["history"]] == [
        ("SUBMITTED", None), ("ON_HOLD", "ownership unclear"), ("APPROVED", None)]
    assert [d["contentType"] for d in approved["documents"]] == ["application/pdf", "image/png", "image/jpeg"]
    status, body = await review_http(api, admin, cid, {"status": "REJECTED", "reason": "late"})
    assert (status, body["code"]) == (409, "INVALID_STATE_TRANSITION")
    status, body = await upload(api, partner, cid, PDF)
    assert (status, body["code"]) == (409, "KYB_CLOSED")
    assert await stored_documents(api) == 3

    status, body = await open_corporate(api, partner, cid, "XXQ")
    assert (status, body["code"]) == (400, "UNSUPPORTED_CURRENCY")
    status, balance = await open_corporate(api, partner, cid, "USD")
    assert status == 201
    assert (balance["dcCorporationId"], balance["customerId"], balance["posted"], balance["available"],
            balance["state"], balance["currency"]) == (cid, None, 0, 0, "ACTIVE", "USD")
    async with partner.get(f"{api.https}/secure/balances/{balance['balanceId']}") as r:
        assert (await r.json())["dcCorporationId"] == cid

    # The two reviews that changed something are audited, each naming the corporation and its reviewer.
    async with api.services.pool.acquire() as conn:
        audited = await conn.fetch("SELECT admin_id, target FROM audit_log WHERE action = $1 ORDER BY id", KYB)
        reviewers = await conn.fetch(
            "SELECT admin_id FROM kyb_events WHERE corporation_id = $1 AND admin_id IS NOT NULL ORDER BY id", cid)
    assert [r["target"] for r in audited] == [f"corporation:{cid}"] * 2
    assert [r["admin_id"] for r in audited] == [r["admin_id"] for r in reviewers]
    assert len({r["admin_id"] for r in audited}) == 2  # the admin put it on hold, the manager approved


async def test_documents_are_checked_and_refusals_store_nothing(api):
    _, partner = await api.partner()
    cid = (await create(api, partner))["dcCorporationId"]
    status, body = await upload(api, partner, cid, b"just some text, not a PDF", filename="fake.pdf")
    assert (status, body["code"]) == (400, "DOCUMENT_REJECTED")
    status, body = await upload(api, partner, cid, PNG, filename="scan.pdf", content_type="application/pdf")
    assert (status, body["code"]) == (400, "DOCUMENT_REJECTED")  # declared a PDF, sent a PNG
    status, body = await upload(api, partner, cid, PDF, kind="SELFIE")
    assert (status, body["code"]) == (400, "VALIDATION_ERROR")
    status, body = await upload(api, partner, cid, b"")
    assert (status, body["code"]) == (400, "VALIDATION_ERROR")

    async with partner.post(f"{api.https}/lifecycle/v1/corporations/{cid}/documents", json={"kind": "OTHER"}) as r:
        assert (r.status, (await r.json())["code"]) == (415, "UNSUPPORTED_MEDIA_TYPE")
    status, body = await post_raw(api, partner, cid, b"--x\r\ngarbage", "multipart/form-data; boundary=x")
    assert (status, body["code"]) == (400, "VALIDATION_ERROR") and body["message"]
    status, body = await post_raw(api, partner, cid, PDF, "multipart/form-data")  # no boundary
    assert (status, body["code"]) == (400, "VALIDATION_ERROR")
    nested = (b'--x\r\nContent-Disposition: form-data; name="file"\r\nContent-Type: multipart/mixed; boundary=y\r\n'
              b'\r\n--y\r\nContent-Disposition: attachment; filename="a.pdf"\r\n\r\n%PDF-1.4\r\n--y--\r\n--x--\r\n')
    status, body = await post_raw(api, partner, cid, nested, "multipart/form-data; boundary=x")
    assert (status, body["code"]) == (400, "VALIDATION_ERROR")
    form = aiohttp.FormData()
    for field, value in (("kind", "OTHER"), ("file", PDF), ("file", PNG)):
        form.add_field(field, value, filename="a.pdf" if field == "file" else None)
    async with partner.post(f"{api.https}/lifecycle/v1/corporations/{cid}/documents", data=form) as r:
        assert (r.status, (await r.json())["code"]) == (400, "VALIDATION_ERROR")  # which file would count?

    api.services.settings = msgspec.structs.replace(api.services.settings, max_document_bytes=len(PDF) - 1)
    status, body = await upload(api, partner, cid, PDF)
    assert (status, body["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert await stored_documents(api) == 0
    api.services.settings = msgspec.structs.replace(api.services.settings, max_document_bytes=len(PDF))
    status, body = await upload(api, partner, cid, PDF, filename="x" * 300 + ".pdf")
    assert (status, body["size"], len(body["filename"])) == (201, len(PDF), 128)  # exactly the limit is fine
    assert await stored_documents(api) == 1


async def test_review_roles_and_final_states(api):
    admin = await api.admin_token()
    _, partner = await api.partner(admin)
    cid = (await create(api, partner))["dcCorporationId"]
    employee = await api.admin_token(Role.EMPLOYEE)
    status, body = await review_http(api, employee, cid, {"status": "APPROVED"})
    assert (status, body["code"]) == (403, "FORBIDDEN")
    async with api.client().get(f"{api.http}/admin/corporations/{cid}", headers=bearer(employee)) as r:
        seen = await r.json()  # reading is open to every role
    assert (seen["corporation"]["kybStatus"], [h["status"] for h in seen["history"]]) == ("SUBMITTED", ["SUBMITTED"])
    async with api.client().get(f"{api.http}/admin/corporations", headers=bearer(employee)) as r:
        assert [c["dcCorporationId"] for c in (await r.json())["items"]] == [cid]

    status, body = await review_http(api, admin, cid, {"status": "REJECTED"})
    assert (status, body["code"]) == (400, "VALIDATION_ERROR")  # a refusal needs a reason
    status, body = await review_http(api, admin, cid, {"status": "SUBMITTED", "reason": "again"})
    assert (status, body["code"]) == (400, "VALIDATION_ERROR")
    status, rejected = await review_http(api, admin, cid, {"status": "REJECTED", "reason": "sanctions"})
    assert (status, rejected["corporation"]["kybStatus"], rejected["history"][-1]["reason"]) == (
        200, "REJECTED", "sanctions")
    for decision in ({"status": "APPROVED"}, {"status": "ON_HOLD", "reason": "reconsider"}):
        status, body = await review_http(api, admin, cid, decision)
        assert (status, body["code"]) == (409, "INVALID_STATE_TRANSITION")
    status, body = await open_corporate(api, partner, cid)
    assert (status, body["code"]) == (409, "CORPORATION_NOT_APPROVED")
    status, body = await upload(api, partner, cid, PDF)
    assert (status, body["code"]) == (409, "KYB_CLOSED")
    async with api.services.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM kyb_events WHERE corporation_id = $1", cid) == 2
        assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = $1", KYB) == 1
        assert await conn.fetchval("SELECT count(*) FROM balances") == 0

    status, body = await review_http(api, admin, "00000000-0000-0000-0000-000000000000", {"status": "APPROVED"})
    assert (status, body["code"]) == (404, "NOT_FOUND")


async def test_lists_page_by_cursor(api):
    admin = await api.admin_token()
    _, partner = await api.partner(admin)
    ids = [(await create(api, partner, f"Corp {i}"))["dcCorporationId"] for i in range(3)]
    async with partner.get(f"{api.https}/lifecycle/v1/corporations?limit=2") as r:
        first = await r.json()
    async with partner.get(f"{api.https}/lifecycle/v1/corporations?limit=2&cursor={first['nextCursor']}") as r:
        second = await r.json()
    assert [c["dcCorporationId"] for c in first["items"] + second["items"]] == ids
    assert second["nextCursor"] is None

    await review_http(api, admin, ids[1], {"status": "APPROVED"})
    async with api.client().get(f"{api.http}/admin/corporations?kybStatus=APPROVED", headers=bearer(admin)) as r:
        assert [c["dcCorporationId"] for c in (await r.json())["items"]] == [ids[1]]
    async with api.client().get(f"{api.http}/admin/corporations?limit=1", headers=bearer(admin)) as r:
        page = await r.json()
    assert [c["dcCorporationId"] for c in page["items"]] == ids[:1] and page["nextCursor"] is not None
    # The cursor is opaque: the sequence numbers the list used to take are not cursors.
    async with api.client().get(f"{api.http}/admin/corporations?cursor=0", headers=bearer(admin)) as r:
        assert (r.status, (await r.json())["code"]) == (400, "INVALID_CURSOR")
    async with api.client().get(f"{api.http}/admin/corporations?kybStatus=DONE", headers=bearer(admin)) as r:
        assert (r.status, (await r.json())["code"]) == (400, "VALIDATION_ERROR")


async def test_partners_cannot_see_each_others_corporations(api):
    admin = await api.admin_token()
    _, partner_a = await api.partner(admin)
    _, partner_b = await api.partner(admin)
    cid = (await create(api, partner_a))["dcCorporationId"]
    assert (await upload(api, partner_a, cid, PDF))[0] == 201
    await review_http(api, admin, cid, {"status": "ON_HOLD", "reason": "more papers"})
    async with partner_b.get(f"{api.https}/lifecycle/v1/corporations/{cid}") as r:
        assert (r.status, (await r.json())["code"]) == (404, "NOT_FOUND")
    async with partner_b.get(f"{api.https}/lifecycle/v1/corporations/{cid}/documents") as r:
        assert r.status == 404
    status, _ = await upload(api, partner_b, cid, PDF)
    assert status == 404
    assert await stored_documents(api) == 1
    await review_http(api, admin, cid, {"status": "APPROVED"})
    status, _ = await open_corporate(api, partner_b, cid)
    assert status == 404
    async with partner_b.get(f"{api.https}/lifecycle/v1/corporations") as r:
        assert (await r.json())["items"] == []
    async with partner_b.get(f"{api.https}/lifecycle/v1/corporations/not-a-uuid") as r:
        assert r.status == 404
    status, _ = await open_corporate(api, partner_a, cid)
    assert status == 201  # the owner still can
    async with api.services.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM balances") == 1


async def test_opening_a_balance_waits_for_a_kyb_change_in_flight(api):
    """The corporation row is locked while the balance opens: a concurrent status change is seen, not raced."""
    admin = await api.admin_token()
    _, partner = await api.partner(admin)
    cid = (await create(api, partner))["dcCorporationId"]
    await review_http(api, admin, cid, {"status": "APPROVED"})
    async with api.services.pool.acquire() as conn:
        async with conn.transaction():
            await conn.execute("UPDATE corporations SET kyb_status = 'ON_HOLD' WHERE id = $1", cid)
            opening = asyncio.create_task(open_corporate(api, partner, cid))
            for _ in range(100):  # until the request waits on the row lock
                # Asked on another connection: inside a transaction pg_stat_activity is a frozen snapshot.
                if await api.services.pool.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type ="
                                                    " 'Lock' AND datname = current_database()"):
                    break
                await asyncio.sleep(0.05)
            else:
                pytest.fail("opening the balance did not wait for the corporation row")
        status, body = await opening
    assert (status, body["code"]) == (409, "CORPORATION_NOT_APPROVED")
