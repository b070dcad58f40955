"""Partners: onboarding, contact, status and webhook secret, and their client certificates."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime

import asyncpg

from antaca_api import pages
from antaca_api.domain_errors import NotFound
from antaca_api.pki import CertificateAuthority, IssuedCertificate, issue_client_certificate
from antaca_auth.cardkeys import CardKeys

PARTNER_EXISTS = "SELECT 1 FROM partners WHERE id = $1"
PARTNER = """
    SELECT id, name, contact_email, webhook_url, status, created_at
    FROM partners WHERE id = $1"""
ALL_PARTNERS = """
    SELECT id, name, contact_email, webhook_url, status, created_at
    FROM partners
    WHERE ($1::uuid IS NULL OR id = $1)
      AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3::uuid))
    ORDER BY created_at, id LIMIT $4"""
PARTNER_PAGES = pages.Keyset("partners", tuple[datetime, uuid.UUID])  # (created_at, id)
INSERT_PARTNER = """
    INSERT INTO partners (id, name, contact_email, webhook_url, webhook_secret_sealed)
    VALUES ($1, $2, $3, $4, $5)"""
SET_CONTACT = "UPDATE partners SET contact_email = $2, webhook_url = $3 WHERE id = $1"
SET_WEBHOOK_SECRET = """
    UPDATE partners SET webhook_secret_sealed = $2, webhook_secret = NULL WHERE id = $1"""
# Secrets written in clear before sql/0024, sealed at start (a bounded batch at a time).
CLEAR_WEBHOOK_SECRETS = """
    SELECT id, webhook_secret FROM partners WHERE webhook_secret IS NOT NULL
    ORDER BY id LIMIT $1 FOR UPDATE"""
SECRETS_SEALED_PER_BATCH = 500
SET_STATUS = "UPDATE partners SET status = $2 WHERE id = $1"
CERTIFICATES_OF_PARTNER = """
    SELECT serial, partner_id, fingerprint, subject, not_before, not_after, certificate, revoked_at
    FROM partner_certificates WHERE partner_id = $1 ORDER BY created_at"""
REVOKE_CERTIFICATE = """
    UPDATE partner_certificates SET revoked_at = coalesce(revoked_at, now())
    WHERE partner_id = $1 AND serial = $2
    RETURNING serial, partner_id, fingerprint, subject, not_before, not_after, certificate,
              revoked_at"""


def new_webhook_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


async def check_exists(conn: asyncpg.Connection, partner_id: uuid.UUID) -> None:
    """Raise NotFound unless the partner exists."""
    if await conn.fetchval(PARTNER_EXISTS, partner_id) is None:
        raise NotFound("no such partner")


async def find(conn: asyncpg.Connection, partner_id: uuid.UUID) -> asyncpg.Record:
    row = await conn.fetchrow(PARTNER, partner_id)
    if row is None:
        raise NotFound("no such partner")
    return row


async def all_partners(pool: asyncpg.Pool, page: pages.PageRequest,
                       partner_scope: uuid.UUID | None = None) -> list[asyncpg.Record]:
    """A page of every partner in onboarding order, or only the one a partner's staff member
    belongs to."""
    created_at, partner_id = page.after or (None, None)
    return await pool.fetch(ALL_PARTNERS, partner_scope, created_at, partner_id, page.fetch)


def seal_secret(keys: CardKeys, partner_id: uuid.UUID, secret: str) -> bytes:
    """The partner's webhook secret sealed at rest (AES-256-GCM, bound to the partner)."""
    return keys.seal_webhook_secret(partner_id, secret.encode())


def open_secret(keys: CardKeys, partner_id: uuid.UUID, sealed: bytes) -> str:
    return keys.open_webhook_secret(partner_id, sealed).decode()


async def create(conn: asyncpg.Connection, keys: CardKeys, partner_id: uuid.UUID, name: str,
                 contact_email: str | None, webhook_url: str | None,
                 webhook_secret: str) -> asyncpg.Record:
    """Onboard a partner, in the caller's transaction (its webhook secret sealed)."""
    await conn.execute(INSERT_PARTNER, partner_id, name, contact_email, webhook_url,
                       seal_secret(keys, partner_id, webhook_secret))
    return await find(conn, partner_id)


async def seal_clear_secrets(pool: asyncpg.Pool, keys: CardKeys) -> int:
    """Seal the webhook secrets still stored in clear (written before sql/0024); how many."""
    sealed = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(CLEAR_WEBHOOK_SECRETS, SECRETS_SEALED_PER_BATCH)
            for row in rows:
                await conn.execute(SET_WEBHOOK_SECRET, row["id"],
                                   seal_secret(keys, row["id"], row["webhook_secret"]))
        sealed += len(rows)
        if len(rows) < SECRETS_SEALED_PER_BATCH:
            return sealed


async def set_contact(conn: asyncpg.Connection, partner_id: uuid.UUID, contact_email: str | None,
                      webhook_url: str | None) -> asyncpg.Record:
    await find(conn, partner_id)
    await conn.execute(SET_CONTACT, partner_id, contact_email, webhook_url)
    return await find(conn, partner_id)


async def set_webhook_secret(conn: asyncpg.Connection, keys: CardKeys, partner_id: uuid.UUID,
                             secret: str) -> None:
    await find(conn, partner_id)
    await conn.execute(SET_WEBHOOK_SECRET, partner_id, seal_secret(keys, partner_id, secret))


async def set_status(conn: asyncpg.Connection, partner_id: uuid.UUID,
                     status: str) -> asyncpg.Record:
    await find(conn, partner_id)
    await conn.execute(SET_STATUS, partner_id, status)
    return await find(conn, partner_id)


async def issue_certificate(conn: asyncpg.Connection, ca: CertificateAuthority, csr_pem: str,
                            partner_id: uuid.UUID, *, background_cpu=None) -> IssuedCertificate:
    """Sign the partner's CSR and record the certificate, in the caller's transaction."""
    await find(conn, partner_id)
    return await issue_client_certificate(conn, ca, csr_pem, "partner", partner_id,
                                          background_cpu=background_cpu)


async def certificates(conn: asyncpg.Connection, partner_id: uuid.UUID) -> list[asyncpg.Record]:
    """The partner's certificates, oldest first."""
    await find(conn, partner_id)
    return await conn.fetch(CERTIFICATES_OF_PARTNER, partner_id)


async def revoke_certificate(conn: asyncpg.Connection, partner_id: uuid.UUID,
                             serial: str) -> asyncpg.Record:
    """Revoke the partner's certificate (again: no change); NotFound when not the partner's."""
    row = await conn.fetchrow(REVOKE_CERTIFICATE, partner_id, serial)
    if row is None:
        raise NotFound("no such certificate for this partner")
    return row
