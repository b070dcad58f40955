"""Card networks managed like partners: certificates listed and revoked, the network suspended and
reactivated, through the admin channel; the network's authorization requests refused meanwhile."""

from __future__ import annotations

import pytest

from antaca_api.admins import Role
from tests.api_harness import bearer, make_csr
from tests.integration.test_authorizations import Payments


@pytest.fixture(scope="module")
def jwe_key():
    from joserfc.jwk import RSAKey

    return RSAKey.generate_key(2048)


async def admin(p: Payments, method: str, path: str, body=None, token: str | None = None):
    async with p.api.client().request(method, f"{p.api.http}{path}", json=body,
                                      headers=bearer(token or p.w.admin)) as r:
        return r.status, await r.json()


async def authorizations_booked(p: Payments) -> int:
    return await p.api.services.pool.fetchval("SELECT count(*) FROM authorizations")


async def test_a_revoked_network_certificate_is_refused_at_once(api, jwe_key):
    p = await Payments().setup(api, jwe_key)
    assert (await p.authorize())["decision"] == "APPROVED"
    status, listed = await admin(p, "GET", f"/admin/networks/{p.network_id}/certificates")
    assert status == 200 and len(listed["items"]) == 1 and listed["items"][0]["revokedAt"] is None
    serial = listed["items"][0]["serial"]
    booked = await authorizations_booked(p)

    revoke = f"/admin/networks/{p.network_id}/certificates/{serial}/revoke"
    status, revoked = await admin(p, "POST", revoke)
    assert status == 200 and revoked["revokedAt"] is not None
    status, answer = await p.send("/network/authorizations", p.request())
    assert (status, answer["code"]) == (401, "CERTIFICATE_REQUIRED")
    assert "revoked" in answer["message"]
    assert await authorizations_booked(p) == booked  # nothing was decided for it
    status, again = await admin(p, "POST", revoke)
    assert (status, again["revokedAt"]) == (200, revoked["revokedAt"])  # twice changes nothing

    # A new certificate for the network works; another network's path does not know the serial.
    csr, key = make_csr()
    status, issued = await admin(p, "POST", f"/admin/networks/{p.network_id}/certificates",
                                 {"csr": csr})
    assert status == 201
    p.network = api.client(cert=(issued["certificate"], key))
    assert (await p.authorize())["decision"] == "APPROVED"
    status, other = await admin(p, "POST", "/admin/networks", {"name": "Other network"})
    status, body = await admin(p, "POST", f"/admin/networks/{other['networkId']}/certificates/"
                               f"{issued['serial']}/revoke")
    assert (status, body["code"]) == (404, "NOT_FOUND")
    for bad in ("not-hex!", "f" * 41):
        status, body = await admin(p, "POST",
                                   f"/admin/networks/{p.network_id}/certificates/{bad}/revoke")
        assert status == 404
    employee = await api.admin_token(Role.EMPLOYEE)
    status, body = await admin(p, "POST", f"/admin/networks/{p.network_id}/certificates/"
                               f"{issued['serial']}/revoke", token=employee)
    assert (status, body["code"]) == (403, "FORBIDDEN")
    assert (await p.authorize())["decision"] == "APPROVED"


async def test_a_suspended_network_is_refused_until_reactivated(api, jwe_key):
    p = await Payments().setup(api, jwe_key)
    assert (await p.authorize())["decision"] == "APPROVED"
    booked = await authorizations_booked(p)
    path = f"/admin/networks/{p.network_id}/status"
    status, network = await admin(p, "PUT", path, {"status": "SUSPENDED"})
    assert (status, network["status"]) == (200, "SUSPENDED")
    for route in ("/network/authorizations", "/network/cards/lock"):
        body = (p.request() if route.endswith("authorizations")
                else {"pan": p.card["pan"], "reason": 7})
        status, answer = await p.send(route, body)
        assert (status, answer["code"]) == (403, "NETWORK_SUSPENDED"), route
    assert await authorizations_booked(p) == booked
    status, card = await p.w.app_plain("GET", f"/customers/me/cards/{p.card['cardId']}/status")
    assert card["status"] == "ACTIVE"  # the refused lock did nothing

    status, network = await admin(p, "PUT", path, {"status": "ACTIVE"})
    assert (status, network["status"]) == (200, "ACTIVE")
    assert (await p.authorize())["decision"] == "APPROVED"
    status, body = await admin(p, "PUT", path, {"status": "GONE"})
    assert (status, body["code"]) == (400, "VALIDATION_ERROR")
    status, audit = await admin(p, "GET", "/admin/audit-log")
    actions = [e["action"] for e in audit["items"]]
    assert actions.count("PUT /admin/networks/{networkId}/status") == 2
