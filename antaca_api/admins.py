"""Administrator accounts and their sessions (repository)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import asyncpg

from antaca_api.errors import AdminExists, InvalidCredentials, ValidationFailed
from antaca_api.passwords import DUMMY_HASH, hash_password, verify_password
from antaca_api.routing import Role
from antaca_api.tokens import new_secret

MIN_PASSWORD = 12


async def create_admin_user(conn: asyncpg.Connection, email: str, password: str, role: Role) -> uuid.UUID:
    """Create an administrator; the password is stored as a scrypt hash only."""
    if len(password) < MIN_PASSWORD:
        raise ValidationFailed(f"the password must have at least {MIN_PASSWORD} characters")
    admin_id = uuid.uuid4()
    try:
        await conn.execute(
            "INSERT INTO admin_users (id, email, password_hash, role) VALUES ($1, lower($2), $3, $4)",
            admin_id, email, hash_password(password), str(role),
        )
    except asyncpg.UniqueViolationError:
        raise AdminExists() from None
    return admin_id


async def open_session(
    conn: asyncpg.Connection, email: str, password: str, now: datetime, ttl: int
) -> tuple[str, datetime, Role]:
    """Check the credentials and start a session: (token, expiry, role)."""
    row = await conn.fetchrow(
        "SELECT id, password_hash, role FROM admin_users WHERE email = lower($1) AND active", email
    )
    if not verify_password(password, row["password_hash"] if row else DUMMY_HASH) or row is None:
        raise InvalidCredentials()
    token, token_hash = new_secret()
    expires_at = now + timedelta(seconds=ttl)
    await conn.execute(
        "INSERT INTO admin_sessions (token_hash, admin_id, expires_at) VALUES ($1, $2, $3)",
        token_hash, row["id"], expires_at,
    )
    return token, expires_at, Role(row["role"])
