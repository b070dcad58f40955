"""Customer service on the admin channel, through real HTTP: customer search, a customer's file
(KYC history, balances, masked cards, transactions), manual KYC review (audited), and the
administrators' own management (deactivate, change role, reset password forcing a change)."""

from __future__ import annotations

import base64
import uuid

import pytest

from antaca_api.admins import create_admin_user
from antaca_api.routing import Role
from tests.api_harness import ADMIN_PASSWORD, bearer, register_customer
from tests.integration.test_authorizations import Payments


@pytest.fixture(scope="module")
def jwe_key():
    from joserfc.jwk import RSAKey

    return RSAKey.generate_key(2048)


async def admin_call(api, token: str, method: str, path: str, body=None):
    async with api.client().request(method, f"{api.http}{path}", json=body,
                                    headers=bearer(token)) as r:
        return r.status, await r.json()


async def test_search_finds_customers_by_email_phone_name_and_partner(api):
    admin = await api.admin_token()
    partner_a, client_a = await api.partner(admin)
    partner_b, client_b = await api.partner(admin)
    tag = uuid.uuid4().hex[:8]
    grace = await register_customer(api, client_a, firstName="Grace", lastName=f"Hopper{tag}",
                                    email=f"grace.{tag}@example.com", phone="+48500100200")
    alan = await register_customer(api, client_b, firstName="Alan", lastName=f"Turing{tag}",
                                   email=f"alan.{tag}@example.com", phone="+48500100200")

    async def found(query: str) -> set[str]:
        status, page = await admin_call(api, admin, "GET", f"/admin/customers?{query}")
        assert status == 200, page
        return {c["customerId"] for c in page["items"]}

    assert await found(f"email=GRACE.{tag}@example.com") == {grace["customerId"]}
    assert await found(f"name=hopper{tag}") == {grace["customerId"]}
    assert await found(f"name=alan%20turing{tag}") == {alan["customerId"]}  # first and last
    assert await found(f"name=%25{tag}") == set()  # a literal %: never a wildcard
    assert await found(f"name=_{tag}") == set()
    both = await found("phone=%2B48500100200&limit=200")
    assert {grace["customerId"], alan["customerId"]} <= both
    assert await found(f"phone=%2B48500100200&partnerId={partner_b}") == {alan["customerId"]}
    assert await found(f"email=alan.{tag}@example.com&partnerId={partner_a}") == set()
    status, bad = await admin_call(api, admin, "GET", "/admin/customers?partnerId=nope")
    assert (status, bad["code"]) == (400, "VALIDATION_ERROR")
    status, page = await admin_call(api, admin, "GET", f"/admin/customers?partnerId={partner_a}")
    assert page["items"][0]["partnerId"] == partner_a


async def test_a_customers_file_shows_kyc_history_balances_masked_cards_and_transactions(
        api, jwe_key):
    p = await Payments().setup(api, jwe_key, user_funds=10_000)
    assert (await p.authorize(amount=1_200))["decision"] == "APPROVED"
    status, file = await admin_call(api, p.w.admin, "GET", f"/admin/customers/{p.w.cid}")
    assert status == 200, file
    assert file["customer"]["customerId"] == p.w.cid
    assert file["customer"]["partnerId"] == p.w.partner_id
    assert [e["status"] for e in file["kycHistory"]] == ["NOT_VERIFIED", "VERIFIED"]
    (balance,) = file["balances"]
    assert (balance["balanceId"], balance["posted"], balance["available"]) == (
        p.w.balance, 10_000, 8_800)
    (card,) = balance["cards"]
    assert card["cardId"] == p.card["cardId"]
    pan = p.card["pan"]
    assert card["maskedPan"] == f"{pan[:6]}******{pan[-4:]}"
    assert pan not in str(file) and p.card["cvc2"] not in {str(v) for v in card.values()}
    status, transactions = await admin_call(api, p.w.admin, "GET",
                                            f"/admin/customers/{p.w.cid}/transactions")
    assert status == 200
    assert [(t["amount"], t["decision"]) for t in transactions["items"]] == [(1_200, "APPROVED")]
    status, history = await admin_call(
        api, p.w.admin, "GET", f"/admin/customers/{p.w.cid}/balances/{p.w.balance}/transactions")
    assert status == 200
    assert [(t["type"], t["kind"], t["amount"]) for t in history["items"]] == [
        ("BALANCE_RELOAD", "single", 10_000), ("CARD_PAYMENT", "pending", 1_200)]
    assert history["items"][-1]["availableAfter"] == 8_800
    other = await register_customer(api, p.w.partner, verified=True)
    status, _ = await admin_call(
        api, p.w.admin, "GET",
        f"/admin/customers/{other['customerId']}/balances/{p.w.balance}/transactions")
    assert status == 404  # the balance is not that customer's
    status, missing = await admin_call(api, p.w.admin, "GET", f"/admin/customers/{uuid.uuid4()}")
    assert (status, missing["code"]) == (404, "NOT_FOUND")


async def test_manual_kyc_review_approves_or_rejects_with_a_reason_and_is_audited(api):
    admin = await api.admin_token()
    manager = await api.admin_token(Role.MANAGER)
    employee = await api.admin_token(Role.EMPLOYEE)
    _, partner = await api.partner(admin)
    customer = await register_customer(api, partner)
    path = f"/admin/customers/{customer['customerId']}/kyc"
    status, _ = await admin_call(api, employee, "POST", path, {"decision": "APPROVE"})
    assert status == 403
    status, body = await admin_call(api, manager, "POST", path, {"decision": "REJECT"})
    assert (status, body["code"]) == (400, "VALIDATION_ERROR")  # a rejection needs a reason
    status, rejected = await admin_call(api, manager, "POST", path,
                                        {"decision": "REJECT", "reason": "selfie does not match"})
    assert status == 200 and rejected["customer"]["kycStatus"] == "REJECTED"
    last = rejected["kycHistory"][-1]
    assert (last["source"], last["reason"]) == ("MANUAL_REVIEW", "selfie does not match")
    status, approved = await admin_call(api, admin, "POST", path, {"decision": "APPROVE"})
    assert status == 200 and approved["customer"]["kycStatus"] == "VERIFIED"
    status, again = await admin_call(api, admin, "POST", path,
                                     {"decision": "REJECT", "reason": "changed my mind"})
    assert (status, again["code"]) == (409, "KYC_ALREADY_DECIDED")
    # The partner now sees a verified customer and can open a balance.
    async with partner.post(f"{api.https}/secure/customers/{customer['customerId']}/balances",
                            json={"currency": "EUR"}) as r:
        assert r.status == 201
    async with api.services.pool.acquire() as conn:
        audit = await conn.fetch("SELECT admin_id, action FROM audit_log WHERE target = $1",
                                 f"customer:{customer['customerId']}")
        reviewers = [r["admin_id"] for r in await conn.fetch(
            "SELECT admin_id FROM kyc_events WHERE customer_id = $1 AND source = 'MANUAL_REVIEW'"
            " ORDER BY id", uuid.UUID(customer["customerId"]))]
    assert [r["action"] for r in audit] == ["POST /admin/customers/{customerId}/kyc"] * 2
    assert [r["admin_id"] for r in audit] == reviewers
    assert approved["kycHistory"][-1]["adminId"] == str(reviewers[-1])


async def sign_in(api, email: str, password: str):
    async with api.client().post(f"{api.http}/admin/sessions",
                                 json={"email": email, "password": password}) as r:
        return r.status, await r.json()


async def test_administrators_are_deactivated_re_roled_and_reset(api):
    admin = await api.admin_token()
    email = f"clerk-{uuid.uuid4().hex[:8]}@antaca.test"
    status, clerk = await admin_call(api, admin, "POST", "/admin/users",
                                     {"email": email, "password": ADMIN_PASSWORD,
                                      "role": "EMPLOYEE"})
    assert status == 201
    _, session = await sign_in(api, email, ADMIN_PASSWORD)
    token = session["token"]
    assert (await admin_call(api, token, "GET", "/admin/partners"))[0] == 200
    assert (await admin_call(api, token, "GET", "/admin/users"))[0] == 403

    status, promoted = await admin_call(api, admin, "PATCH", f"/admin/users/{clerk['id']}",
                                        {"role": "ADMIN"})
    assert status == 200 and promoted["role"] == "ADMIN"
    assert (await admin_call(api, token, "GET", "/admin/users"))[0] == 200  # at once
    status, own = await admin_call(api, token, "PATCH", f"/admin/users/{clerk['id']}",
                                   {"active": False})
    assert (status, own["code"]) == (409, "OWN_ADMINISTRATOR_ACCOUNT")

    # A reset: old sessions end, the temporary password signs in but allows only the change.
    status, reset = await admin_call(api, admin, "POST",
                                     f"/admin/users/{clerk['id']}/password-reset",
                                     {"temporaryPassword": "temporary password 42"})
    assert status == 200 and reset["passwordChangeRequired"] is True
    assert (await admin_call(api, token, "GET", "/admin/partners"))[0] == 401
    assert (await sign_in(api, email, ADMIN_PASSWORD))[0] == 401
    status, session = await sign_in(api, email, "temporary password 42")
    assert status == 201 and session["passwordChangeRequired"] is True
    token = session["token"]
    status, body = await admin_call(api, token, "GET", "/admin/partners")
    assert (status, body["code"]) == (403, "PASSWORD_CHANGE_REQUIRED")
    status, body = await admin_call(api, token, "PUT", "/admin/users/me/password",
                                    {"currentPassword": "wrong one",
                                     "newPassword": "a new password!"})
    assert status == 401
    status, changed = await admin_call(api, token, "PUT", "/admin/users/me/password",
                                       {"currentPassword": "temporary password 42",
                                        "newPassword": "a new password!"})
    assert status == 200 and changed["passwordChangeRequired"] is False
    assert (await admin_call(api, token, "GET", "/admin/partners"))[0] == 200

    # Deactivated: the session ends at once and signing in fails.
    status, off = await admin_call(api, admin, "PATCH", f"/admin/users/{clerk['id']}",
                                   {"active": False})
    assert status == 200 and off["active"] is False
    assert (await admin_call(api, token, "GET", "/admin/partners"))[0] == 401
    assert (await sign_in(api, email, "a new password!"))[0] == 401
    async with api.services.pool.acquire() as conn:
        actions = [r["action"] for r in await conn.fetch(
            "SELECT action FROM audit_log WHERE target = $1 ORDER BY id", f"admin:{clerk['id']}")]
    assert actions == ["POST /admin/users", "PATCH /admin/users/{adminId}",
                       "POST /admin/users/{adminId}/password-reset",
                       "PUT /admin/users/me/password", "PATCH /admin/users/{adminId}"]


async def test_a_partners_staff_member_is_created_by_the_platform_and_kept_in_scope(api):
    admin = await api.admin_token()
    partner_a, client_a = await api.partner(admin)
    partner_b, client_b = await api.partner(admin)
    email = f"staff-{uuid.uuid4().hex[:8]}@partner.test"
    status, member = await admin_call(api, admin, "POST", "/admin/users", {
        "email": email, "password": ADMIN_PASSWORD, "role": "MANAGER", "partnerId": partner_a})
    assert status == 201 and member["partnerId"] == partner_a
    status, body = await admin_call(api, admin, "POST", "/admin/users", {
        "email": f"x-{email}", "password": ADMIN_PASSWORD, "role": "MANAGER",
        "partnerId": str(uuid.uuid4())})
    assert status == 404
    _, session = await sign_in(api, email, ADMIN_PASSWORD)
    token = session["token"]
    mine = await register_customer(api, client_a)
    theirs = await register_customer(api, client_b)
    assert (await admin_call(api, token, "GET", f"/admin/customers/{mine['customerId']}"))[0] == 200
    status, body = await admin_call(api, token, "GET", f"/admin/customers/{theirs['customerId']}")
    assert (status, body["code"]) == (404, "NOT_FOUND")
    status, body = await admin_call(api, token, "POST",
                                    f"/admin/customers/{theirs['customerId']}/kyc",
                                    {"decision": "APPROVE"})
    assert status == 404
    status, body = await admin_call(api, token, "POST",
                                    f"/admin/customers/{mine['customerId']}/kyc",
                                    {"decision": "APPROVE"})
    assert status == 200  # a Manager decides inside the partner's scope
    status, body = await admin_call(api, token, "GET", "/admin/summaries")
    assert (status, body["code"]) == (403, "FORBIDDEN")
    async with api.services.pool.acquire() as conn:
        await create_admin_user(conn, f"e-{email}", ADMIN_PASSWORD, Role.EMPLOYEE,
                                partner_id=uuid.UUID(partner_a))
    _, employee = await sign_in(api, f"e-{email}", ADMIN_PASSWORD)
    status, _ = await admin_call(api, employee["token"], "POST",
                                 f"/admin/customers/{mine['customerId']}/kyc",
                                 {"decision": "REJECT", "reason": "x"})
    assert status == 403  # roles keep their meaning inside the scope


async def test_documents_stored_before_encryption_are_sealed_and_still_download(api):
    from antaca_api.corporations import seal_clear_documents

    admin = await api.admin_token()
    _, partner = await api.partner(admin)
    async with partner.post(f"{api.https}/lifecycle/v1/corporations", json={
            "name": "Old Co", "registrationNumber": "KRS9", "country": "PL",
            "address": {"line1": "a", "city": "b", "postalCode": "1", "country": "PL"}}) as r:
        corporation = (await r.json())["dcCorporationId"]
    legacy = b"%PDF-1.4\nuploaded before encryption at rest\n%%EOF\n"
    document_id = uuid.uuid4()
    async with api.services.pool.acquire() as conn:  # a row as the service stored it before 0021
        await conn.execute(
            """INSERT INTO corporation_documents (id, corporation_id, kind, filename, content_type,
                   size, sha256, content) VALUES ($1, $2, 'REGISTRY_EXTRACT', 'old.pdf',
                   'application/pdf', $3, 'x', $4)""",
            document_id, uuid.UUID(corporation), len(legacy), legacy)
    path = f"/admin/corporations/{corporation}/documents/{document_id}"
    status, before = await admin_call(api, admin, "GET", path)
    assert status == 200 and base64.b64decode(before["contentBase64"]) == legacy
    assert await seal_clear_documents(api.services.pool, api.services.card_keys) == 1
    assert await seal_clear_documents(api.services.pool, api.services.card_keys) == 0
    async with api.services.pool.acquire() as conn:
        stored = await conn.fetchrow(
            "SELECT content, key_id FROM corporation_documents WHERE id = $1", document_id)
    assert stored["key_id"] is not None and legacy[:20] not in bytes(stored["content"])
    status, after = await admin_call(api, admin, "GET", path)
    assert status == 200 and base64.b64decode(after["contentBase64"]) == legacy
