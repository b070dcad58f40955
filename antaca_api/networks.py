"""Card networks and acquirers that call the network channel, and their client certificates."""

from __future__ import annotations

import uuid

import asyncpg

from antaca_api.domain_errors import NetworkExists, NotFound
from antaca_api.pki import CertificateAuthority, IssuedCertificate, issue_client_certificate
from antaca_auth import authorization_settings

INSERT_NETWORK = """
    INSERT INTO networks (id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING *"""
# A network the service keeps for itself (the sandbox's): created once, its row locked while its
# zone PIN key is checked, so that two first requests cannot each store a different key.
ENSURE_NETWORK = "INSERT INTO networks (id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING"
LOCK_NETWORK = "SELECT id, authorization_deadline_ms FROM networks WHERE id = $1 FOR UPDATE"
NETWORK_EXISTS = "SELECT 1 FROM networks WHERE id = $1"
SET_STATUS = "UPDATE networks SET status = $2 WHERE id = $1 RETURNING *"
CERTIFICATES_OF_NETWORK = """
    SELECT serial, network_id, fingerprint, subject, not_before, not_after, certificate, revoked_at
    FROM network_certificates WHERE network_id = $1 ORDER BY created_at, serial"""
REVOKE_CERTIFICATE = """
    UPDATE network_certificates SET revoked_at = coalesce(revoked_at, now())
    WHERE network_id = $1 AND serial = $2
    RETURNING serial, network_id, fingerprint, subject, not_before, not_after, certificate,
              revoked_at"""


async def create(conn: asyncpg.Connection, network_id: uuid.UUID, name: str) -> asyncpg.Record:
    """Register a network; its name is unique."""
    row = await conn.fetchrow(INSERT_NETWORK, network_id, name)
    if row is None:
        raise NetworkExists()
    return row


async def ensure(conn: asyncpg.Connection, network_id: uuid.UUID, name: str) -> asyncpg.Record:
    """The network with this id, created under this name if missing, its row locked until the
    caller's transaction ends."""
    await conn.execute(ENSURE_NETWORK, network_id, name)
    row = await conn.fetchrow(LOCK_NETWORK, network_id)
    if row is None:
        raise NetworkExists()  # the name is another network's
    return row


async def issue_certificate(conn: asyncpg.Connection, ca: CertificateAuthority, csr_pem: str,
                            network_id: uuid.UUID, *, background_cpu=None) -> IssuedCertificate:
    """Sign the network's CSR and record the certificate, in the caller's transaction."""
    if await conn.fetchval(NETWORK_EXISTS, network_id) is None:
        raise NotFound("no such network")
    return await issue_client_certificate(conn, ca, csr_pem, "network", network_id,
                                          background_cpu=background_cpu)


async def set_deadline(conn: asyncpg.Connection, network_id: uuid.UUID,
                       deadline_ms: int) -> asyncpg.Record:
    """Set the network's authorization deadline; the network's row after."""
    row = await authorization_settings.set_network_deadline(conn, network_id, deadline_ms)
    if row is None:
        raise NotFound("no such network")
    return row


async def set_status(conn: asyncpg.Connection, network_id: uuid.UUID,
                     status: str) -> asyncpg.Record:
    """Suspend (every request of the network refused, on JSON and ISO 8583 alike) or reactivate a
    network; its row after."""
    row = await conn.fetchrow(SET_STATUS, network_id, status)
    if row is None:
        raise NotFound("no such network")
    return row


async def certificates(conn: asyncpg.Connection, network_id: uuid.UUID) -> list[asyncpg.Record]:
    """The network's certificates, oldest first."""
    if await conn.fetchval(NETWORK_EXISTS, network_id) is None:
        raise NotFound("no such network")
    return await conn.fetch(CERTIFICATES_OF_NETWORK, network_id)


async def revoke_certificate(conn: asyncpg.Connection, network_id: uuid.UUID,
                             serial: str) -> asyncpg.Record:
    """Revoke the network's certificate (again: no change); NotFound when not the network's."""
    row = await conn.fetchrow(REVOKE_CERTIFICATE, network_id, serial)
    if row is None:
        raise NotFound("no such certificate for this network")
    return row
