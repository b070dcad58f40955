"""A network's zone PIN key (ISO 9564 PIN blocks on the network channel): set it, read its metadata.

The key arrives only inside a JWE, is checked against the check value the administrator read off
the key ceremony, and is stored sealed (`antaca_auth.zonekeys`); no answer, error or audit row
ever holds it.
"""

from __future__ import annotations

import hmac
import uuid
from datetime import datetime
from typing import Annotated

from msgspec import Meta

from antaca_api.domain_errors import CheckValueMismatch, InvalidZoneKey, NotFound
from antaca_api.errors import EncryptionRequired
from antaca_api.routing import ADMIN_ONLY, Channel, Context, Encryption, route
from antaca_api.schema import Body
from antaca_auth.pinblock import PinBlockFormat, ZoneKey, ZoneKeyError
from antaca_auth.zonekeys import UnknownNetwork, ZoneKeyInfo, store_zone_key, zone_key_info

PATH = "/admin/networks/{networkId}/pin-key"


class NewPinKey(Body):
    format: PinBlockFormat
    key: Annotated[str, Meta(pattern=r"^[0-9A-Fa-f]{32}$", description="16 bytes in hex")]
    check_value: Annotated[str, Meta(pattern=r"^[0-9A-Fa-f]{6}$",
                                     description="first 3 bytes of a zero block enciphered")]


class NetworkPinKey(Body):
    network_id: uuid.UUID
    format: PinBlockFormat
    check_value: str
    updated_at: datetime


def pin_key_view(info: ZoneKeyInfo) -> NetworkPinKey:
    return NetworkPinKey(network_id=info.network_id, format=info.format,
                         check_value=info.check_value, updated_at=info.updated_at)


@route("PUT", PATH, channel=Channel.ADMIN, roles=ADMIN_ONLY, body=NewPinKey,
       response=NetworkPinKey, encryption=Encryption.REQUIRED,
       summary="Set or replace a network's zone PIN key (only as an Encrypted-Request JWE)",
       tags=("networks",))
async def set_pin_key(ctx: Context, body: NewPinKey) -> NetworkPinKey:
    # The body carries a key: an encrypted response is not enough, the request must be a JWE.
    if ctx.request.headers.get("Encrypted-Request", "").strip().lower() != "true":
        raise EncryptionRequired("this endpoint carries key material: send an encrypted request")
    network_id = ctx.path_id("networkId")
    try:
        zone_key = ZoneKey(body.format, bytes.fromhex(body.key))
    except ZoneKeyError as error:
        raise InvalidZoneKey(str(error)) from None
    if not hmac.compare_digest(zone_key.check_value(), body.check_value.upper()):
        raise CheckValueMismatch()
    ctx.audit_target = f"network:{network_id}"
    async with ctx.transaction() as conn:
        try:
            info = await store_zone_key(conn, ctx.services.card_keys, network_id, zone_key)
        except UnknownNetwork:
            raise NotFound("no such network") from None
    ctx.services.engine.forget_zone_keys()
    return pin_key_view(info)


@route("GET", PATH, channel=Channel.ADMIN, roles=ADMIN_ONLY, response=NetworkPinKey,
       summary="The format and check value of a network's zone PIN key (never the key)",
       tags=("networks",))
async def get_pin_key(ctx: Context, _: None) -> NetworkPinKey:
    async with ctx.pool.acquire() as conn:
        info = await zone_key_info(conn, ctx.path_id("networkId"))
    if info is None:
        raise NotFound("no PIN key is set for this network")
    return pin_key_view(info)
