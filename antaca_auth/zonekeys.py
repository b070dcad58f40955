"""The networks' zone PIN keys at rest: the one module that reads and writes `network_pin_keys`.

A key is stored sealed by the card keyring (`CardKeys.seal_zone_key`, bound to its network) with
its format and check value; only `load_zone_keys`, for the authorization engine, opens it.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from antaca_auth.cardkeys import CardKeyError, CardKeys
from antaca_auth.pinblock import PinBlockFormat, ZoneKey

STORE_ZONE_KEY = """
    INSERT INTO network_pin_keys (network_id, format, key_ciphertext, check_value)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (network_id) DO UPDATE
        SET format = EXCLUDED.format, key_ciphertext = EXCLUDED.key_ciphertext,
            check_value = EXCLUDED.check_value, updated_at = now()
    RETURNING network_id, format, check_value, updated_at"""

ZONE_KEY_INFO = """
    SELECT network_id, format, check_value, updated_at
    FROM network_pin_keys WHERE network_id = $1"""

LOAD_ZONE_KEYS = """
    SELECT network_id, format, key_ciphertext, check_value
    FROM network_pin_keys WHERE network_id = ANY($1::uuid[])"""


class UnknownNetwork(LookupError):
    """No network has this id."""


@dataclass(frozen=True)
class ZoneKeyInfo:
    """What may be shown of a stored zone PIN key: never the key."""

    network_id: uuid.UUID
    format: PinBlockFormat
    check_value: str
    updated_at: datetime


def info_of(row: asyncpg.Record) -> ZoneKeyInfo:
    return ZoneKeyInfo(row["network_id"], PinBlockFormat(row["format"]), row["check_value"],
                       row["updated_at"])


async def store_zone_key(conn: asyncpg.Connection, card_keys: CardKeys, network_id: uuid.UUID,
                         zone_key: ZoneKey) -> ZoneKeyInfo:
    """Set (or replace) a network's zone PIN key; UnknownNetwork when there is no such network."""
    sealed = card_keys.seal_zone_key(network_id, zone_key.key)
    try:
        row = await conn.fetchrow(STORE_ZONE_KEY, network_id, str(zone_key.format), sealed,
                                  zone_key.check_value())
    except asyncpg.ForeignKeyViolationError:
        raise UnknownNetwork("no such network") from None
    return info_of(row)


async def zone_key_info(conn: asyncpg.Connection, network_id: uuid.UUID) -> ZoneKeyInfo | None:
    row = await conn.fetchrow(ZONE_KEY_INFO, network_id)
    return None if row is None else info_of(row)


async def load_zone_keys(conn: asyncpg.Connection, card_keys: CardKeys,
                         network_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, ZoneKey]:
    """The zone PIN keys of these networks (those that have one), in one round trip."""
    if not network_ids:
        return {}
    keys = {}
    for row in await conn.fetch(LOAD_ZONE_KEYS, list(network_ids)):
        network_id = row["network_id"]
        zone_key = ZoneKey(PinBlockFormat(row["format"]),
                           card_keys.open_zone_key(network_id, row["key_ciphertext"]))
        # The format is not sealed with the key; a row whose format was changed by hand shows
        # here, since the same key's check value differs between TDES and AES.
        if not hmac.compare_digest(zone_key.check_value(), row["check_value"]):
            raise CardKeyError("a stored zone PIN key does not match its check value")
        keys[network_id] = zone_key
    return keys
