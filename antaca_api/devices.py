"""Device pairing, installations and customer sessions (repository).

A one-time pairing code becomes an installation (id and secret) and a session; one installation
is active per device and user, and the app renews its session with the installation's secret.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from antaca_api.customers import get_customer
from antaca_api.domain_errors import (
    InvalidCredentials,
    InvalidPairingCode,
    NotFound,
    PartnerSuspended,
)
from antaca_api.tokens import hash_secret, new_secret

# No 0/O or 1/I: codes are typed by people.
PAIRING_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
PAIRING_LENGTH = 10  # 50 bits, single use, short-lived

INSERT_PAIRING_CODE = (
    "INSERT INTO pairing_codes (code_hash, customer_id, expires_at) VALUES ($1, $2, $3)"
)
USE_PAIRING_CODE = """
    UPDATE pairing_codes SET used_at = $2
    WHERE code_hash = $1 AND used_at IS NULL AND expires_at > $2
    RETURNING customer_id"""
CUSTOMER_PARTNER_STATUS = """
    SELECT p.status FROM customers c JOIN partners p ON p.id = c.partner_id WHERE c.id = $1"""
# Pairing again on the same device replaces the previous installation and its sessions.
RETIRE_INSTALLATIONS = """
    WITH old AS (
        UPDATE installations SET active = false, deactivated_at = $3
        WHERE customer_id = $1 AND device_id = $2 AND active RETURNING id)
    UPDATE customer_sessions SET revoked_at = $3
    WHERE installation_id IN (SELECT id FROM old) AND revoked_at IS NULL"""
INSERT_INSTALLATION = """
    INSERT INTO installations (id, customer_id, device_id, secret_hash) VALUES ($1, $2, $3, $4)"""
INSERT_SESSION = """
    INSERT INTO customer_sessions (token_hash, installation_id, customer_id, expires_at)
    VALUES ($1, $2, $3, $4)"""
INSTALLATION_CREDENTIALS = """
    SELECT i.customer_id, i.secret_hash, p.status FROM installations i
    JOIN customers c ON c.id = i.customer_id JOIN partners p ON p.id = c.partner_id
    WHERE i.id = $1 AND i.active"""
REVOKE_SESSION = "UPDATE customer_sessions SET revoked_at = now() WHERE token_hash = $1"


@dataclass(frozen=True)
class Pairing:
    """A paired device: its installation's credentials and a first session."""

    customer_id: uuid.UUID
    installation_id: uuid.UUID
    installation_secret: str
    session_token: str
    expires_at: datetime


async def create_pairing_code(
    conn: asyncpg.Connection, partner_id: uuid.UUID, customer_id: uuid.UUID, expires_at: datetime
) -> str:
    """A one-time pairing code for the partner's customer, valid until `expires_at`."""
    code = "".join(secrets.choice(PAIRING_ALPHABET) for _ in range(PAIRING_LENGTH))
    await get_customer(conn, partner_id, customer_id)
    await conn.execute(INSERT_PAIRING_CODE, hash_secret(code), customer_id, expires_at)
    return code


async def start_session(
    conn: asyncpg.Connection,
    installation_id: uuid.UUID,
    customer_id: uuid.UUID,
    expires_at: datetime,
) -> str:
    """A new session token for an installation, valid until `expires_at`."""
    token, token_hash = new_secret()
    await conn.execute(INSERT_SESSION, token_hash, installation_id, customer_id, expires_at)
    return token


async def pair(
    conn: asyncpg.Connection,
    pairing_code: str,
    device_id: str,
    *,
    clock: Callable[[], datetime],
    session_ttl: int,
) -> Pairing:
    """Use a pairing code, in the caller's transaction: a new installation and its session."""
    now = clock()
    row = await conn.fetchrow(USE_PAIRING_CODE, hash_secret(pairing_code.strip().upper()), now)
    if row is None:
        raise InvalidPairingCode()
    customer_id = row["customer_id"]
    if await conn.fetchval(CUSTOMER_PARTNER_STATUS, customer_id) != "ACTIVE":
        raise PartnerSuspended()
    await conn.execute(RETIRE_INSTALLATIONS, customer_id, device_id, now)
    installation_id = uuid.uuid4()
    secret, secret_hash = new_secret()
    await conn.execute(INSERT_INSTALLATION, installation_id, customer_id, device_id, secret_hash)
    expires_at = clock() + timedelta(seconds=session_ttl)
    token = await start_session(conn, installation_id, customer_id, expires_at)
    return Pairing(
        customer_id=customer_id,
        installation_id=installation_id,
        installation_secret=secret,
        session_token=token,
        expires_at=expires_at,
    )


async def authenticate(
    conn: asyncpg.Connection,
    installation_id: uuid.UUID,
    installation_secret: str,
    *,
    clock: Callable[[], datetime],
    session_ttl: int,
) -> tuple[str, datetime]:
    """A new session (token, expiry) for an active installation's credentials."""
    row = await conn.fetchrow(INSTALLATION_CREDENTIALS, installation_id)
    # Compare even when the installation is unknown, so timing says nothing.
    expected = row["secret_hash"] if row else hash_secret(secrets.token_hex(16))
    if not hmac.compare_digest(hash_secret(installation_secret), expected) or row is None:
        raise InvalidCredentials()
    if row["status"] != "ACTIVE":
        raise PartnerSuspended()
    expires_at = clock() + timedelta(seconds=session_ttl)
    return await start_session(conn, installation_id, row["customer_id"], expires_at), expires_at


async def revoke_session(conn: asyncpg.Connection | asyncpg.Pool, token: str) -> None:
    """End the session with this token (an unknown token changes nothing)."""
    await conn.execute(REVOKE_SESSION, hash_secret(token))


# --- the partner's view of a customer's devices ----------------------------------------------

DEVICES_PAGE_SIZE_MAX = 100  # installations listed at once (one per device; retired ones too)
CUSTOMER_INSTALLATIONS = """
    SELECT id, device_id, active, created_at, deactivated_at FROM installations
    WHERE customer_id = $1 ORDER BY created_at DESC, id LIMIT $2"""
UNPAIR = """
    WITH gone AS (
        UPDATE installations SET active = false, deactivated_at = $3
        WHERE id = $1 AND customer_id = $2 AND active RETURNING id)
    UPDATE customer_sessions SET revoked_at = $3
    WHERE installation_id IN (SELECT id FROM gone) AND revoked_at IS NULL"""
INSTALLATION = """
    SELECT id, device_id, active, created_at, deactivated_at FROM installations
    WHERE id = $1 AND customer_id = $2"""


async def customer_devices(conn: asyncpg.Connection, partner_id: uuid.UUID,
                           customer_id: uuid.UUID) -> list[asyncpg.Record]:
    """The partner's customer's installations, newest first (unpaired ones included)."""
    await get_customer(conn, partner_id, customer_id)
    return await conn.fetch(CUSTOMER_INSTALLATIONS, customer_id, DEVICES_PAGE_SIZE_MAX)


async def unpair(conn: asyncpg.Connection, partner_id: uuid.UUID, customer_id: uuid.UUID,
                 installation_id: uuid.UUID, now: datetime) -> asyncpg.Record:
    """Unpair one of the customer's devices, in the caller's transaction: the installation is
    retired and its sessions revoked at once (unpairing twice changes nothing); its row."""
    await get_customer(conn, partner_id, customer_id, lock=True)
    if await conn.fetchrow(INSTALLATION, installation_id, customer_id) is None:
        raise NotFound("no such device")
    await conn.execute(UNPAIR, installation_id, customer_id, now)
    return await conn.fetchrow(INSTALLATION, installation_id, customer_id)
