"""Card data key rotation: a new active PAN key, then the background job re-encrypts every PAN
under it in bounded batches, and the card data reads the same through the API."""

from __future__ import annotations

import pytest

from antaca_api import cards
from tests.integration.test_cards import World


@pytest.fixture(scope="module")
def jwe_key():
    from joserfc.jwk import RSAKey

    return RSAKey.generate_key(2048)


async def test_pans_are_re_encrypted_under_the_newest_key_in_bounded_batches(api, jwe_key):
    w = await World().setup(api, jwe_key)
    issued = [await w.virtual() for _ in range(3)]
    services = api.services
    old = services.card_keys
    assert await cards.reencrypt_all(services.pool, old) == 0  # nothing to do before a rotation
    services.card_keys = old.with_new_pan_key()
    assert await cards.cards_under_old_keys(services.pool, services.card_keys) == 3
    assert await cards.reencrypt_batch(services.pool, services.card_keys, batch_size=2) == 2
    assert await cards.cards_under_old_keys(services.pool, services.card_keys) == 1
    assert await cards.reencrypt_all(services.pool, services.card_keys) == 1
    async with services.pool.acquire() as conn:
        rows = await conn.fetch("SELECT id, pan_key_id, pan_ciphertext FROM cards")
    assert {r["pan_key_id"] for r in rows} == {"k2"}
    pans = {services.card_keys.decrypt_pan(r["id"], "k2", r["pan_ciphertext"]) for r in rows}
    assert pans == {card["pan"] for card in issued}
    for card in issued:  # the holder reads the same card data, now under the new key
        status, data = await w.app_jwe("GET", f"/customers/me/cards/{card['cardId']}")
        assert status == 200 and data["pan"] == card["pan"]
    with pytest.raises(Exception, match="batch size out of range"):
        await cards.reencrypt_batch(services.pool, services.card_keys, batch_size=10_000)
