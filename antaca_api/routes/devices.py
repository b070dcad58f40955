"""Device pairing and customer sessions: how a mobile app becomes the user.

The partner asks for a one-time pairing code; the app pairs with it and its device id and gets
an installation (id and secret) and a session token. One installation is active per device and
user. Sessions are short (10 minutes by default); the app renews with its installation secret.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated

from msgspec import Meta

from antaca_api import devices as repo
from antaca_api.domain_errors import InvalidCredentials, InvalidPairingCode, PartnerSuspended
from antaca_api.routing import Channel, Context, route
from antaca_api.schema import Body
from antaca_api.tokens import bearer_token

DeviceId = Annotated[str, Meta(min_length=1, max_length=128)]
Secret = Annotated[str, Meta(min_length=1, max_length=256)]


class PairingCode(Body):
    pairing_code: str
    expires_at: datetime


@route("POST", "/secure/customers/{customerId}/devices/pairing-codes", channel=Channel.PARTNER,
       response=PairingCode, status=201, summary="A one-time code for pairing a customer's device",
       tags=("devices",))
async def create_pairing_code(ctx: Context, _: None) -> PairingCode:
    customer_id = ctx.path_id("customerId")
    expires_at = ctx.services.clock() + timedelta(seconds=ctx.services.settings.pairing_code_ttl)
    async with ctx.transaction() as conn:
        code = await repo.create_pairing_code(conn, ctx.partner_id, customer_id, expires_at)
    return PairingCode(pairing_code=code, expires_at=expires_at)


class Pair(Body):
    pairing_code: Annotated[str, Meta(min_length=1, max_length=32)]
    device_id: DeviceId


class Pairing(Body):
    customer_id: uuid.UUID
    installation_id: uuid.UUID
    installation_secret: str
    session_token: str
    expires_at: datetime


@route("POST", "/customers/devices/pair", channel=Channel.CUSTOMER, authenticated=False, body=Pair,
       response=Pairing, status=201, summary="Pair a device with a one-time code; starts a session",
       tags=("devices",), errors=(InvalidPairingCode, PartnerSuspended))
async def pair(ctx: Context, body: Pair) -> Pairing:
    async with ctx.transaction() as conn:
        pairing = await repo.pair(conn, body.pairing_code, body.device_id, clock=ctx.services.clock,
                                  session_ttl=ctx.services.settings.session_ttl)
    return Pairing(customer_id=pairing.customer_id, installation_id=pairing.installation_id,
                   installation_secret=pairing.installation_secret,
                   session_token=pairing.session_token, expires_at=pairing.expires_at)


class Authenticate(Body):
    installation_id: uuid.UUID
    installation_secret: Secret


class Session(Body):
    session_token: str
    expires_at: datetime


@route("POST", "/customers/sessions", channel=Channel.CUSTOMER, authenticated=False, body=Authenticate,
       response=Session, status=201, summary="Start a new session with the installation's credentials",
       tags=("devices",), errors=(InvalidCredentials, PartnerSuspended))
async def authenticate(ctx: Context, body: Authenticate) -> Session:
    async with ctx.transaction() as conn:
        token, expires_at = await repo.authenticate(
            conn, body.installation_id, body.installation_secret, clock=ctx.services.clock,
            session_ttl=ctx.services.settings.session_ttl)
    return Session(session_token=token, expires_at=expires_at)


@route("DELETE", "/customers/sessions/current", channel=Channel.CUSTOMER, summary="Sign out (revoke this session)",
       tags=("devices",))
async def sign_out(ctx: Context, _: None) -> None:
    token = bearer_token(ctx.request.headers.get("Authorization"))
    await repo.revoke_session(ctx.pool, token)


class Device(Body):
    installation_id: uuid.UUID
    device_id: str
    active: bool  # False: unpaired (by the partner, or replaced by a new pairing on the device)
    paired_at: datetime
    unpaired_at: datetime | None


class Devices(Body):
    items: list[Device]


def device_view(row) -> Device:
    return Device(installation_id=row["id"], device_id=row["device_id"], active=row["active"],
                  paired_at=row["created_at"], unpaired_at=row["deactivated_at"])


@route("GET", "/secure/customers/{customerId}/devices", channel=Channel.PARTNER, response=Devices,
       summary="A customer's paired devices, newest first (unpaired ones included)",
       tags=("devices",))
async def list_devices(ctx: Context, _: None) -> Devices:
    async with ctx.pool.acquire() as conn:
        rows = await repo.customer_devices(conn, ctx.partner_id, ctx.path_id("customerId"))
    return Devices(items=[device_view(r) for r in rows])


@route("DELETE", "/secure/customers/{customerId}/devices/{installationId}",
       channel=Channel.PARTNER, response=Device,
       summary="Unpair a customer's device: its sessions end at once", tags=("devices",))
async def unpair_device(ctx: Context, _: None) -> Device:
    async with ctx.transaction() as conn:
        row = await repo.unpair(conn, ctx.partner_id, ctx.path_id("customerId"),
                                ctx.path_id("installationId"), ctx.services.clock())
    return device_view(row)
