"""Device pairing, installations and customer sessions: expiry, renewal, revocation."""

from __future__ import annotations

import uuid
from datetime import timedelta

from tests.api_harness import bearer, pair_device, register_customer


async def me(api, token: str):
    async with api.client().get(f"{api.http}/customers/me", headers=bearer(token)) as r:
        return r.status, await r.json()


async def test_pairing_gives_a_session_that_expires_and_renews(api):
    _, partner = await api.partner()
    customer = await register_customer(api, partner)
    pairing = await pair_device(api, partner, customer["customerId"])
    assert pairing["customerId"] == customer["customerId"]
    status, body = await me(api, pairing["sessionToken"])
    assert (status, body["customerId"]) == (200, customer["customerId"])

    real_clock = api.services.clock
    api.services.clock = lambda: real_clock() + timedelta(seconds=api.services.settings.session_ttl + 1)
    status, body = await me(api, pairing["sessionToken"])
    assert (status, body["code"]) == (401, "SESSION_EXPIRED")

    async with api.client().post(f"{api.http}/customers/sessions", json={
            "installationId": pairing["installationId"], "installationSecret": pairing["installationSecret"]}) as r:
        assert r.status == 201
        renewed = await r.json()
    assert (await me(api, renewed["sessionToken"]))[0] == 200
    api.services.clock = real_clock

    async with api.client().post(f"{api.http}/customers/sessions", json={
            "installationId": pairing["installationId"], "installationSecret": "wrong"}) as r:
        assert (r.status, (await r.json())["code"]) == (401, "INVALID_CREDENTIALS")

    async with api.client().delete(f"{api.http}/customers/sessions/current",
                                   headers=bearer(renewed["sessionToken"])) as r:
        assert r.status == 204
    assert (await me(api, renewed["sessionToken"]))[0] == 401


async def test_pairing_code_is_single_use_and_expires(api):
    _, partner = await api.partner()
    customer = await register_customer(api, partner)
    async with partner.post(f"{api.https}/secure/customers/{customer['customerId']}/devices/pairing-codes") as r:
        code = (await r.json())["pairingCode"]
    pair = {"pairingCode": code, "deviceId": "phone"}
    async with api.client().post(f"{api.http}/customers/devices/pair", json=pair) as r:
        assert r.status == 201
    async with api.client().post(f"{api.http}/customers/devices/pair", json=pair) as r:
        assert (r.status, (await r.json())["code"]) == (401, "INVALID_PAIRING_CODE")

    async with partner.post(f"{api.https}/secure/customers/{customer['customerId']}/devices/pairing-codes") as r:
        late_code = (await r.json())["pairingCode"]
    real_clock = api.services.clock
    api.services.clock = lambda: real_clock() + timedelta(seconds=api.services.settings.pairing_code_ttl + 1)
    try:
        async with api.client().post(f"{api.http}/customers/devices/pair",
                                     json={"pairingCode": late_code, "deviceId": "phone"}) as r:
            assert r.status == 401
    finally:
        api.services.clock = real_clock


async def test_pairing_again_on_a_device_deactivates_the_previous_installation(api):
    _, partner = await api.partner()
    customer = await register_customer(api, partner)
    first = await pair_device(api, partner, customer["customerId"], device_id="phone")
    other_device = await pair_device(api, partner, customer["customerId"], device_id="tablet")
    second = await pair_device(api, partner, customer["customerId"], device_id="phone")
    assert (await me(api, first["sessionToken"]))[0] == 401  # its sessions are revoked
    assert (await me(api, second["sessionToken"]))[0] == 200
    assert (await me(api, other_device["sessionToken"]))[0] == 200  # another device is untouched
    async with api.client().post(f"{api.http}/customers/sessions", json={
            "installationId": first["installationId"], "installationSecret": first["installationSecret"]}) as r:
        assert r.status == 401
    async with api.services.pool.acquire() as conn:
        active = await conn.fetchval("SELECT count(*) FROM installations WHERE customer_id = $1 AND active",
                                     uuid.UUID(customer["customerId"]))
        stored = await conn.fetch("SELECT token_hash FROM customer_sessions")
    assert active == 2
    assert all(second["sessionToken"].encode() not in bytes(r["token_hash"]) for r in stored)


async def test_customer_channel_needs_a_session(api):
    async with api.client().get(f"{api.http}/customers/me") as r:
        assert (r.status, (await r.json())["code"]) == (401, "UNAUTHENTICATED")
    async with api.client().get(f"{api.http}/customers/me", headers=bearer("made-up")) as r:
        assert r.status == 401


async def test_pairing_codes_only_for_own_customers(api):
    _, partner_a = await api.partner()
    _, partner_b = await api.partner()
    customer = await register_customer(api, partner_a)
    async with partner_b.post(f"{api.https}/secure/customers/{customer['customerId']}/devices/pairing-codes") as r:
        assert r.status == 404
