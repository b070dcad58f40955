"""Channel security over real HTTP and TLS: partner mTLS, the CSR endpoint, admin roles and sessions, tenancy."""

from __future__ import annotations

import datetime as dt
import ssl
import uuid

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from antaca_api.admins import create_admin_user
from antaca_api.routing import Role
from tests.api_harness import ADMIN_PASSWORD, bearer, customer_body, make_csr, register_customer


async def call(session: aiohttp.ClientSession, method: str, url: str, **kwargs) -> tuple[int, dict | None]:
    """One request: (status, JSON body or None)."""
    async with session.request(method, url, **kwargs) as r:
        return r.status, (await r.json() if r.content_type == "application/json" else None)


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def foreign_client_certificate(common_name: str) -> tuple[str, bytes]:
    """A client certificate signed by a throwaway CA that Antaca does not trust: (cert PEM, key PEM)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder().subject_name(_name("Rogue CA")).issuer_name(_name("Rogue CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), _pem_key(key)


async def issue(api, token: str, partner_id: str, csr: str) -> tuple[int, dict]:
    return await call(api.client(), "POST", f"{api.http}/admin/partners/{partner_id}/certificates",
                      json={"csr": csr}, headers=bearer(token))


async def certificates(api, token: str, partner_id: str) -> list[dict]:
    status, body = await call(api.client(), "GET", f"{api.http}/admin/partners/{partner_id}/certificates",
                              headers=bearer(token))
    assert status == 200, body
    return body["items"]


async def count(api, table: str) -> int:
    async with api.services.pool.acquire() as conn:
        return await conn.fetchval(f"SELECT count(*) FROM {table}")


# --- partner mutual TLS -------------------------------------------------------------------------


async def test_issued_certificate_opens_partner_routes_and_revocation_closes_them_at_once(api):
    """A certificate from the CSR endpoint works on /secure; once revoked, the same client gets 401 at once."""
    token = await api.admin_token()
    partner_id = await api.new_partner(token)
    csr, key_pem = make_csr("whatever-the-partner-likes")
    status, issued = await issue(api, token, partner_id, csr)
    assert status == 201, issued
    partner = api.client(cert=(issued["certificate"], key_pem))

    status, customer = await call(partner, "POST", f"{api.https}/secure/customers", json=customer_body())
    assert status == 201, customer
    status, page = await call(partner, "GET", f"{api.https}/secure/customers")
    assert status == 200 and [c["customerId"] for c in page["items"]] == [customer["customerId"]]

    status, revoked = await call(api.client(), "POST",
                                 f"{api.http}/admin/partners/{partner_id}/certificates/{issued['serial']}/revoke",
                                 headers=bearer(token))
    assert status == 200 and revoked["revokedAt"] is not None, revoked
    status, body = await call(partner, "GET", f"{api.https}/secure/customers")
    assert (status, body["code"]) == (401, "CERTIFICATE_REQUIRED")
    status, body = await call(partner, "POST", f"{api.https}/secure/customers", json=customer_body())
    assert (status, body["code"]) == (401, "CERTIFICATE_REQUIRED")
    assert await count(api, "customers") == 1

    listed = await certificates(api, token, partner_id)
    assert [(c["serial"], c["revokedAt"] is not None) for c in listed] == [(issued["serial"], True)]


async def test_partner_routes_refuse_callers_without_a_certificate(api):
    """TLS without a client certificate and plain HTTP both get 401 CERTIFICATE_REQUIRED on both partner prefixes."""
    await api.partner()
    for base in (api.https, api.http):
        for method, path in (("GET", "/secure/customers"), ("POST", "/secure/customers"),
                             ("GET", "/lifecycle/v1/corporations")):
            status, body = await call(api.client(), method, f"{base}{path}",
                                      json=customer_body() if method == "POST" else None)
            assert (status, body["code"]) == (401, "CERTIFICATE_REQUIRED"), (base, path, body)
    assert await count(api, "customers") == 0


async def test_certificate_from_another_ca_is_refused_in_the_handshake(api):
    """A client certificate signed by a CA other than Antaca's fails the TLS handshake; no request is served."""
    partner_id, _ = await api.partner()
    rogue = api.client(cert=foreign_client_certificate(f"partner:{partner_id}"))
    with pytest.raises((aiohttp.ClientConnectionError, ssl.SSLError)):
        async with rogue.post(f"{api.https}/secure/customers", json=customer_body()) as r:
            await r.read()
    assert await count(api, "customers") == 0


def test_server_tls_trusts_only_antaca_ca(api):
    """The server's TLS context asks for optional client certificates with Antaca's CA as its only trust anchor."""
    context = api.ca.server_ssl_context(["127.0.0.1", "localhost"])
    assert context.verify_mode is ssl.CERT_OPTIONAL
    assert context.get_ca_certs(binary_form=True) == [api.ca.cert.public_bytes(serialization.Encoding.DER)]


async def test_ca_signed_certificate_unknown_to_the_database_is_refused(api):
    """A certificate Antaca's CA signed but that was never issued to a partner (not in the database) gets 401."""
    partner_id, _ = await api.partner()
    csr, key_pem = make_csr()
    cert = api.ca.sign_client_csr(csr, f"partner:{partner_id}")
    stray = api.client(cert=(cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem))
    status, body = await call(stray, "GET", f"{api.https}/secure/customers")
    assert (status, body["code"]) == (401, "CERTIFICATE_REQUIRED")


async def test_expired_certificate_is_refused(api):
    """Once the clock passes the certificate's notAfter, the partner gets 401 CERTIFICATE_REQUIRED."""
    _, partner = await api.partner()
    status, _ = await call(partner, "GET", f"{api.https}/secure/customers")
    assert status == 200
    real_clock = api.services.clock
    api.services.clock = lambda: real_clock() + dt.timedelta(days=366)
    try:
        status, body = await call(partner, "GET", f"{api.https}/secure/customers")
    finally:
        api.services.clock = real_clock
    assert (status, body["code"]) == (401, "CERTIFICATE_REQUIRED")


async def test_suspended_partner_is_refused_until_reactivated(api):
    """A SUSPENDED partner gets 403 PARTNER_SUSPENDED with a valid certificate; reactivation restores access."""
    token = await api.admin_token()
    partner_id, partner = await api.partner(token)
    url = f"{api.http}/admin/partners/{partner_id}/status"
    status, body = await call(api.client(), "PUT", url, json={"status": "SUSPENDED"}, headers=bearer(token))
    assert (status, body["status"]) == (200, "SUSPENDED")
    status, body = await call(partner, "POST", f"{api.https}/secure/customers", json=customer_body())
    assert (status, body["code"]) == (403, "PARTNER_SUSPENDED")
    assert await count(api, "customers") == 0
    status, body = await call(api.client(), "PUT", url, json={"status": "ACTIVE"}, headers=bearer(token))
    assert (status, body["status"]) == (200, "ACTIVE")
    status, _ = await call(partner, "POST", f"{api.https}/secure/customers", json=customer_body())
    assert status == 201


async def test_partner_certificate_does_not_open_admin_routes(api):
    """Presenting a partner certificate to /admin without a bearer token is 401 UNAUTHENTICATED."""
    _, partner = await api.partner()
    for method, path in (("GET", "/admin/partners"), ("POST", "/admin/partners")):
        status, body = await call(partner, method, f"{api.https}{path}",
                                  json={"name": "Sneaky"} if method == "POST" else None)
        assert (status, body["code"]) == (401, "UNAUTHENTICATED"), path
    async with api.services.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM partners WHERE name = 'Sneaky'") == 0


async def test_revoking_through_another_partners_path_is_404(api):
    """A certificate serial under another partner's path is unknown; the certificate stays valid."""
    token = await api.admin_token()
    partner_a = await api.new_partner(token, "A")
    partner_b = await api.new_partner(token, "B")
    cert, key, issued = await api.partner_certificate(token, partner_a)
    status, body = await call(api.client(), "POST",
                              f"{api.http}/admin/partners/{partner_b}/certificates/{issued['serial']}/revoke",
                              headers=bearer(token))
    assert (status, body["code"]) == (404, "NOT_FOUND")
    status, _ = await call(api.client(cert=(cert, key)), "GET", f"{api.https}/secure/customers")
    assert status == 200
    assert [c["revokedAt"] for c in await certificates(api, token, partner_a)] == [None]


# --- the CSR endpoint ---------------------------------------------------------------------------


async def test_issued_certificate_names_the_partner_whatever_the_csr_says(api):
    """The CN is partner:<id> even when the CSR claims another partner's identity, and it authenticates as its owner."""
    token = await api.admin_token()
    partner_id = await api.new_partner(token, "Honest")
    other_id = await api.new_partner(token, "Other")
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"partner:{other_id}"),
                                 x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Antaca Admins")]))
        .sign(key, hashes.SHA256())
    ).public_bytes(serialization.Encoding.PEM).decode()
    status, issued = await issue(api, token, partner_id, csr)
    assert status == 201, issued
    cert = x509.load_pem_x509_certificate(issued["certificate"].encode())
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == [f"partner:{partner_id}"]
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value != "Antaca Admins"
    assert cert.issuer == api.ca.cert.subject
    assert issued["partnerId"] == partner_id and issued["caCertificate"] == api.ca.cert_pem
    assert issued["subject"] == cert.subject.rfc4514_string()
    partner = api.client(cert=(issued["certificate"], _pem_key(key)))
    status, created = await call(partner, "POST", f"{api.https}/secure/customers", json=customer_body())
    assert status == 201
    async with api.services.pool.acquire() as conn:
        owner = await conn.fetchval("SELECT partner_id FROM customers WHERE id = $1", uuid.UUID(created["customerId"]))
    assert str(owner) == partner_id


def _csr(key) -> str:
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = x509.CertificateSigningRequestBuilder().subject_name(_name("x")).sign(key, algorithm)
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _tampered_csr(*, key: bool) -> str:
    """A CSR with one bit flipped: in its public key (no longer a curve point) or in its signed subject."""
    csr = x509.load_pem_x509_csr(make_csr("abcdefgh")[0].encode())
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    if key:
        point = csr.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        der[der.index(point) + 40] ^= 0x01
    else:
        der[der.index(b"abcdefgh")] ^= 0x01
    return x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()


async def test_invalid_csrs_are_refused_and_nothing_is_issued(api):
    """Garbage, a certificate, a bad key or signature, RSA-1024 or Ed25519 are 400 INVALID_CSR (never 500)."""
    token = await api.admin_token()
    partner_id = await api.new_partner(token)
    _, _, issued = await api.partner_certificate(token, partner_id)
    invalid = {
        "garbage": "not a CSR",
        "empty": "",
        "armoured garbage": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        "a certificate": issued["certificate"],
        "tampered key": _tampered_csr(key=True),
        "tampered subject": _tampered_csr(key=False),
        "rsa-1024": _csr(rsa.generate_private_key(65537, 1024)),
        "ed25519": _csr(ed25519.Ed25519PrivateKey.generate()),
    }
    for name, csr in invalid.items():
        status, body = await issue(api, token, partner_id, csr)
        assert (status, body["code"]) == (400, "INVALID_CSR"), (name, body)
    assert [c["serial"] for c in await certificates(api, token, partner_id)] == [issued["serial"]]


# --- administrators -----------------------------------------------------------------------------


async def _new_admin(api, role: Role) -> str:
    email = f"{role.lower()}-{uuid.uuid4().hex[:8]}@antaca.test"
    async with api.services.pool.acquire() as conn:
        await create_admin_user(conn, email, ADMIN_PASSWORD, role)
    return email


async def _login(api, email: str) -> str:
    status, body = await call(api.client(), "POST", f"{api.http}/admin/sessions",
                              json={"email": email, "password": ADMIN_PASSWORD})
    assert status == 201, body
    return body["token"]


async def test_login_refuses_wrong_password_and_unknown_email_alike(api):
    """Wrong password and unknown e-mail are the same 401 INVALID_CREDENTIALS; the right password logs in."""
    email = await _new_admin(api, Role.EMPLOYEE)
    url = f"{api.http}/admin/sessions"
    answers = []
    for credentials in ({"email": email, "password": ADMIN_PASSWORD + "x"},
                        {"email": "nobody@antaca.test", "password": ADMIN_PASSWORD}):
        status, body = await call(api.client(), "POST", url, json=credentials)
        assert (status, body["code"]) == (401, "INVALID_CREDENTIALS"), credentials
        answers.append({k: v for k, v in body.items() if k != "requestId"})  # a fresh id each
    assert answers[0] == answers[1]
    assert await count(api, "admin_sessions") == 0
    status, body = await call(api.client(), "POST", url, json={"email": email.upper(), "password": ADMIN_PASSWORD})
    assert (status, body["role"]) == (201, "EMPLOYEE")


ADMIN_ROWS = """SELECT (SELECT count(*) FROM partners) + (SELECT count(*) FROM admin_users)
    + (SELECT count(*) FROM partner_certificates) + (SELECT count(*) FROM audit_log)"""


async def test_roles_allow_and_refuse(api):
    """ADMIN-only endpoints refuse MANAGER and EMPLOYEE with 403 FORBIDDEN; reading partners is open to all roles."""
    tokens = {role: await api.admin_token(role) for role in Role}
    partner_id = await api.new_partner(tokens[Role.ADMIN])
    admin_only = [
        ("POST", "/admin/partners", {"name": "P2"}),
        ("POST", "/admin/users", {"email": f"{uuid.uuid4().hex[:8]}@antaca.test", "password": ADMIN_PASSWORD,
                                  "role": "EMPLOYEE"}),
        ("POST", f"/admin/partners/{partner_id}/certificates", {"csr": make_csr()[0]}),
        ("PUT", f"/admin/partners/{partner_id}/status", {"status": "SUSPENDED"}),
        ("GET", "/admin/users", None),
        ("GET", "/admin/audit-log", None),
    ]
    async with api.services.pool.acquire() as conn:
        before = await conn.fetchval(ADMIN_ROWS)
    for role in (Role.MANAGER, Role.EMPLOYEE):
        for method, path, body in admin_only:
            status, answer = await call(api.client(), method, f"{api.http}{path}", json=body,
                                        headers=bearer(tokens[role]))
            assert (status, answer["code"]) == (403, "FORBIDDEN"), (role, method, path)
    async with api.services.pool.acquire() as conn:
        assert await conn.fetchval(ADMIN_ROWS) == before
        assert await conn.fetchval("SELECT status FROM partners WHERE id = $1", uuid.UUID(partner_id)) == "ACTIVE"
    for role in Role:
        status, body = await call(api.client(), "GET", f"{api.http}/admin/partners", headers=bearer(tokens[role]))
        assert status == 200 and [p["id"] for p in body["items"]] == [partner_id], role
    for method, path, body in admin_only:
        status, answer = await call(api.client(), method, f"{api.http}{path}", json=body,
                                    headers=bearer(tokens[Role.ADMIN]))
        assert status in (200, 201), (method, path, answer)


async def test_admin_routes_refuse_missing_or_bad_tokens(api):
    """No token, an unknown token, an empty one or a non-bearer scheme are 401 UNAUTHENTICATED."""
    token = await api.admin_token()
    for headers in ({}, bearer("not-a-real-token"), {"Authorization": f"Basic {token}"},
                    {"Authorization": "Bearer "}, bearer(token + "x")):
        status, body = await call(api.client(), "GET", f"{api.http}/admin/partners", headers=headers)
        assert (status, body["code"]) == (401, "UNAUTHENTICATED"), headers
        status, body = await call(api.client(), "POST", f"{api.http}/admin/partners", json={"name": "X"},
                                  headers=headers)
        assert (status, body["code"]) == (401, "UNAUTHENTICATED"), headers
    assert await count(api, "partners") == 0


async def test_admin_session_expires_after_its_ttl(api):
    """Just before the TTL the token works; past it, 401 SESSION_EXPIRED."""
    token = await api.admin_token()
    ttl = api.services.settings.admin_session_ttl
    real_clock = api.services.clock
    try:
        api.services.clock = lambda: real_clock() + dt.timedelta(seconds=ttl - 60)
        status, _ = await call(api.client(), "GET", f"{api.http}/admin/partners", headers=bearer(token))
        assert status == 200
        api.services.clock = lambda: real_clock() + dt.timedelta(seconds=ttl + 1)
        status, body = await call(api.client(), "GET", f"{api.http}/admin/partners", headers=bearer(token))
        assert (status, body["code"]) == (401, "SESSION_EXPIRED")
    finally:
        api.services.clock = real_clock


async def test_logout_revokes_the_token(api):
    """After DELETE /admin/sessions/current the token is refused; another session of the same admin is not."""
    email = await _new_admin(api, Role.ADMIN)
    first, second = await _login(api, email), await _login(api, email)
    status, _ = await call(api.client(), "DELETE", f"{api.http}/admin/sessions/current", headers=bearer(first))
    assert status == 204
    status, body = await call(api.client(), "GET", f"{api.http}/admin/partners", headers=bearer(first))
    assert (status, body["code"]) == (401, "UNAUTHENTICATED")
    status, _ = await call(api.client(), "GET", f"{api.http}/admin/partners", headers=bearer(second))
    assert status == 200


async def test_audit_log_records_who_what_and_target_but_not_reads(api):
    """Admin actions are logged with the admin's e-mail, method and route, and target; GETs and refusals are not."""
    admin_email = await _new_admin(api, Role.ADMIN)
    token = await _login(api, admin_email)
    employee = await api.admin_token(Role.EMPLOYEE)

    async def audit_log() -> list[dict]:
        status, body = await call(api.client(), "GET", f"{api.http}/admin/audit-log", headers=bearer(token))
        assert status == 200, body
        return body["items"]

    assert await audit_log() == []
    partner_id = await api.new_partner(token)
    status, _ = await call(api.client(), "PUT", f"{api.http}/admin/partners/{partner_id}/status",
                           json={"status": "SUSPENDED"}, headers=bearer(token))
    assert status == 200
    entries = await audit_log()
    assert [(e["adminEmail"], e["action"], e["target"]) for e in entries] == [
        (admin_email, "PUT /admin/partners/{partnerId}/status", f"partner:{partner_id}"),
        (admin_email, "POST /admin/partners", f"partner:{partner_id}"),
    ]

    for path in ("/admin/partners", f"/admin/partners/{partner_id}", f"/admin/partners/{partner_id}/certificates",
                 "/admin/users", "/admin/audit-log"):
        status, _ = await call(api.client(), "GET", f"{api.http}{path}", headers=bearer(token))
        assert status == 200, path
    status, _ = await call(api.client(), "POST", f"{api.http}/admin/partners", json={"name": "No"},
                           headers=bearer(employee))
    assert status == 403
    assert await audit_log() == entries


# --- tenancy ------------------------------------------------------------------------------------


async def test_partner_cannot_reach_another_partners_customers(api):
    """Partner A's GET, PATCH, KYC register and KYC set on B's customer are 404; B's list and data are untouched."""
    token = await api.admin_token()
    _, partner_a = await api.partner(token)
    _, partner_b = await api.partner(token)
    own = await register_customer(api, partner_a)
    theirs = await register_customer(api, partner_b)
    url = f"{api.https}/secure/customers/{theirs['customerId']}"
    attempts = [
        ("GET", url, None),
        ("PATCH", url, {"email": "attacker@example.com"}),
        ("POST", f"{url}/register", {"documentType": "PASSPORT", "documentNumber": "AB123456",
                                     "documentCountry": "PL"}),
        ("PUT", f"{url}/kyc", {"status": "VERIFIED"}),
        ("GET", f"{url}/kyc", None),
    ]
    for method, target, body in attempts:
        status, answer = await call(partner_a, method, target, json=body)
        assert (status, answer["code"]) == (404, "NOT_FOUND"), (method, target, answer)

    status, page = await call(partner_a, "GET", f"{api.https}/secure/customers")
    assert [c["customerId"] for c in page["items"]] == [own["customerId"]]
    status, page = await call(partner_b, "GET", f"{api.https}/secure/customers")
    assert [c["customerId"] for c in page["items"]] == [theirs["customerId"]]
    status, unchanged = await call(partner_b, "GET", url)
    assert status == 200 and unchanged == theirs
    status, history = await call(partner_b, "GET", f"{url}/kyc")
    assert [e["status"] for e in history["history"]] == ["NOT_VERIFIED"]


async def test_malformed_ids_in_paths_are_404(api):
    """A path id that is not a UUID (or not a hex serial) is 404 NOT_FOUND on partner and admin routes alike."""
    token = await api.admin_token()
    _, partner = await api.partner(token)
    for method, path, body in (("GET", "/secure/customers/not-a-uuid", None),
                               ("PATCH", "/secure/customers/1234", {"email": "a@b.cd"}),
                               ("PUT", "/secure/customers/%27%20OR%201=1--/kyc", {"status": "VERIFIED"})):
        status, answer = await call(partner, method, f"{api.https}{path}", json=body)
        assert (status, answer["code"]) == (404, "NOT_FOUND"), path
    _, partners = await call(api.client(), "GET", f"{api.http}/admin/partners", headers=bearer(token))
    partner_id = partners["items"][0]["id"]
    for method, path, body in (("GET", "/admin/partners/xyz", None),
                               ("GET", "/admin/partners/xyz/certificates", None),
                               ("PUT", "/admin/partners/xyz/status", {"status": "SUSPENDED"}),
                               ("POST", "/admin/partners/xyz/certificates", {"csr": make_csr()[0]}),
                               ("POST", "/admin/partners/xyz/certificates/abc/revoke", None),
                               ("POST", f"/admin/partners/{partner_id}/certificates/not-hex!/revoke", None)):
        status, answer = await call(api.client(), method, f"{api.http}{path}", json=body, headers=bearer(token))
        assert (status, answer["code"]) == (404, "NOT_FOUND"), path
