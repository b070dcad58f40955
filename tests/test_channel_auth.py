"""Each channel's authentication over real HTTP and TLS, admin roles and audit, tenant isolation."""

from __future__ import annotations

import datetime as dt
from datetime import timedelta

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from antaca_api.routing import Role
from tests.api_harness import ADMIN_PASSWORD, bearer, customer_body, make_csr, register_customer


def foreign_client_certificate() -> tuple[str, bytes]:
    """A client certificate signed by some other CA than Antaca's."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Evil CA")])
    now = dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "partner")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=1)).not_valid_after(now + timedelta(days=1))
            .sign(ca_key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


async def test_partner_certificate_from_the_csr_endpoint_opens_partner_routes(api):
    admin = await api.admin_token()
    partner_id = await api.new_partner(admin)
    cert, key, issued = await api.partner_certificate(admin, partner_id)
    loaded = x509.load_pem_x509_certificate(cert.encode())
    assert loaded.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == f"partner:{partner_id}"
    assert issued["caCertificate"] == api.ca.cert_pem
    client = api.client(cert=(cert, key))
    async with client.get(f"{api.https}/secure/customers") as r:
        assert r.status == 200 and (await r.json())["items"] == []


async def test_partner_routes_refuse_missing_revoked_and_foreign_certificates(api):
    admin = await api.admin_token()
    partner_id = await api.new_partner(admin)
    cert, key, issued = await api.partner_certificate(admin, partner_id)
    client = api.client(cert=(cert, key))
    async with api.client().get(f"{api.https}/secure/customers") as r:  # TLS, but no certificate
        assert (r.status, (await r.json())["code"]) == (401, "CERTIFICATE_REQUIRED")
    async with api.client().get(f"{api.http}/secure/customers") as r:  # plain HTTP
        assert r.status == 401
    async with client.get(f"{api.https}/admin/partners") as r:  # a certificate is no admin session
        assert r.status == 401

    foreign = api.client(cert=foreign_client_certificate())
    with pytest.raises((aiohttp.ClientConnectorError, aiohttp.ClientOSError, aiohttp.ServerDisconnectedError)):
        async with foreign.get(f"{api.https}/secure/customers") as r:
            await r.read()

    async with api.client().post(f"{api.http}/admin/partners/{partner_id}/certificates/{issued['serial']}/revoke",
                                 headers=bearer(admin)) as r:
        assert r.status == 200 and (await r.json())["revokedAt"]
    async with client.get(f"{api.https}/secure/customers") as r:
        assert (r.status, (await r.json())["code"]) == (401, "CERTIFICATE_REQUIRED")
    async with api.client().get(f"{api.http}/admin/partners/{partner_id}/certificates", headers=bearer(admin)) as r:
        assert [c["revokedAt"] is not None for c in (await r.json())["items"]] == [True]


async def test_suspended_partner_is_refused(api):
    admin = await api.admin_token()
    partner_id, client = await api.partner(admin)
    async with api.client().put(f"{api.http}/admin/partners/{partner_id}/status", json={"status": "SUSPENDED"},
                                headers=bearer(admin)) as r:
        assert (await r.json())["status"] == "SUSPENDED"
    async with client.get(f"{api.https}/secure/customers") as r:
        assert (r.status, (await r.json())["code"]) == (403, "PARTNER_SUSPENDED")


async def test_invalid_csr_is_refused(api):
    admin = await api.admin_token()
    partner_id = await api.new_partner(admin)
    for csr in ("not a csr", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"):
        async with api.client().post(f"{api.http}/admin/partners/{partner_id}/certificates", json={"csr": csr},
                                     headers=bearer(admin)) as r:
            assert (r.status, (await r.json())["code"]) == (400, "INVALID_CSR")
    async with api.client().post(f"{api.http}/admin/partners/00000000-0000-0000-0000-000000000001/certificates",
                                 json={"csr": make_csr()[0]}, headers=bearer(admin)) as r:
        assert r.status == 404


async def test_admin_login_sessions_and_expiry(api):
    token = await api.admin_token(Role.MANAGER)
    async with api.client().post(f"{api.http}/admin/sessions", json={"email": "nobody@x.io",
                                                                     "password": ADMIN_PASSWORD}) as r:
        assert (r.status, (await r.json())["code"]) == (401, "INVALID_CREDENTIALS")
    async with api.services.pool.acquire() as conn:
        email = await conn.fetchval("SELECT email FROM admin_users WHERE role = 'MANAGER'")
    async with api.client().post(f"{api.http}/admin/sessions", json={"email": email, "password": "wrong"}) as r:
        assert (r.status, (await r.json())["code"]) == (401, "INVALID_CREDENTIALS")
    for headers in ({}, bearer("made-up"), {"Authorization": "Basic abc"}):
        async with api.client().get(f"{api.http}/admin/partners", headers=headers) as r:
            assert r.status == 401
    real_clock = api.services.clock
    api.services.clock = lambda: real_clock() + timedelta(seconds=api.services.settings.admin_session_ttl + 1)
    async with api.client().get(f"{api.http}/admin/partners", headers=bearer(token)) as r:
        assert (r.status, (await r.json())["code"]) == (401, "SESSION_EXPIRED")
    api.services.clock = real_clock
    async with api.client().delete(f"{api.http}/admin/sessions/current", headers=bearer(token)) as r:
        assert r.status == 204
    async with api.client().get(f"{api.http}/admin/partners", headers=bearer(token)) as r:
        assert r.status == 401


@pytest.mark.parametrize(("role", "allowed"), [(Role.ADMIN, True), (Role.MANAGER, False), (Role.EMPLOYEE, False)])
async def test_admin_only_endpoints(api, role, allowed):
    admin = await api.admin_token()
    partner_id = await api.new_partner(admin)
    token = await api.admin_token(role)
    attempts = [
        ("POST", "/admin/partners", {"name": "X"}),
        ("POST", "/admin/users", {"email": f"{role.lower()}@new.io", "password": "long enough pass", "role": "EMPLOYEE"}),
        ("POST", f"/admin/partners/{partner_id}/certificates", {"csr": make_csr()[0]}),
        ("PUT", f"/admin/partners/{partner_id}/status", {"status": "ACTIVE"}),
        ("GET", "/admin/audit-log", None),
    ]
    for method, path, body in attempts:
        async with api.client().request(method, f"{api.http}{path}", json=body, headers=bearer(token)) as r:
            if allowed:
                assert r.status in (200, 201), (path, await r.text())
            else:
                assert (r.status, (await r.json())["code"]) == (403, "FORBIDDEN"), path
    async with api.client().get(f"{api.http}/admin/partners", headers=bearer(token)) as r:
        assert r.status == 200  # reading partners is open to every role


async def test_audit_log_records_who_what_and_target(api):
    admin = await api.admin_token()
    partner_id = await api.new_partner(admin, name="Audited")
    async with api.client().get(f"{api.http}/admin/partners/{partner_id}", headers=bearer(admin)) as r:
        assert r.status == 200
    async with api.client().post(f"{api.http}/admin/partners", json={"name": ""}, headers=bearer(admin)) as r:
        assert r.status == 400  # refused requests are not audited
    async with api.client().get(f"{api.http}/admin/audit-log", headers=bearer(admin)) as r:
        entries = (await r.json())["items"]
    partner_entries = [e for e in entries if e["target"] == f"partner:{partner_id}"]
    assert len(partner_entries) == 1
    assert sum(e["action"] == "POST /admin/partners" for e in entries) == 1
    entry = partner_entries[0]
    assert entry["action"] == "POST /admin/partners" and entry["adminEmail"].startswith("admin-")
    assert all(not e["action"].startswith("GET") for e in entries)


async def test_partners_are_isolated(api):
    admin = await api.admin_token()
    _, partner_a = await api.partner(admin)
    _, partner_b = await api.partner(admin)
    customer = await register_customer(api, partner_a)
    cid = customer["customerId"]
    for method, path, body in (
        ("GET", f"/secure/customers/{cid}", None),
        ("PATCH", f"/secure/customers/{cid}", {"email": "x@y.io"}),
        ("POST", f"/secure/customers/{cid}/register", {"documentType": "PASSPORT", "documentNumber": "AB1234",
                                                        "documentCountry": "PL"}),
        ("PUT", f"/secure/customers/{cid}/kyc", {"status": "VERIFIED"}),
        ("GET", f"/secure/customers/{cid}/kyc", None),
        ("GET", "/secure/customers/not-a-uuid", None),
    ):
        async with partner_b.request(method, f"{api.https}{path}", json=body) as r:
            assert (r.status, (await r.json())["code"]) == (404, "NOT_FOUND"), path
    async with partner_b.get(f"{api.https}/secure/customers") as r:
        assert (await r.json())["items"] == []
    async with partner_b.post(f"{api.https}/secure/customers", json=customer_body(customer["externalId"])) as r:
        assert r.status == 201  # external ids are per partner
    async with partner_a.get(f"{api.https}/secure/customers/{cid}") as r:
        assert (await r.json())["kycStatus"] == "NOT_VERIFIED"  # untouched by partner B
