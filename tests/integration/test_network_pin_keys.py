"""A network's zone PIN key through the real API: set over JWE only, stored sealed, engine-read."""

from __future__ import annotations

import os
import uuid

import asyncpg
import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from antaca_api.routing import Role
from antaca_auth.cardkeys import CardKeyError, CardKeys
from antaca_auth.pinblock import PinBlockFormat, decipher_pin
from antaca_auth.zonekeys import load_zone_keys
from tests.api_harness import JweClient, bearer

AES_KEY = "2B7E151628AED2A6ABF7158809CF4F3C"
TDES_KEY = "0123456789ABCDEFFEDCBA9876543210"
TDES_CHECK_VALUE = "08D7B4"  # published for this test key (psec's documentation gives 08D7)


@pytest.fixture(scope="module")
def jwe_key():
    from joserfc.jwk import RSAKey

    return RSAKey.generate_key(2048)


def ecb(key_hex: str, data: bytes) -> bytes:
    """Enciphered with `cryptography` directly, not through antaca_auth.pinblock."""
    key = bytes.fromhex(key_hex)
    algorithm = algorithms.AES(key) if len(data) == 16 else TripleDES(key + key[:8])
    encryptor = Cipher(algorithm, modes.ECB()).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def aes_check_value(key_hex: str) -> str:
    return ecb(key_hex, bytes(16))[:3].hex().upper()


class Admin:
    """An administrator with a JWE client, and helpers for the PIN key endpoints."""

    async def setup(self, api, jwe_key, role: Role = Role.ADMIN):
        self.api = api
        self.token = await api.admin_token(role)
        async with api.client().get(f"{api.http}/public-key") as r:
            self.jwe = JweClient((await r.json())["pem"], jwe_key)
        return self

    async def network(self) -> str:
        async with self.api.client().post(f"{self.api.http}/admin/networks",
                                          json={"name": f"net-{uuid.uuid4().hex[:6]}"},
                                          headers=bearer(self.token)) as r:
            assert r.status == 201, await r.text()
            return (await r.json())["networkId"]

    def url(self, network_id: str) -> str:
        return f"{self.api.http}/admin/networks/{network_id}/pin-key"

    async def put(self, network_id: str, body: dict):
        return await self.jwe.request(self.api.client(), "PUT", self.url(network_id), body,
                                      headers=bearer(self.token))

    async def get(self, network_id: str):
        async with self.api.client().get(self.url(network_id), headers=bearer(self.token)) as r:
            return r.status, await r.json()


async def stored_rows(api) -> list:
    async with api.services.pool.acquire() as conn:
        return await conn.fetch("SELECT * FROM network_pin_keys")


async def test_set_read_back_and_replace(api, jwe_key):
    admin = await Admin().setup(api, jwe_key)
    network_id = await admin.network()
    check_value = aes_check_value(AES_KEY)
    status, answer = await admin.put(network_id, {"format": "ISO_4", "key": AES_KEY.lower(),
                                                  "checkValue": check_value.lower()})
    assert status == 200, answer
    assert set(answer) == {"networkId", "format", "checkValue", "updatedAt"}
    assert (answer["networkId"], answer["format"], answer["checkValue"]) == (
        network_id, "ISO_4", check_value)
    status, metadata = await admin.get(network_id)
    assert status == 200 and metadata == answer

    status, replaced = await admin.put(network_id, {"format": "ISO_0", "key": TDES_KEY,
                                                    "checkValue": TDES_CHECK_VALUE})
    assert status == 200, replaced
    assert (replaced["format"], replaced["checkValue"]) == ("ISO_0", TDES_CHECK_VALUE)
    assert replaced["updatedAt"] > answer["updatedAt"]
    assert (await admin.get(network_id)) == (200, replaced)
    assert len(await stored_rows(api)) == 1


async def test_the_key_is_stored_sealed_and_never_audited(api, jwe_key):
    admin = await Admin().setup(api, jwe_key)
    network_id = await admin.network()
    status, _ = await admin.put(network_id, {"format": "ISO_4", "key": AES_KEY,
                                             "checkValue": aes_check_value(AES_KEY)})
    assert status == 200
    [row] = await stored_rows(api)
    key = bytes.fromhex(AES_KEY)
    assert key not in row["key_ciphertext"] and AES_KEY not in str(row).upper()
    assert len(row["key_ciphertext"]) == 12 + 16 + 16  # nonce, sealed key, tag
    card_keys = api.services.card_keys
    assert card_keys.open_zone_key(uuid.UUID(network_id), row["key_ciphertext"]) == key
    with pytest.raises(CardKeyError):  # bound to its network
        card_keys.open_zone_key(uuid.uuid4(), row["key_ciphertext"])
    with pytest.raises(CardKeyError):  # and to this keyring
        CardKeys.generate().open_zone_key(uuid.UUID(network_id), row["key_ciphertext"])
    async with api.services.pool.acquire() as conn:
        audit = await conn.fetch("SELECT * FROM audit_log WHERE action = $1",
                                 "PUT /admin/networks/{networkId}/pin-key")
    assert [r["target"] for r in audit] == [f"network:{network_id}"]
    assert AES_KEY not in str(audit).upper() and AES_KEY.lower() not in str(audit)


async def test_wrong_check_value_weak_or_malformed_key_store_nothing(api, jwe_key):
    admin = await Admin().setup(api, jwe_key)
    network_id = await admin.network()
    refusals = [
        ({"format": "ISO_4", "key": AES_KEY, "checkValue": "000000"}, "CHECK_VALUE_MISMATCH"),
        # The TDES check value of an AES key: the format is part of what the check value proves.
        ({"format": "ISO_4", "key": TDES_KEY, "checkValue": TDES_CHECK_VALUE},
         "CHECK_VALUE_MISMATCH"),
        ({"format": "ISO_0", "key": "0123456789ABCDEF0123456789ABCDEF", "checkValue": "000000"},
         "INVALID_ZONE_KEY"),  # equal halves: single DES
        ({"format": "ISO_4", "key": AES_KEY[:-1], "checkValue": "000000"}, "VALIDATION_ERROR"),
        ({"format": "ISO_4", "key": AES_KEY[:-1] + "G", "checkValue": "000000"},
         "VALIDATION_ERROR"),
        ({"format": "ISO_4", "key": AES_KEY + "00", "checkValue": "000000"}, "VALIDATION_ERROR"),
        ({"format": "ISO_3", "key": AES_KEY, "checkValue": "000000"}, "VALIDATION_ERROR"),
        ({"format": "ISO_4", "key": AES_KEY, "checkValue": "00000"}, "VALIDATION_ERROR"),
        ({"format": "ISO_4", "key": AES_KEY}, "VALIDATION_ERROR"),
    ]
    for body, code in refusals:
        status, error = await admin.put(network_id, body)
        assert (status, error["code"]) == (400, code), (body, error)
        for key in (AES_KEY, TDES_KEY, "0123456789ABCDEF"):
            assert key not in error["message"].upper()
    assert await stored_rows(api) == []
    assert (await admin.get(network_id))[0] == 404
    async with api.services.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action LIKE 'PUT %'") == 0


async def test_unknown_network_is_404(api, jwe_key):
    admin = await Admin().setup(api, jwe_key)
    body = {"format": "ISO_4", "key": AES_KEY, "checkValue": aes_check_value(AES_KEY)}
    for network_id in (str(uuid.uuid4()), "not-a-uuid"):
        status, error = await admin.put(network_id, body)
        assert (status, error["code"]) == (404, "NOT_FOUND")
        status, error = await admin.get(network_id)
        assert (status, error["code"]) == (404, "NOT_FOUND")
    assert await stored_rows(api) == []


@pytest.mark.parametrize("role", [Role.MANAGER, Role.EMPLOYEE])
async def test_other_roles_are_forbidden(api, jwe_key, role):
    admin = await Admin().setup(api, jwe_key)
    network_id = await admin.network()
    body = {"format": "ISO_4", "key": AES_KEY, "checkValue": aes_check_value(AES_KEY)}
    assert (await admin.put(network_id, body))[0] == 200
    other = await Admin().setup(api, jwe_key, role)
    status, error = await other.put(network_id, {**body, "key": TDES_KEY})
    assert (status, error["code"]) == (403, "FORBIDDEN")
    status, error = await other.get(network_id)
    assert (status, error["code"]) == (403, "FORBIDDEN")
    assert (await admin.get(network_id))[1]["checkValue"] == aes_check_value(AES_KEY)


async def test_plain_requests_are_refused(api, jwe_key):
    """No JWE at all, or a plain body asking only for an encrypted answer: both refused."""
    admin = await Admin().setup(api, jwe_key)
    network_id = await admin.network()
    body = {"format": "ISO_4", "key": AES_KEY, "checkValue": aes_check_value(AES_KEY)}
    headers = [bearer(admin.token),
               {**bearer(admin.token), "Encrypt-Response": "true",
                "Public-Key": admin.jwe.public_header}]
    for header in headers:
        async with api.client().put(admin.url(network_id), json=body, headers=header) as r:
            error = await r.json()
            assert (r.status, error["code"]) == (400, "ENCRYPTION_REQUIRED")
            assert AES_KEY not in str(error)
    assert await stored_rows(api) == []


async def test_load_zone_keys_gives_the_engine_every_key_in_one_query(api, jwe_key):
    admin = await Admin().setup(api, jwe_key)
    aes_network, tdes_network, keyless = [await admin.network() for _ in range(3)]
    assert (await admin.put(aes_network, {"format": "ISO_4", "key": AES_KEY,
                                          "checkValue": aes_check_value(AES_KEY)}))[0] == 200
    assert (await admin.put(tdes_network, {"format": "ISO_0", "key": TDES_KEY,
                                           "checkValue": TDES_CHECK_VALUE}))[0] == 200
    ids = [uuid.UUID(n) for n in (aes_network, tdes_network, keyless)]
    queries = []

    def log(record) -> None:
        queries.append(record.query)

    async with api.services.pool.acquire() as conn:
        await load_zone_keys(conn, api.services.card_keys, ids)  # asyncpg's first use introspects types
        conn.add_query_logger(log)
        keys = await load_zone_keys(conn, api.services.card_keys, ids)
        conn.remove_query_logger(log)
        assert await load_zone_keys(conn, api.services.card_keys, []) == {}
    assert len(queries) == 1
    assert set(keys) == set(ids[:2])
    assert keys[ids[0]].format is PinBlockFormat.ISO_4
    assert keys[ids[0]].key == bytes.fromhex(AES_KEY)
    assert keys[ids[1]].format is PinBlockFormat.ISO_0
    assert keys[ids[1]].key == bytes.fromhex(TDES_KEY)
    # A format 0 block made by hand: PIN field 041234FFFFFFFFFF XOR PAN field 0000492912345678.
    clear = bytes(a ^ b for a, b in zip(bytes.fromhex("041234FFFFFFFFFF"),
                                        bytes.fromhex("0000492912345678"), strict=True))
    block = ecb(TDES_KEY, clear)
    assert decipher_pin(keys[ids[1]], block, "4929123456781") == "1234"


async def test_a_row_altered_by_hand_is_refused(api, jwe_key):
    """A format switched in the table is caught by the check value; a moved blob does not open."""
    admin = await Admin().setup(api, jwe_key)
    first, second = await admin.network(), await admin.network()
    for network_id in (first, second):
        assert (await admin.put(network_id, {"format": "ISO_4", "key": AES_KEY,
                                             "checkValue": aes_check_value(AES_KEY)}))[0] == 200
    card_keys = api.services.card_keys
    async with api.services.pool.acquire() as conn:
        await conn.execute("UPDATE network_pin_keys SET format = 'ISO_0' WHERE network_id = $1",
                           uuid.UUID(first))
        with pytest.raises(CardKeyError):
            await load_zone_keys(conn, card_keys, [uuid.UUID(first)])
        await conn.execute(
            """UPDATE network_pin_keys SET format = 'ISO_4', key_ciphertext =
                   (SELECT key_ciphertext FROM network_pin_keys WHERE network_id = $2)
               WHERE network_id = $1""", uuid.UUID(second), uuid.UUID(first))
        with pytest.raises(CardKeyError):
            await load_zone_keys(conn, card_keys, [uuid.UUID(second)])
        with pytest.raises(asyncpg.CheckViolationError):  # a clear key does not fit the column
            await conn.execute(
                "UPDATE network_pin_keys SET key_ciphertext = $2 WHERE network_id = $1",
                uuid.UUID(first), os.urandom(16))
