"""Step-up before sensitive data, over the real customer channel: the application PIN, its lock,
the proof and its expiry; and the card data's field names."""

from __future__ import annotations

import calendar
import uuid
from datetime import timedelta

import pytest

from antaca_api import step_up
from tests.api_harness import bearer, pair_device
from tests.integration.test_cards import APP_PIN, World

ME = "/customers/me/cards"


@pytest.fixture(scope="module")
def jwe_key():
    from joserfc.jwk import RSAKey

    return RSAKey.generate_key(2048)


async def test_card_data_needs_a_fresh_step_up_proof(api, jwe_key):
    w = await World().setup(api, jwe_key)
    card = await w.virtual()
    data_path = f"{api.http}{ME}/{card['cardId']}"
    status, body = await w.jwe.request(w.app, "GET", data_path, headers=w.me)
    assert (status, body["code"]) == (403, "STEP_UP_REQUIRED")
    status, body = await w.jwe.request(w.app, "GET", data_path,
                                       headers={**w.me, "Step-Up-Token": "forged"})
    assert (status, body["code"]) == (403, "STEP_UP_REQUIRED")

    status, proof = await w.step_up()
    assert status == 201 and proof["header"] == "Step-Up-Token"
    headers = {**w.me, "Step-Up-Token": proof["stepUpToken"]}
    status, data = await w.jwe.request(w.app, "GET", data_path, headers=headers)
    assert (status, data["pan"]) == (200, card["pan"])
    status, _ = await w.jwe.request(w.app, "POST", f"{data_path}/pin", {"pin": "4821"},
                                    headers=headers)
    assert status == 204  # one proof serves several requests while it is fresh

    real_clock = api.services.clock
    try:
        api.services.clock = lambda: real_clock() + timedelta(seconds=step_up.STEP_UP_PROOF_SECONDS)
        for method, path, body in (("GET", data_path, None), ("POST", f"{data_path}/cvv", None),
                                   ("POST", f"{data_path}/pin", {"pin": "4821"})):
            status, answer = await w.jwe.request(w.app, method, path, body, headers=headers)
            assert (status, answer["code"]) == (403, "STEP_UP_REQUIRED"), path
            assert "expired" in answer["message"]
    finally:
        api.services.clock = real_clock
    async with api.services.pool.acquire() as conn:
        counter = await conn.fetchval("SELECT cvc_counter FROM cards WHERE id = $1",
                                      uuid.UUID(card["cardId"]))
    assert counter == 0  # the refused CVV reset changed nothing

    # The partner channel is unchanged: its server confirms its user its own way.
    status, data = await w.jwe.request(
        w.partner, "GET", f"{api.https}/secure/customers/{w.cid}/cards/{card['cardId']}")
    assert (status, data["pan"]) == (200, card["pan"])


async def test_card_data_has_the_descriptions_field_names(api, jwe_key):
    w = await World().setup(api, jwe_key)
    card = await w.virtual()
    status, data = await w.app_jwe("GET", f"{ME}/{card['cardId']}")
    assert status == 200
    assert (data["id"], data["type"], data["cvv"], data["cardNo"]) == (
        card["cardId"], "VIRTUAL", card["cvc2"], card["pan"])
    month, year = int(card["expiry"][:2]), 2000 + int(card["expiry"][3:])
    assert data["exp"] == f"{year:04d}-{month:02d}-{calendar.monthrange(year, month)[1]:02d}"
    for issued in (card, data):  # the issuing answer carries them too
        assert {"id", "type", "cvv", "cardNo", "exp"} <= set(issued)


async def test_wrong_application_pins_lock_it_for_a_while(api, jwe_key):
    w = await World().setup(api, jwe_key)
    for attempt in range(1, step_up.APP_PIN_TRIES_MAX):
        status, body = await w.step_up("9731")
        assert (status, body["code"]) == (403, "INVALID_APP_PIN")
        assert f"{step_up.APP_PIN_TRIES_MAX - attempt} tries left" in body["message"]
    status, body = await w.step_up("9731")
    assert (status, body["code"]) == (423, "APP_PIN_LOCKED")
    status, body = await w.step_up(APP_PIN)  # the right PIN too, while locked
    assert (status, body["code"]) == (423, "APP_PIN_LOCKED")
    status, body = await w.jwe.request(w.app, "PUT", f"{api.http}/customers/me/app-pin",
                                       {"pin": "1397", "currentPin": APP_PIN}, headers=w.me)
    assert (status, body["code"]) == (423, "APP_PIN_LOCKED")
    real_clock = api.services.clock
    try:
        api.services.clock = lambda: real_clock() + timedelta(minutes=step_up.APP_PIN_LOCK_MINUTES)
        # The first session has expired by now: the app signs in again (a fresh pairing).
        w.me = bearer((await pair_device(api, w.partner, w.cid, device_id="later"))["sessionToken"])
        status, proof = await w.step_up(APP_PIN)
        assert status == 201, proof
    finally:
        api.services.clock = real_clock
    async with api.services.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM customer_app_pins WHERE customer_id = $1",
                                  uuid.UUID(w.cid))
        proofs = await conn.fetch("SELECT * FROM step_up_proofs")
    assert (row["failures"], row["locked_until"]) == (0, None)
    assert APP_PIN.encode() not in bytes(row["verification"]) and APP_PIN not in str(dict(row))
    assert len(proofs) == 1 and proof["stepUpToken"].encode() not in bytes(proofs[0]["token_hash"])


async def test_setting_the_application_pin(api, jwe_key):
    w = await World().setup(api, jwe_key)
    url = f"{api.http}/customers/me/app-pin"
    async with w.app.put(url, json={"pin": "1397"}, headers=w.me) as r:
        assert (r.status, (await r.json())["code"]) == (400, "ENCRYPTION_REQUIRED")
    status, body = await w.jwe.request(w.app, "PUT", url, {"pin": "1111"}, headers=w.me)
    assert (status, body["code"]) == (400, "INVALID_PIN")
    status, body = await w.jwe.request(w.app, "PUT", url, {"pin": "1397"}, headers=w.me)
    assert (status, body["code"]) == (403, "INVALID_APP_PIN")  # changing needs the current PIN
    status, _ = await w.jwe.request(w.app, "PUT", url, {"pin": "1397", "currentPin": APP_PIN},
                                    headers=w.me)
    assert status == 204
    assert (await w.step_up(APP_PIN))[0] == 403
    assert (await w.step_up("1397"))[0] == 201


async def test_step_up_without_an_application_pin(api, jwe_key):
    w = await World().setup(api, jwe_key)
    async with api.services.pool.acquire() as conn:
        await conn.execute("DELETE FROM customer_app_pins")
    status, body = await w.step_up()
    assert (status, body["code"]) == (409, "APP_PIN_NOT_SET")


async def test_a_proof_belongs_to_its_installation(api, jwe_key):
    """A proof from one paired device does not open card data on another device's session."""
    w = await World().setup(api, jwe_key)
    card = await w.virtual()
    status, proof = await w.step_up()
    other = await pair_device(api, w.partner, w.cid, device_id="tablet")
    headers = {**bearer(other["sessionToken"]), "Step-Up-Token": proof["stepUpToken"]}
    status, body = await w.jwe.request(w.app, "GET", f"{api.http}{ME}/{card['cardId']}",
                                       headers=headers)
    assert (status, body["code"]) == (403, "STEP_UP_REQUIRED")
