"""The administration panel over plain HTTP (an aiohttp client with a cookie jar): the session
cookie's flags, the CSRF refusals, the Content-Security-Policy, the idle timeout and sign-out,
the role and partner-scope refusals, the audit of an action and masked card data. The browser
tests are in test_panel_browser.py."""

from __future__ import annotations

import re
import ssl
import uuid
from http.cookies import SimpleCookie

import aiohttp
import pytest

from antaca_api import rate_limits
from antaca_api.admins import create_admin_user
from antaca_api.panel import security
from antaca_api.routing import Role
from tests.api_harness import ADMIN_PASSWORD, bearer, register_customer
from tests.integration.test_authorizations import Payments

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="module")
def jwe_key():
    from joserfc.jwk import RSAKey

    return RSAKey.generate_key(2048)


class PanelClient:
    """A browser-like client of the panel: a cookie jar, forms posted with their CSRF token."""

    def __init__(self, api, base: str | None = None) -> None:
        self.api, self.base = api, base or api.http
        context = ssl.create_default_context(cafile=str(api.ca.cert_path))
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                             connector=aiohttp.TCPConnector(ssl=context))
        api.sessions.append(self.session)

    async def get(self, path: str) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.session.get(f"{self.base}{path}", allow_redirects=False) as r:
            return r.status, await r.text(), r

    async def post(self, path: str, form: dict, *, csrf_from: str | None = None
                   ) -> tuple[int, str, aiohttp.ClientResponse]:
        if csrf_from is not None:
            _, page, _ = await self.get(csrf_from)
            form = {"csrf": CSRF.search(page).group(1), **form}
        async with self.session.post(f"{self.base}{path}", data=form,
                                     allow_redirects=False) as r:
            return r.status, await r.text(), r

    async def sign_in(self, email: str, password: str = ADMIN_PASSWORD):
        return await self.post("/panel/sign-in", {"email": email, "password": password},
                               csrf_from="/panel/sign-in")


async def new_admin(api, role: Role = Role.ADMIN, partner_id: str | None = None) -> str:
    email = f"panel-{role.lower()}-{uuid.uuid4().hex[:8]}@antaca.test"
    async with api.services.pool.acquire() as conn:
        await create_admin_user(conn, email, ADMIN_PASSWORD, role,
                                partner_id=uuid.UUID(partner_id) if partner_id else None)
    return email


async def signed_in(api, role: Role = Role.ADMIN, partner_id: str | None = None) -> PanelClient:
    client = PanelClient(api)
    status, _, response = await client.sign_in(await new_admin(api, role, partner_id))
    assert status == 303 and response.headers["Location"] == "/panel/"
    return client


def set_cookie(response: aiohttp.ClientResponse, name: str):
    for header in response.headers.getall("Set-Cookie", []):
        cookie = SimpleCookie(header)
        if name in cookie:
            return cookie[name], header
    raise AssertionError(f"no {name} cookie set")


async def test_sign_in_sets_a_strict_http_only_cookie_and_every_page_a_strict_csp(api):
    client = PanelClient(api)
    status, page, response = await client.get("/panel/")
    assert status == 303 and response.headers["Location"] == "/panel/sign-in"
    status, page, response = await client.get("/panel/sign-in")
    assert status == 200 and response.headers["Content-Security-Policy"] == \
        security.CONTENT_SECURITY_POLICY
    for words in ("default-src 'none'", "script-src 'self'", "frame-ancestors 'none'",
                  "form-action 'self'"):
        assert words in security.CONTENT_SECURITY_POLICY
    assert "http:" not in page and "https:" not in page and "<script>" not in page
    status, _, response = await client.sign_in(await new_admin(api))
    assert status == 303
    cookie, header = set_cookie(response, security.SESSION_COOKIE)
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/panel/"
    assert "Secure" not in header  # plain HTTP: a Secure cookie would never come back
    status, page, response = await client.get("/panel/")
    assert status == 200 and "Dashboard" in page
    assert response.headers["Content-Security-Policy"] == security.CONTENT_SECURITY_POLICY
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
    # Over TLS the cookie is Secure as well.
    tls = PanelClient(api, api.https)
    status, _, response = await tls.sign_in(await new_admin(api))
    cookie, header = set_cookie(response, security.SESSION_COOKIE)
    assert status == 303 and cookie["secure"] and "Secure" in header


async def test_sign_in_refuses_a_wrong_password_and_a_form_without_its_token(api):
    email = await new_admin(api)
    client = PanelClient(api)
    status, page, _ = await client.sign_in(email, "not the password at all")
    assert status == 401 and "the credentials are not valid" in page
    status, page, response = await client.post("/panel/sign-in",
                                               {"email": email, "password": ADMIN_PASSWORD})
    assert status == 403 and security.SESSION_COOKIE not in response.cookies
    status, _, _ = await client.get("/panel/")
    assert status == 303  # still signed out


async def test_a_form_without_the_csrf_token_changes_nothing(api, jwe_key):
    p = await Payments().setup(api, jwe_key)
    client = await signed_in(api, Role.MANAGER)
    card_id = p.card["cardId"]
    for form in ({"reason": "3", "confirm": "yes"},
                 {"reason": "3", "confirm": "yes", "csrf": "0" * 64}):
        status, page, _ = await client.post(f"/panel/cards/{card_id}/lock", form)
        assert status == 403 and "security token" in page
    _, page, _ = await client.get(f"/panel/cards/{card_id}")
    assert '<dd id="card-state">ACTIVE</dd>' in page
    # The token of another session is no better.
    other = await signed_in(api, Role.MANAGER)
    _, other_page, _ = await other.get(f"/panel/cards/{card_id}")
    status, _, _ = await client.post(f"/panel/cards/{card_id}/lock", {
        "reason": "3", "confirm": "yes", "csrf": CSRF.search(other_page).group(1)})
    assert status == 403


async def test_a_manager_locks_a_card_with_confirmation_audited_and_masked(api, jwe_key):
    p = await Payments().setup(api, jwe_key)
    client = await signed_in(api, Role.MANAGER)
    card_id = p.card["cardId"]
    path = f"/panel/cards/{card_id}"
    status, page, _ = await client.post(f"{path}/lock", {"reason": "3"}, csrf_from=path)
    assert status == 422 and "tick the box to confirm the lock" in page
    status, page, _ = await client.post(f"{path}/lock", {"reason": "2", "confirm": "yes"},
                                        csrf_from=path)
    assert status == 422 and "locks the card for good" in page
    status, _, response = await client.post(f"{path}/lock", {"reason": "3", "confirm": "yes"},
                                            csrf_from=path)
    assert status == 303 and response.headers["Location"] == path
    status, page, _ = await client.get(path)
    assert '<dd id="card-state">LOCKED</dd>' in page and "3 PENDING_QUERY" in page
    assert p.card["pan"] not in page and p.card["pan"][-4:] in page
    answer = await p.authorize()
    assert answer["decision"] == "DECLINED"
    admin = await api.admin_token()
    async with api.client().get(f"{api.http}/admin/audit-log", headers=bearer(admin)) as r:
        entries = (await r.json())["items"]
    assert any(e["action"] == "PANEL POST /admin/cards/{cardId}/lock"
               and e["target"] == f"card:{card_id}" for e in entries)
    status, _, _ = await client.post(f"{path}/unlock", {"confirm": "yes"}, csrf_from=path)
    assert status == 303
    _, page, _ = await client.get(path)
    assert '<dd id="card-state">ACTIVE</dd>' in page


async def test_an_employee_reads_but_cannot_act_nor_open_admin_pages(api, jwe_key):
    p = await Payments().setup(api, jwe_key)
    client = await signed_in(api, Role.EMPLOYEE)
    card_id = p.card["cardId"]
    status, page, _ = await client.get(f"/panel/cards/{card_id}")
    assert status == 200 and "lock-form" not in page
    status, _, response = await client.get(f"/panel/cards?cardId={card_id}")
    assert status == 303 and response.headers["Location"] == f"/panel/cards/{card_id}"
    status, page, _ = await client.get("/panel/cards?cardId=../users")
    assert status == 422 and 'id="card-id-error"' in page
    _, dashboard, _ = await client.get("/panel/")
    status, _, _ = await client.post(f"/panel/cards/{card_id}/lock", {
        "reason": "3", "confirm": "yes", "csrf": CSRF.search(dashboard).group(1)})
    assert status == 403
    status, _, _ = await client.post(f"/panel/customers/{p.w.cid}/kyc", {
        "decision": "APPROVE", "confirm": "yes", "csrf": CSRF.search(dashboard).group(1)})
    assert status == 403
    for admin_only in ("/panel/audit-log", "/panel/users"):
        status, _, _ = await client.get(admin_only)
        assert status == 403, admin_only
    _, page, _ = await client.get(f"/panel/cards/{card_id}")
    assert '<dd id="card-state">ACTIVE</dd>' in page


async def test_partner_staff_see_their_partner_only(api, jwe_key):
    p = await Payments().setup(api, jwe_key)
    other_partner, other_client = await api.partner(p.w.admin)
    theirs = await register_customer(api, other_client)
    client = await signed_in(api, Role.MANAGER, p.w.partner_id)
    status, _, _ = await client.get(f"/panel/customers/{p.w.cid}")
    assert status == 200
    status, page, _ = await client.get(f"/panel/customers/{theirs['customerId']}")
    unknown_status, unknown_page, _ = await client.get(f"/panel/customers/{uuid.uuid4()}")
    assert status == unknown_status == 404 and "NOT_FOUND" in page
    _, listing, _ = await client.get("/panel/customers")
    assert p.w.cid in listing and theirs["customerId"] not in listing
    # Pages whose domain reads take no scope rely on the panel's check alone.
    for path in (f"/panel/partners/{other_partner}", f"/panel/partners/{other_partner}/certificates"):
        status, _, _ = await client.get(path)
        assert status == 404, path
    status, _, _ = await client.get(f"/panel/programs/{p.w.program['programId']}/fees")
    assert status == 200
    # The platform's own pages are refused.
    status, _, _ = await client.get("/panel/audit-log")
    assert status == 403


async def test_idle_sessions_end_and_sign_out_revokes(api):
    client = await signed_in(api)
    async with api.services.pool.acquire() as conn:
        await conn.execute("UPDATE admin_sessions SET last_seen_at = now() - make_interval("
                           "secs => $1)", float(security.idle_timeout_seconds + 1))
    status, _, response = await client.get("/panel/")
    assert status == 303 and response.headers["Location"] == "/panel/sign-in"
    client = await signed_in(api)
    _, page, _ = await client.get("/panel/")
    status, _, response = await client.post("/panel/sign-out",
                                            {"csrf": CSRF.search(page).group(1)})
    assert status == 303 and response.headers["Location"] == "/panel/sign-in"
    status, _, _ = await client.get("/panel/")
    assert status == 303


async def test_a_partner_page_shows_its_balances_and_statement_as_the_api(api, jwe_key):
    p = await Payments().setup(api, jwe_key, user_funds=0, deposit=42_000)
    client = await signed_in(api, Role.EMPLOYEE)
    status, page, _ = await client.get("/panel/partners")
    assert status == 200 and f"/panel/partners/{p.w.partner_id}" in page
    status, page, _ = await client.get(f"/panel/partners/{p.w.partner_id}")
    assert status == 200
    async with api.client().get(f"{api.http}/admin/partners/{p.w.partner_id}/balances",
                                headers=bearer(p.w.admin)) as r:
        (deposit,) = [b for b in (await r.json())["items"] if b["kind"] == "DEPOSIT"]
    assert deposit["available"] == 42_000
    assert f'<td class="num" data-field="available">{deposit["available"]}</td>' in page
    statement = f"/panel/partners/{p.w.partner_id}/balances/{deposit['balanceId']}/statement"
    status, page, _ = await client.get(statement)
    assert status == 200 and "42000" in page and "CREDIT" in page
    # Another partner's staff member reaches neither.
    other_partner, _ = await api.partner(p.w.admin)
    staff = await signed_in(api, Role.MANAGER, other_partner)
    for path in (f"/panel/partners/{p.w.partner_id}", statement):
        status, _, _ = await staff.get(path)
        assert status == 404, path
    status, page, _ = await staff.get("/panel/partners")
    assert status == 200 and p.w.partner_id not in page


async def test_a_kyb_review_with_its_document_downloaded(api):
    from tests.integration.test_corporations import PDF, create, upload

    admin = await api.admin_token()
    partner_id, partner = await api.partner(admin)
    corporation = await create(api, partner)
    cid = corporation["dcCorporationId"]
    status, document = await upload(api, partner, cid, PDF)
    assert status == 201, document
    employee = await signed_in(api, Role.EMPLOYEE)
    status, page, _ = await employee.get(f"/panel/corporations/{cid}")
    assert status == 200 and "kyb-form" not in page and "extract.pdf" in page
    status, _, _ = await employee.get(f"/panel/corporations/{cid}/documents/"
                                      f"{document['documentId']}")
    assert status == 403  # downloading a KYB document is the API's Admin and Manager's
    client = await signed_in(api, Role.MANAGER)
    status, page, _ = await client.get("/panel/corporations?kybStatus=SUBMITTED")
    assert status == 200 and f"/panel/corporations/{cid}" in page
    async with client.session.get(f"{api.http}/panel/corporations/{cid}/documents/"
                                  f"{document['documentId']}") as r:
        assert r.status == 200 and await r.read() == PDF
        assert r.headers["Content-Disposition"].startswith("attachment;")
    path = f"/panel/corporations/{cid}"
    status, page, _ = await client.post(f"{path}/kyb", {"decision": "REJECTED", "confirm": "yes"},
                                        csrf_from=path)
    assert status == 400 and "a reason is required" in page
    status, _, _ = await client.post(f"{path}/kyb", {"decision": "APPROVED", "confirm": "yes"},
                                     csrf_from=path)
    assert status == 303
    async with api.client().get(f"{api.http}/admin/corporations/{cid}",
                                headers=bearer(admin)) as r:
        assert (await r.json())["corporation"]["kybStatus"] == "APPROVED"
    # Partner staff: the KYB decision is the platform's business.
    staff = await signed_in(api, Role.MANAGER, partner_id)
    status, _, _ = await staff.post(f"{path}/kyb", {"decision": "APPROVED", "confirm": "yes"},
                                    csrf_from=path)
    assert status == 403


async def test_authorizations_filter_and_detail_with_holds_and_clearing(api, jwe_key):
    p = await Payments().setup(api, jwe_key)
    first = p.request(amount=4000)
    assert (await p.send("/network/authorizations", first))[1]["decision"] == "APPROVED"
    declined = await p.authorize(amount=99_999_999)
    client = await signed_in(api, Role.EMPLOYEE)
    status, page, _ = await client.get(
        f"/panel/authorizations?cardId={p.card['cardId']}&decision=DECLINED")
    assert status == 200 and page.count("/panel/authorizations/") == 1
    assert declined["responseCode"] in page and "4000 EUR" not in page
    status, page, _ = await client.get(f"/panel/authorizations?code={declined['responseCode']}"
                                       f"&since=2000-01-01&partnerId={p.w.partner_id}")
    assert status == 200 and page.count("/panel/authorizations/") == 1
    status, page, _ = await client.get("/panel/authorizations?since=yesterday&cardId=x")
    assert status == 422 and "a date, e.g." in page and "an id (UUID)" in page
    status, page, _ = await client.get(
        f"/panel/authorizations?cardId={p.card['cardId']}&decision=APPROVED")
    (detail,) = re.findall(r'href="(/panel/authorizations/[0-9a-f-]{36})"', page)
    status, page, _ = await client.get(detail)
    assert status == 200 and page.count("4000 EUR") >= 3  # the answer, the user and deposit holds
    assert "No ledger transfers" not in page and p.card["pan"] not in page
    status, _ = await p.send("/network/clearings", {"messageId": f"clr-{uuid.uuid4().hex[:8]}",
                                                    "originalMessageId": first["messageId"],
                                                    "amount": 4000})
    assert status == 200
    _, page, _ = await client.get(detail)
    assert "<td>CLEARING</td>" in page
    # Another partner's staff: as unknown.
    other_partner, _ = await api.partner(p.w.admin)
    staff = await signed_in(api, Role.EMPLOYEE, other_partner)
    status, _, _ = await staff.get(detail)
    assert status == 404
    status, page, _ = await staff.get("/panel/authorizations")
    assert status == 200 and "/panel/authorizations/" not in page


async def test_cvv_reset_and_removal_ask_for_confirmation_and_are_audited(api, jwe_key):
    p = await Payments().setup(api, jwe_key, user_funds=0, deposit=0)
    client = await signed_in(api, Role.MANAGER)
    card_id = p.card["cardId"]
    path = f"/panel/cards/{card_id}"
    status, page, _ = await client.post(f"{path}/activate", {"confirm": "yes"}, csrf_from=path)
    assert status == 409 and 'id="activate-error"' in page  # an active card is not activated
    status, _, _ = await client.post(f"{path}/cvv", {"confirm": "yes"}, csrf_from=path)
    assert status == 303
    answer = await p.authorize()  # the old CVC2 stopped working
    assert answer["decision"] == "DECLINED"
    status, page, _ = await client.post(f"{path}/remove", {"confirm": "yes"}, csrf_from=path)
    assert status == 422 and "cannot be undone" in page
    status, _, _ = await client.post(f"{path}/remove", {"confirm": "yes", "confirmFinal": "yes"},
                                     csrf_from=path)
    assert status == 303
    _, page, _ = await client.get(path)
    assert '<dd id="card-state">REMOVED</dd>' in page and "remove-form" not in page
    async with api.client().get(f"{api.http}/admin/audit-log", headers=bearer(p.w.admin)) as r:
        actions = {(e["action"], e["target"]) for e in (await r.json())["items"]}
    assert ("PANEL POST /admin/cards/{cardId}/cvv", f"card:{card_id}") in actions
    assert ("PANEL DELETE /admin/cards/{cardId}", f"card:{card_id}") in actions
    assert not any(a == "PANEL POST /admin/cards/{cardId}/activate" for a, _ in actions)


async def test_an_admin_reloads_a_partner_deposit_once_per_bank_reference(api, jwe_key):
    p = await Payments().setup(api, jwe_key, user_funds=0, deposit=1_000)
    deposit = p.deposit
    path = f"/panel/partners/{p.w.partner_id}/balances/{deposit}/statement"
    manager = await signed_in(api, Role.MANAGER)
    _, page, _ = await manager.get(path)
    assert "reload-form" not in page  # reloads are the Admin's
    client = await signed_in(api, Role.ADMIN)
    reload = f"/panel/partners/{p.w.partner_id}/balances/{deposit}/reload"
    status, page, _ = await client.post(reload, {"amount": "-5", "bankReference": "B-1",
                                                 "confirm": "yes"}, csrf_from=path)
    assert status == 422 and 'id="reload-error"' in page
    status, page, _ = await client.post(reload, {"amount": "2500", "bankReference": "B-1"},
                                        csrf_from=path)
    assert status == 422 and "confirm the reload" in page
    for _ in range(2):  # the same bank reference books once
        status, _, _ = await client.post(reload, {"amount": "2500", "bankReference": "B-1",
                                                  "confirm": "yes"}, csrf_from=path)
        assert status == 303
    async with api.client().get(f"{api.http}/admin/partners/{p.w.partner_id}/balances/{deposit}",
                                headers=bearer(p.w.admin)) as r:
        assert (await r.json())["available"] == 3_500
    status, _, _ = await client.post(
        f"/panel/partners/{p.w.partner_id}/balances/{deposit}/threshold", {"threshold": "700"},
        csrf_from=path)
    assert status == 303
    _, page, _ = await client.get(path)
    assert 'id="threshold" value="700"' in page
    async with api.client().get(f"{api.http}/admin/audit-log", headers=bearer(p.w.admin)) as r:
        actions = [e["action"] for e in (await r.json())["items"]]
    assert actions.count("PANEL POST /admin/partners/{partnerId}/balances/{balanceId}/reload") == 2
    # A partner's staff member: the BIN sponsor's reloads are the platform's.
    staff = await signed_in(api, Role.ADMIN, p.w.partner_id)
    status, _, _ = await staff.post(reload, {"amount": "1", "bankReference": "B-2",
                                             "confirm": "yes"}, csrf_from=path)
    assert status == 403


async def test_an_admin_manages_administrators_and_a_reset_password_is_changed_first(api):
    client = await signed_in(api, Role.ADMIN)
    email = f"agent-{uuid.uuid4().hex[:8]}@antaca.test"
    status, page, _ = await client.post("/panel/users", {
        "email": email, "role": "EMPLOYEE", "password": "short"}, csrf_from="/panel/users")
    assert status == 400 and 'id="create-error"' in page
    status, _, _ = await client.post("/panel/users", {
        "email": email, "role": "EMPLOYEE", "password": ADMIN_PASSWORD},
        csrf_from="/panel/users")
    assert status == 303
    agent = PanelClient(api)
    status, _, _ = await agent.sign_in(email)
    assert status == 303
    _, page, _ = await client.get("/panel/users")
    (agent_id,) = re.findall(rf'data-email="{re.escape(email)}">.*?action="/panel/users/'
                             r'([0-9a-f-]{36})"', page, re.S)
    status, _, _ = await client.post(f"/panel/users/{agent_id}", {"action": "deactivate"},
                                     csrf_from="/panel/users")
    assert status == 303
    status, _, response = await agent.get("/panel/")
    assert status == 303 and response.headers["Location"] == "/panel/sign-in"
    # Reactivated and given a temporary password (API): the panel asks for a new one first.
    await client.post(f"/panel/users/{agent_id}", {"action": "activate"},
                      csrf_from="/panel/users")
    admin = await api.admin_token()
    async with api.client().post(f"{api.http}/admin/users/{agent_id}/password-reset",
                                 json={"temporaryPassword": "temporary password 1"},
                                 headers=bearer(admin)) as r:
        assert r.status == 200, await r.text()
    agent = PanelClient(api)
    status, _, _ = await agent.sign_in(email, "temporary password 1")
    assert status == 303
    status, page, _ = await agent.get("/panel/customers")
    assert status == 403 and "choose a new one first" in page
    status, _, _ = await agent.post("/panel/password", {
        "currentPassword": "temporary password 1", "newPassword": "a brand new passphrase"},
        csrf_from="/panel/password")
    assert status == 303
    status, _, _ = await agent.get("/panel/customers")
    assert status == 200


async def test_an_admin_signs_a_csr_and_revokes_the_certificate(api):
    from tests.api_harness import make_csr

    admin = await api.admin_token()
    partner_id = await api.new_partner(admin)
    path = f"/panel/partners/{partner_id}/certificates"
    client = await signed_in(api, Role.ADMIN)
    csr, key = make_csr()
    status, page, _ = await client.post(path, {"csr": "not a CSR", "confirm": "yes"},
                                        csrf_from=path)
    assert 400 <= status < 500 and 'id="csr-error"' in page
    status, page, _ = await client.post(path, {"csr": csr, "confirm": "yes"}, csrf_from=path)
    assert status == 201 and "BEGIN CERTIFICATE" in page
    (serial,) = re.findall(r'data-serial="([0-9a-f]+)"', page)
    certificate = re.search(r'id="issued-certificate">([^<]+)<', page).group(1)
    partner = api.client(cert=(certificate, key))
    async with partner.get(f"{api.https}/secure/partner/balances") as r:
        assert r.status == 200
    status, _, _ = await client.post(f"{path}/{serial}/revoke", {"confirm": "yes"},
                                     csrf_from=path)
    assert status == 303
    async with partner.get(f"{api.https}/secure/partner/balances") as r:
        assert r.status == 401
    manager = await signed_in(api, Role.MANAGER)
    _, page, _ = await manager.get(path)
    assert "csr-form" not in page and "revoke" not in page


async def test_a_partners_webhook_deliveries_are_listed_in_scope(api, jwe_key):
    from tests.integration.test_webhooks import allow_private, register

    allow_private(api)
    p = await Payments().setup(api, jwe_key, user_funds=0, deposit=0)
    status, endpoint = await register(p.w, "http://127.0.0.1:9/hook")
    assert status == 201, endpoint
    await register_customer(api, p.w.partner, verified=True)  # an event, so a delivery
    client = await signed_in(api, Role.EMPLOYEE)
    _, page, _ = await client.get(f"/panel/partners/{p.w.partner_id}")
    path = f"/panel/partners/{p.w.partner_id}/webhooks/{endpoint['endpointId']}"
    assert path in page and "http://127.0.0.1:9/hook" in page
    status, page, _ = await client.get(path)
    assert status == 200 and "No deliveries." not in page and "PENDING" in page
    other_partner, _ = await api.partner(p.w.admin)
    staff = await signed_in(api, Role.EMPLOYEE, other_partner)
    status, _, _ = await staff.get(path)
    assert status == 404
    status, _, _ = await staff.get(f"/panel/partners/{other_partner}/webhooks/"
                                   f"{endpoint['endpointId']}")
    assert status == 404  # the endpoint is looked up under its partner


async def test_an_admin_changes_where_a_partners_alerts_go(api):
    admin = await api.admin_token()
    partner_id = await api.new_partner(admin)
    path = f"/panel/partners/{partner_id}"
    client = await signed_in(api, Role.ADMIN)
    status, page, _ = await client.post(f"{path}/contact", {"contactEmail": "not an address"},
                                        csrf_from=path)
    assert status == 422 and 'id="contact-error"' in page
    status, _, _ = await client.post(f"{path}/contact", {"contactEmail": "ops@partner.example"},
                                     csrf_from=path)
    assert status == 303
    async with api.client().get(f"{api.http}/admin/partners/{partner_id}",
                                headers=bearer(admin)) as r:
        assert (await r.json())["contactEmail"] == "ops@partner.example"
    manager = await signed_in(api, Role.MANAGER)
    _, page, _ = await manager.get(path)
    assert "contact-form" not in page and "ops@partner.example" in page


async def test_panel_sign_in_shares_the_admin_apis_lockout(api):
    """Wrong passwords on the panel lock the account as on POST /admin/sessions, audited; the
    right password is then refused too, on both doors, until the lockout ends."""
    email = await new_admin(api)
    client = PanelClient(api)
    statuses = [(await client.sign_in(email, "not the password"))[0]
                for _ in range(rate_limits.ADMIN_SIGN_IN.failures_max)]
    assert statuses == [401] * rate_limits.ADMIN_SIGN_IN.failures_max
    status, page, response = await client.sign_in(email)
    assert status == 429 and int(response.headers["Retry-After"]) > 0
    async with api.client().post(f"{api.http}/admin/sessions",
                                 json={"email": email, "password": ADMIN_PASSWORD}) as r:
        assert r.status == 429 and (await r.json())["code"] == "ACCOUNT_LOCKED"
    assert await rate_limits.lockouts(api.services.pool, f"admin:{email}", 10)
