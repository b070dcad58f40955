"""Corporations and KYB: rules (pure) and repository."""

from __future__ import annotations

import enum
import uuid
from urllib.parse import unquote

import asyncpg
import msgspec

from antaca_api.balances import balance_by_id, open_balance
from antaca_api.domain_errors import (
    CorporationNotApproved,
    InvalidStateTransition,
    KybClosed,
    NotFound,
    ValidationFailed,
)
from antaca_auth import events
from antaca_auth.ledger import Ledger


class KybStatus(enum.StrEnum):
    SUBMITTED = "SUBMITTED"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    ON_HOLD = "ON_HOLD"


REVIEWABLE = {KybStatus.SUBMITTED, KybStatus.ON_HOLD}  # APPROVED and REJECTED are final


def review(current: KybStatus, decision: KybStatus, reason: str | None) -> KybStatus:
    """The status after a compliance decision, or the typed refusal."""
    if decision is KybStatus.SUBMITTED:
        raise ValidationFailed("a review decides APPROVED, REJECTED or ON_HOLD")
    if decision in (KybStatus.REJECTED, KybStatus.ON_HOLD) and not (reason and reason.strip()):
        raise ValidationFailed(f"a reason is required for {decision}")
    if current not in REVIEWABLE:
        raise InvalidStateTransition(f"the corporation's KYB is already {current}")
    return decision


def documents_open(status: KybStatus) -> None:
    """Documents can be added while the review is open."""
    if status not in REVIEWABLE:
        raise KybClosed()


# Magic numbers of the accepted document types: the client's content type is not trusted.
SIGNATURES = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
)


def detect_type(head: bytes) -> str | None:
    """The document's content type from its first bytes, or None when not accepted."""
    for magic, content_type in SIGNATURES:
        if head.startswith(magic):
            return content_type
    return None


def document_type(head: bytes, declared: str | None) -> str | None:
    """The accepted content type of an upload, or None: unknown bytes, or bytes contradicting the declared type."""
    detected = detect_type(head)
    declared = (declared or "").split(";", 1)[0].strip().lower()
    # A generic or unknown declaration says nothing; naming another accepted type is a wrong file.
    if declared in {content_type for _, content_type in SIGNATURES} and declared != detected:
        return None
    return detected


def safe_filename(name: str | None) -> str:
    """A bounded, printable file name without directories."""
    base = unquote(name or "document").replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(ch for ch in base if ch.isprintable() and ch not in '<>:"|?*').strip()
    return cleaned[:128] if cleaned.strip(".") else "document"


CORPORATION_COLUMNS = "id, partner_id, name, registration_number, country, address, kyb_status, created_at, seq"


async def get_corporation(conn: asyncpg.Connection, corporation_id: uuid.UUID, partner_id: uuid.UUID | None,
                          *, lock: str = "") -> asyncpg.Record:
    """A corporation; with a partner id, only that partner's (others are NOT_FOUND)."""
    row = await conn.fetchrow(
        f"""SELECT {CORPORATION_COLUMNS} FROM corporations
            WHERE id = $1 AND ($2::uuid IS NULL OR partner_id = $2) {lock}""",
        corporation_id, partner_id,
    )
    if row is None:
        raise NotFound("no such corporation")
    return row


DOCUMENT_COLUMNS = "id AS document_id, kind, filename, content_type, size, sha256, created_at"
INSERT_CORPORATION = """
    INSERT INTO corporations (id, partner_id, name, registration_number, country, address)
    VALUES ($1, $2, $3, $4, $5, $6::jsonb)"""
INSERT_SUBMITTED_EVENT = "INSERT INTO kyb_events (corporation_id, status) VALUES ($1, 'SUBMITTED')"
INSERT_KYB_EVENT = """
    INSERT INTO kyb_events (corporation_id, status, reason, admin_id) VALUES ($1, $2, $3, $4)"""
PARTNER_CORPORATIONS = f"""
    SELECT {CORPORATION_COLUMNS} FROM corporations WHERE partner_id = $1 AND seq > $2
    ORDER BY seq LIMIT $3"""
CORPORATIONS_BY_STATUS = f"""
    SELECT {CORPORATION_COLUMNS} FROM corporations
    WHERE ($1::text IS NULL OR kyb_status = $1) AND seq > $2 ORDER BY seq LIMIT $3"""
INSERT_DOCUMENT = f"""
    INSERT INTO corporation_documents (id, corporation_id, kind, filename, content_type, size,
        sha256, content) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {DOCUMENT_COLUMNS}"""
CORPORATION_DOCUMENTS = f"""
    SELECT {DOCUMENT_COLUMNS} FROM corporation_documents WHERE corporation_id = $1
    ORDER BY created_at, id"""
KYB_HISTORY = """
    SELECT status, reason, admin_id, created_at FROM kyb_events WHERE corporation_id = $1
    ORDER BY id"""
SET_KYB_STATUS = "UPDATE corporations SET kyb_status = $2, updated_at = now() WHERE id = $1"


async def create_corporation(conn: asyncpg.Connection, partner_id: uuid.UUID, *, name: str,
                             registration_number: str, country: str,
                             address: object) -> asyncpg.Record:
    """Register a corporation, SUBMITTED for KYB, in the caller's transaction; its row."""
    corporation_id = uuid.uuid4()
    await conn.execute(INSERT_CORPORATION, corporation_id, partner_id, name, registration_number,
                       country, msgspec.json.encode(address).decode())
    await conn.execute(INSERT_SUBMITTED_EVENT, corporation_id)
    return await get_corporation(conn, corporation_id, partner_id)


async def partner_corporations(pool: asyncpg.Pool, partner_id: uuid.UUID, *, after: int,
                               limit: int) -> list[asyncpg.Record]:
    """The partner's corporations registered after the cursor `after`, oldest first."""
    return await pool.fetch(PARTNER_CORPORATIONS, partner_id, after, limit)


async def corporations_by_status(pool: asyncpg.Pool, status: str | None, *, after: int,
                                 limit: int) -> list[asyncpg.Record]:
    """Every partner's corporations (of a KYB status, if given) after the cursor `after`."""
    return await pool.fetch(CORPORATIONS_BY_STATUS, status, after, limit)


async def check_documents_open(pool: asyncpg.Pool, corporation_id: uuid.UUID,
                               partner_id: uuid.UUID) -> None:
    """The partner's corporation exists and still takes documents (KybClosed otherwise)."""
    async with pool.acquire() as conn:
        corporation = await get_corporation(conn, corporation_id, partner_id)
    documents_open(KybStatus(corporation["kyb_status"]))


async def add_document(conn: asyncpg.Connection, corporation_id: uuid.UUID,
                       partner_id: uuid.UUID, *, kind: str, filename: str | None,
                       content_type: str, content: bytes, sha256: str) -> asyncpg.Record:
    """Store a KYB document while the review is open, in the caller's transaction; its metadata."""
    corporation = await get_corporation(conn, corporation_id, partner_id, lock="FOR SHARE")
    documents_open(KybStatus(corporation["kyb_status"]))
    return await conn.fetchrow(INSERT_DOCUMENT, uuid.uuid4(), corporation_id, kind,
                               safe_filename(filename), content_type, len(content), sha256, content)


async def corporation_documents(conn: asyncpg.Connection, corporation_id: uuid.UUID,
                                partner_id: uuid.UUID | None) -> list[asyncpg.Record]:
    """A corporation's documents' metadata; with a partner id, only that partner's corporation."""
    await get_corporation(conn, corporation_id, partner_id)
    return await conn.fetch(CORPORATION_DOCUMENTS, corporation_id)


async def review_file(conn: asyncpg.Connection, corporation_id: uuid.UUID,
                      ) -> tuple[asyncpg.Record, list[asyncpg.Record], list[asyncpg.Record]]:
    """What a compliance reviewer sees: the corporation, its documents and its KYB history."""
    corporation = await get_corporation(conn, corporation_id, None)
    documents = await conn.fetch(CORPORATION_DOCUMENTS, corporation_id)
    history = await conn.fetch(KYB_HISTORY, corporation_id)
    return corporation, documents, history


async def decide_kyb(conn: asyncpg.Connection, corporation_id: uuid.UUID, decision: KybStatus,
                     reason: str | None, admin_id: uuid.UUID,
                     ) -> tuple[asyncpg.Record, list[asyncpg.Record], list[asyncpg.Record]]:
    """Record a compliance decision, in the caller's transaction; the review_file after it."""
    corporation = await get_corporation(conn, corporation_id, None, lock="FOR UPDATE")
    status = review(KybStatus(corporation["kyb_status"]), decision, reason)
    await conn.execute(SET_KYB_STATUS, corporation_id, str(status))
    await conn.execute(INSERT_KYB_EVENT, corporation_id, str(status), reason, admin_id)
    await events.record(conn, corporation["partner_id"], events.KYB_RESULT, corporation_id, {
        "corporationId": corporation_id, "status": str(status), "reason": reason})
    return await review_file(conn, corporation_id)


async def open_corporate_balance(conn: asyncpg.Connection, ledger: Ledger, partner_id: uuid.UUID,
                                 corporation_id: uuid.UUID, currency: str) -> asyncpg.Record:
    """Open a balance for an APPROVED corporation, in the caller's transaction; its row."""
    corporation = await get_corporation(conn, corporation_id, partner_id, lock="FOR SHARE")
    if corporation["kyb_status"] != KybStatus.APPROVED:
        raise CorporationNotApproved()
    balance_id = await open_balance(conn, ledger, partner_id=partner_id, currency=currency,
                                    corporation_id=corporation_id)
    return await balance_by_id(conn, balance_id)
