"""Corporations and KYB: rules (pure) and repository."""

from __future__ import annotations

import enum
import uuid
from urllib.parse import unquote

import asyncpg

from antaca_api.errors import InvalidStateTransition, KybClosed, NotFound, ValidationFailed


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
