"""Device pairing and customer sessions: how a mobile app becomes the user.

The partner asks for a one-time pairing code; the app pairs with it and its device id and gets
an installation (id and secret) and a session token. One installation is active per device and
user. Sessions are short (10 minutes by default); the app renews with its installation secret.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Annotated

from msgspec import Meta

from antaca_api.customers import get_customer
from antaca_api.errors import InvalidCredentials, InvalidPairingCode, PartnerSuspended
from antaca_api.routing import Channel, Context, route
from antaca_api.schema import Body
from antaca_api.tokens import bearer_token, hash_secret, new_secret

# No 0/O or 1/I: codes are typed by people.
PAIRING_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
PAIRING_LENGTH = 10  # 50 bits, single use, short-lived

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
    code = "".join(secrets.choice(PAIRING_ALPHABET) for _ in range(PAIRING_LENGTH))
    expires_at = ctx.services.clock() + timedelta(seconds=ctx.services.settings.pairing_code_ttl)
    async with ctx.transaction() as conn:
        await get_customer(conn, ctx.partner_id, customer_id)
        await conn.execute(
            "INSERT INTO pairing_codes (code_hash, customer_id, expires_at) VALUES ($1, $2, $3)",
            hash_secret(code), customer_id, expires_at,
        )
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


async def _start_session(conn, ctx: Context, installation_id: uuid.UUID, customer_id: uuid.UUID) -> tuple[str, datetime]:
    token, token_hash = new_secret()
    expires_at = ctx.services.clock() + timedelta(seconds=ctx.services.settings.session_ttl)
    await conn.execute(
        "INSERT INTO customer_sessions (token_hash, installation_id, customer_id, expires_at) VALUES ($1, $2, $3, $4)",
        token_hash, installation_id, customer_id, expires_at,
    )
    return token, expires_at


@route("POST", "/customers/devices/pair", channel=Channel.CUSTOMER, authenticated=False, body=Pair,
       response=Pairing, status=201, summary="Pair a device with a one-time code; starts a session",
       tags=("devices",))
async def pair(ctx: Context, body: Pair) -> Pairing:
    now = ctx.services.clock()
    async with ctx.transaction() as conn:
        row = await conn.fetchrow(
            """UPDATE pairing_codes SET used_at = $2
               WHERE code_hash = $1 AND used_at IS NULL AND expires_at > $2
               RETURNING customer_id""",
            hash_secret(body.pairing_code.strip().upper()), now,
        )
        if row is None:
            raise InvalidPairingCode()
        customer_id = row["customer_id"]
        status = await conn.fetchval(
            "SELECT p.status FROM customers c JOIN partners p ON p.id = c.partner_id WHERE c.id = $1", customer_id
        )
        if status != "ACTIVE":
            raise PartnerSuspended()
        # Pairing again on the same device replaces the previous installation and its sessions.
        await conn.execute(
            """WITH old AS (
                   UPDATE installations SET active = false, deactivated_at = $3
                   WHERE customer_id = $1 AND device_id = $2 AND active RETURNING id)
               UPDATE customer_sessions SET revoked_at = $3
               WHERE installation_id IN (SELECT id FROM old) AND revoked_at IS NULL""",
            customer_id, body.device_id, now,
        )
        installation_id = uuid.uuid4()
        secret, secret_hash = new_secret()
        await conn.execute(
            "INSERT INTO installations (id, customer_id, device_id, secret_hash) VALUES ($1, $2, $3, $4)",
            installation_id, customer_id, body.device_id, secret_hash,
        )
        token, expires_at = await _start_session(conn, ctx, installation_id, customer_id)
    return Pairing(customer_id=customer_id, installation_id=installation_id, installation_secret=secret,
                   session_token=token, expires_at=expires_at)


class Authenticate(Body):
    installation_id: uuid.UUID
    installation_secret: Secret


class Session(Body):
    session_token: str
    expires_at: datetime


@route("POST", "/customers/sessions", channel=Channel.CUSTOMER, authenticated=False, body=Authenticate,
       response=Session, status=201, summary="Start a new session with the installation's credentials",
       tags=("devices",))
async def authenticate(ctx: Context, body: Authenticate) -> Session:
    async with ctx.transaction() as conn:
        row = await conn.fetchrow(
            """SELECT i.customer_id, i.secret_hash, p.status FROM installations i
               JOIN customers c ON c.id = i.customer_id JOIN partners p ON p.id = c.partner_id
               WHERE i.id = $1 AND i.active""",
            body.installation_id,
        )
        # Compare even when the installation is unknown, so timing says nothing.
        expected = row["secret_hash"] if row else hash_secret(secrets.token_hex(16))
        if not hmac.compare_digest(hash_secret(body.installation_secret), expected) or row is None:
            raise InvalidCredentials()
        if row["status"] != "ACTIVE":
            raise PartnerSuspended()
        token, expires_at = await _start_session(conn, ctx, body.installation_id, row["customer_id"])
    return Session(session_token=token, expires_at=expires_at)


@route("DELETE", "/customers/sessions/current", channel=Channel.CUSTOMER, summary="Sign out (revoke this session)",
       tags=("devices",))
async def sign_out(ctx: Context, _: None) -> None:
    token = bearer_token(ctx.request.headers.get("Authorization"))
    await ctx.pool.execute("UPDATE customer_sessions SET revoked_at = now() WHERE token_hash = $1",
                           hash_secret(token))
