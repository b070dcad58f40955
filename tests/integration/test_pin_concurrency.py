"""PINs under concurrency: wrong PINs sent at once are each counted, a right PIN resets the count,
and unlocking a card locked for PIN tries (lock reason 6) gives its holder three tries again."""

from __future__ import annotations

import asyncio
import os
import uuid

import psec
import pytest

from antaca_auth.authorization import MAX_PIN_FAILURES, AuthorizationRequest, TxType
from antaca_auth.engine import EngineSettings
from antaca_auth.pinblock import PinBlockFormat, ZoneKey
from antaca_auth.zonekeys import store_zone_key
from tests.integration.test_authorizations import Payments, jwe_key  # noqa: F401 (the module's fixture)
from tests.integration.test_engine_deadlines import World

PIN, WRONG_PIN = "4821", "1357"
CONCURRENT = 24


@pytest.mark.parametrize("batching", ["pipelined", "writers"])
async def test_a_right_pin_resets_the_count_and_concurrent_wrong_ones_lock_on_the_allowed_number(
        pool, ledger, batching):
    """Two wrong PINs, then the right one (the count is back to 0), then 24 wrong PINs at once over
    small concurrent batches: exactly two answer WRONG_PIN, one locks the card, the rest find it
    locked. Without the card locks a batch takes, batches read the same count and more guesses
    get a WRONG_PIN answer; without the reset the first wrong PIN locks the card."""
    w = await World().start(pool, ledger, EngineSettings(batching=batching, pipeline_depth=4, writers=4,
                                                         batch_size_max=3, batch_wait_seconds=0.001))
    try:
        card = w.cards[0]
        zone_key = ZoneKey(PinBlockFormat.ISO_4, os.urandom(16))
        async with pool.acquire() as conn:
            await store_zone_key(conn, w.keys, w.network, zone_key)
            salt, verification = w.keys.new_pin_record(card["card"], PIN)
            await conn.execute("UPDATE cards SET pin_salt = $2, pin_verification = $3 WHERE id = $1",
                               card["card"], salt, verification)

        def request(pin: str) -> AuthorizationRequest:
            block = psec.pinblock.encipher_pinblock_iso_4(zone_key.key, pin, card["pan"]).hex()
            return AuthorizationRequest(message_id=uuid.uuid4().hex, pan=card["pan"], expiry=card["expiry"],
                                        amount=100, currency="EUR", type=TxType.POS, pin_block=block)

        async def failures() -> int:
            return await pool.fetchval("SELECT pin_failures FROM cards WHERE id = $1", card["card"])

        for _ in range(MAX_PIN_FAILURES - 1):
            assert (await w.authorize(request(WRONG_PIN))).reason == "WRONG_PIN"
        assert await failures() == MAX_PIN_FAILURES - 1
        assert (await w.authorize(request(PIN))).decision == "APPROVED"
        assert await failures() == 0
        answers = await asyncio.gather(*(w.authorize(request(WRONG_PIN)) for _ in range(CONCURRENT)))
        reasons = [a.reason for a in answers]
        assert (reasons.count("WRONG_PIN"), reasons.count("PIN_TRIES_EXCEEDED"),
                reasons.count("CARD_LOCKED_PIN_TRIES_EXCEEDED")) == (
            MAX_PIN_FAILURES - 1, 1, CONCURRENT - MAX_PIN_FAILURES), reasons
        state = await pool.fetchrow("SELECT state, lock_reason, pin_failures FROM cards WHERE id = $1",
                                    card["card"])
        assert tuple(state) == ("LOCKED", 6, MAX_PIN_FAILURES)
        await w.verified()
    finally:
        await w.engine.stop()


async def test_unlocking_a_card_locked_for_pin_tries_gives_three_tries_again(api, jwe_key):  # noqa: F811
    p = await Payments().setup(api, jwe_key)
    card_path = f"/customers/me/cards/{p.card['cardId']}"
    status, _ = await p.w.app_jwe("POST", f"{card_path}/pin", {"pin": PIN})
    assert status == 204
    reasons = [(await p.authorize(type="POS", cvc2=None, pin=WRONG_PIN))["reason"] for _ in range(3)]
    assert reasons == ["WRONG_PIN", "WRONG_PIN", "PIN_TRIES_EXCEEDED"]
    status, card = await p.w.app_plain("POST", f"{card_path}/unlock")
    assert (status, card["status"]) == (200, "ACTIVE"), card
    # Unlocked, the holder has the full three tries again: the old count does not lock at once.
    reasons = [(await p.authorize(type="POS", cvc2=None, pin=WRONG_PIN))["reason"] for _ in range(2)]
    assert reasons == ["WRONG_PIN", "WRONG_PIN"]
    assert (await p.authorize(type="POS", cvc2=None, pin=PIN))["decision"] == "APPROVED"
    await p.assert_clean()


async def test_unlocking_a_card_locked_for_card_testing_gives_its_tries_again(api, jwe_key):  # noqa: F811
    """A card locked for suspected fraud after wrong CVC2s (reason 7), once unlocked, does not lock
    again at the next mistake: the unlock resets the card-testing count."""
    p = await Payments().setup(api, jwe_key)
    card_path = f"/customers/me/cards/{p.card['cardId']}"
    wrong = f"{(int(p.card['cvc2']) + 1) % 1000:03d}"
    tries = EngineSettings().card_testing_failures_max
    reasons = [(await p.authorize(cvc2=wrong))["reason"] for _ in range(tries)]
    assert reasons == ["WRONG_CVC2"] * (tries - 1) + ["SUSPECTED_CARD_TESTING"]
    assert (await p.authorize())["reason"] == "CARD_LOCKED_SUSPECTED_FRAUD"
    status, card = await p.w.app_plain("POST", f"{card_path}/unlock")
    assert (status, card["status"]) == (200, "ACTIVE"), card
    reasons = [(await p.authorize(cvc2=wrong))["reason"] for _ in range(tries - 1)]
    assert reasons == ["WRONG_CVC2"] * (tries - 1)
    assert (await p.authorize())["decision"] == "APPROVED"
    await p.assert_clean()
