"""Card networks and acquirers that call the network channel, and their client certificates."""

from __future__ import annotations

import uuid

import asyncpg

from antaca_api.domain_errors import NetworkExists, NotFound
from antaca_api.pki import CertificateAuthority, IssuedCertificate, issue_client_certificate
from antaca_auth import authorization_settings

INSERT_NETWORK = """
    INSERT INTO networks (id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING *"""
NETWORK_EXISTS = "SELECT 1 FROM networks WHERE id = $1"


async def create(conn: asyncpg.Connection, network_id: uuid.UUID, name: str) -> asyncpg.Record:
    """Register a network; its name is unique."""
    row = await conn.fetchrow(INSERT_NETWORK, network_id, name)
    if row is None:
        raise NetworkExists()
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
