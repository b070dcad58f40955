"""Administrator accounts and their sessions (repository).

Password hashing is Argon2id (~50 ms of CPU, antaca_api/passwords.py; older scrypt hashes are
upgraded at the next successful sign-in): given a BackgroundCpu it runs there, off the event
loop, and no database connection is held while it waits or runs. Without one (the CLI, scripts)
it runs on the caller's thread.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from antaca_api import pages
from antaca_api.background_cpu import BackgroundCpu
from antaca_api.domain_errors import (
    AdminExists,
    InvalidCredentials,
    NotFound,
    OwnAdministratorAccount,
    ValidationFailed,
)
from antaca_api.partners import check_exists as check_partner_exists
from antaca_api.passwords import DUMMY_HASH, hash_password, needs_rehash, verify_password
from antaca_api.tokens import hash_secret, new_secret


class Role(enum.StrEnum):
    """An administrator's role: what the admin channel lets them do (antaca_api.routing)."""

    ADMIN = "ADMIN"
    MANAGER = "MANAGER"
    EMPLOYEE = "EMPLOYEE"

MIN_PASSWORD = 12

ADMIN_CREDENTIALS = """
    SELECT id, password_hash, role, password_change_required FROM admin_users
    WHERE email = lower($1) AND active"""
# The upgrade of a hash that just verified: only if nobody changed the password meanwhile.
UPGRADE_PASSWORD_HASH = """
    UPDATE admin_users SET password_hash = $3 WHERE id = $1 AND password_hash = $2"""
REVOKE_SESSION = "UPDATE admin_sessions SET revoked_at = now() WHERE token_hash = $1"
OPEN_SESSION = """
    INSERT INTO admin_sessions (token_hash, admin_id, expires_at, last_seen_at)
    VALUES ($1, $2, $3, $4)"""
# The panel's session check (antaca_api/panel): a live session used within the idle timeout is
# marked used now; an idle, expired or revoked one, or a deactivated administrator's, is no row.
TOUCH_SESSION = """
    UPDATE admin_sessions s SET last_seen_at = $2
    FROM admin_users a
    WHERE s.token_hash = $1 AND a.id = s.admin_id AND a.active AND s.revoked_at IS NULL
      AND s.expires_at > $2 AND s.last_seen_at > $2 - make_interval(secs => $3)
    RETURNING a.id, a.email, a.role, a.partner_id, a.password_change_required"""
INSERT_AUDIT_ENTRY = "INSERT INTO audit_log (admin_id, action, target) VALUES ($1, $2, $3)"
ADMIN_USER_COLUMNS = "id, email, role, active, created_at, partner_id, password_change_required"
ADMIN_USER = f"SELECT {ADMIN_USER_COLUMNS} FROM admin_users WHERE id = $1"
ADMIN_USERS = f"SELECT {ADMIN_USER_COLUMNS} FROM admin_users ORDER BY created_at"
AUDIT_ENTRIES = """
    SELECT l.id, l.admin_id, a.email AS admin_email, l.action, l.target, l.created_at
    FROM audit_log l JOIN admin_users a ON a.id = l.admin_id
    WHERE ($1::bigint IS NULL OR l.id < $1) ORDER BY l.id DESC LIMIT $2"""
AUDIT_PAGES = pages.Keyset("audit-log", tuple[int], descending=True)  # (id,), newest first


async def _hashing(background_cpu: BackgroundCpu | None, func: Callable[..., Any],
                   *args: Any) -> Any:
    if background_cpu is None:
        return func(*args)
    return await background_cpu.run(func, *args)


async def hash_admin_password(password: str, background_cpu: BackgroundCpu | None = None) -> str:
    """The stored form of a new administrator's password, once it is long enough."""
    if len(password) < MIN_PASSWORD:
        raise ValidationFailed(f"the password must have at least {MIN_PASSWORD} characters")
    return await _hashing(background_cpu, hash_password, password)


async def insert_admin_user(conn: asyncpg.Connection, email: str, password_hash: str,
                            role: Role, partner_id: uuid.UUID | None = None) -> uuid.UUID:
    """Record an administrator whose password is already hashed (hash_admin_password); with a
    partner id, a member of that partner's staff (antaca_api/staff_scope.py)."""
    admin_id = uuid.uuid4()
    if partner_id is not None:
        await check_partner_exists(conn, partner_id)
    try:
        await conn.execute(
            """INSERT INTO admin_users (id, email, password_hash, role, partner_id)
               VALUES ($1, lower($2), $3, $4, $5)""",
            admin_id, email, password_hash, str(role), partner_id,
        )
    except asyncpg.UniqueViolationError:
        raise AdminExists() from None
    return admin_id


async def create_admin_user(conn: asyncpg.Connection, email: str, password: str, role: Role, *,
                            background_cpu: BackgroundCpu | None = None,
                            partner_id: uuid.UUID | None = None) -> uuid.UUID:
    """Create an administrator; the password is stored as an Argon2id hash only."""
    password_hash = await hash_admin_password(password, background_cpu)
    return await insert_admin_user(conn, email, password_hash, role, partner_id)


async def open_session(
    pool: asyncpg.Pool, email: str, password: str, now: datetime, ttl: int, *,
    background_cpu: BackgroundCpu | None = None,
) -> tuple[str, datetime, Role, bool]:
    """Check the credentials and start a session: (token, expiry, role, whether the password
    must be changed before anything else).

    An unknown e-mail is checked against a dummy hash, the same way, so that it takes as long.
    """
    row = await pool.fetchrow(ADMIN_CREDENTIALS, email)
    stored = row["password_hash"] if row else DUMMY_HASH
    if not await _hashing(background_cpu, verify_password, password, stored) or row is None:
        raise InvalidCredentials()
    if needs_rehash(stored):
        upgraded = await _hashing(background_cpu, hash_password, password)
        await pool.execute(UPGRADE_PASSWORD_HASH, row["id"], stored, upgraded)
    token, token_hash = new_secret()
    expires_at = now + timedelta(seconds=ttl)
    await pool.execute(OPEN_SESSION, token_hash, row["id"], expires_at, now)
    return token, expires_at, Role(row["role"]), row["password_change_required"]


async def touch_session(pool: asyncpg.Pool, token: str, now: datetime,
                        idle_timeout_seconds: int) -> asyncpg.Record | None:
    """The administrator behind a session used within the idle timeout (and marked used now),
    or None when the session is unknown, revoked, expired or idle too long."""
    return await pool.fetchrow(TOUCH_SESSION, hash_secret(token), now,
                               float(idle_timeout_seconds))


async def record_audit_entry(conn: asyncpg.Connection, admin_id: uuid.UUID, action: str,
                             target: str) -> None:
    """One line of the admin audit log, in the caller's transaction (the action's own)."""
    await conn.execute(INSERT_AUDIT_ENTRY, admin_id, action, target)


async def revoke_session(conn: asyncpg.Connection, token: str) -> None:
    """End the session opened with this token (an unknown token changes nothing)."""
    await conn.execute(REVOKE_SESSION, hash_secret(token))


async def add_admin_user(conn: asyncpg.Connection, email: str, password_hash: str,
                         role: Role, partner_id: uuid.UUID | None = None) -> asyncpg.Record:
    """insert_admin_user, in the caller's transaction; the new administrator's row."""
    admin_id = await insert_admin_user(conn, email, password_hash, role, partner_id)
    return await conn.fetchrow(ADMIN_USER, admin_id)


async def admin_users(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    """Every administrator, oldest first."""
    return await pool.fetch(ADMIN_USERS)


async def audit_entries(pool: asyncpg.Pool, page: pages.PageRequest) -> list[asyncpg.Record]:
    """A page of the audit log (AUDIT_PAGES), newest first."""
    return await pool.fetch(AUDIT_ENTRIES, page.after_key(), page.fetch)


# --- managing administrators ------------------------------------------------------------------

LOCK_ADMIN_USER = "SELECT id FROM admin_users WHERE id = $1 FOR UPDATE"
CHANGE_ADMIN_USER = """
    UPDATE admin_users SET active = coalesce($2, active), role = coalesce($3, role) WHERE id = $1"""
SET_PASSWORD = """
    UPDATE admin_users SET password_hash = $2, password_change_required = $3 WHERE id = $1"""
REVOKE_SESSIONS_OF = """
    UPDATE admin_sessions SET revoked_at = now() WHERE admin_id = $1 AND revoked_at IS NULL"""
PASSWORD_HASH = "SELECT password_hash FROM admin_users WHERE id = $1 AND active"


async def _lock(conn: asyncpg.Connection, admin_id: uuid.UUID) -> None:
    if await conn.fetchval(LOCK_ADMIN_USER, admin_id) is None:
        raise NotFound("no such administrator")


async def change_admin_user(conn: asyncpg.Connection, acting_admin_id: uuid.UUID,
                            admin_id: uuid.UUID, *, active: bool | None,
                            role: Role | None) -> asyncpg.Record:
    """Deactivate (or reactivate) an administrator or change their role, in the caller's
    transaction; a deactivated administrator's sessions end at once. Not one's own account."""
    await _lock(conn, admin_id)
    if admin_id == acting_admin_id:
        raise OwnAdministratorAccount()
    await conn.execute(CHANGE_ADMIN_USER, admin_id, active, None if role is None else str(role))
    if active is False:
        await conn.execute(REVOKE_SESSIONS_OF, admin_id)
    return await conn.fetchrow(ADMIN_USER, admin_id)


async def reset_password(conn: asyncpg.Connection, admin_id: uuid.UUID,
                         temporary_hash: str) -> asyncpg.Record:
    """Give an administrator a temporary password they must change at their next sign-in, in the
    caller's transaction; their open sessions end."""
    await _lock(conn, admin_id)
    await conn.execute(SET_PASSWORD, admin_id, temporary_hash, True)
    await conn.execute(REVOKE_SESSIONS_OF, admin_id)
    return await conn.fetchrow(ADMIN_USER, admin_id)


async def change_own_password(pool: asyncpg.Pool, admin_id: uuid.UUID, current: str, new: str, *,
                              background_cpu: BackgroundCpu | None = None) -> asyncpg.Record:
    """An administrator replaces their password, proving the current one; the reset flag clears
    and their session goes on."""
    stored = await pool.fetchval(PASSWORD_HASH, admin_id)
    if stored is None or not await _hashing(background_cpu, verify_password, current, stored):
        raise InvalidCredentials("the current password is not right")
    if new == current:
        raise ValidationFailed("the new password must differ from the current one")
    new_hash = await hash_admin_password(new, background_cpu)
    async with pool.acquire() as conn, conn.transaction():
        await _lock(conn, admin_id)
        await conn.execute(SET_PASSWORD, admin_id, new_hash, False)
        return await conn.fetchrow(ADMIN_USER, admin_id)
