"""Corporations and KYB: rules (pure) and repository."""

from __future__ import annotations

import enum
import uuid
from urllib.parse import unquote

import asyncpg
import msgspec

from antaca_api import balances, cards, employees, pages
from antaca_api.balances import balance_by_id, open_balance
from antaca_api.domain_errors import (
    CorporationNotApproved,
    InvalidStateTransition,
    KybClosed,
    NotFound,
    ValidationFailed,
)
from antaca_auth import events
from antaca_auth.cardkeys import CardKeys
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
    WHERE ($1::text IS NULL OR kyb_status = $1) AND seq > $2
      AND ($4::uuid IS NULL OR partner_id = $4) ORDER BY seq LIMIT $3"""
CORPORATION_PAGES = pages.Keyset("corporations", tuple[int])  # (seq,)
INSERT_DOCUMENT = f"""
    INSERT INTO corporation_documents (id, corporation_id, kind, filename, content_type, size,
        sha256, content, key_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
    RETURNING {DOCUMENT_COLUMNS}"""
DOCUMENT_CONTENT = f"""
    SELECT {DOCUMENT_COLUMNS}, content, key_id FROM corporation_documents
    WHERE id = $1 AND corporation_id = $2"""
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


async def partner_corporations(pool: asyncpg.Pool, partner_id: uuid.UUID,
                               page: pages.PageRequest) -> list[asyncpg.Record]:
    """A page of the partner's corporations in registration order (CORPORATION_PAGES)."""
    return await pool.fetch(PARTNER_CORPORATIONS, partner_id, page.after_key(0), page.fetch)


async def corporations_by_status(pool: asyncpg.Pool, status: str | None, page: pages.PageRequest,
                                 partner_scope: uuid.UUID | None = None) -> list[asyncpg.Record]:
    """A page of every partner's corporations (of a KYB status, if given) in registration order;
    with a partner scope (a partner's staff member), only that partner's."""
    return await pool.fetch(CORPORATIONS_BY_STATUS, status, page.after_key(0), page.fetch,
                            partner_scope)


async def check_documents_open(pool: asyncpg.Pool, corporation_id: uuid.UUID,
                               partner_id: uuid.UUID) -> None:
    """The partner's corporation exists and still takes documents (KybClosed otherwise)."""
    async with pool.acquire() as conn:
        corporation = await get_corporation(conn, corporation_id, partner_id)
    documents_open(KybStatus(corporation["kyb_status"]))


async def add_document(conn: asyncpg.Connection, corporation_id: uuid.UUID,
                       partner_id: uuid.UUID, *, kind: str, filename: str | None,
                       content_type: str, content: bytes, sha256: str,
                       keys: CardKeys) -> asyncpg.Record:
    """Store a KYB document while the review is open, encrypted at rest (`keys`), in the caller's
    transaction; its metadata."""
    corporation = await get_corporation(conn, corporation_id, partner_id, lock="FOR SHARE")
    documents_open(KybStatus(corporation["kyb_status"]))
    document_id = uuid.uuid4()
    key_id, sealed = keys.encrypt_document(document_id, content)
    return await conn.fetchrow(INSERT_DOCUMENT, document_id, corporation_id, kind,
                               safe_filename(filename), content_type, len(content), sha256, sealed,
                               key_id)


async def document_content(conn: asyncpg.Connection, corporation_id: uuid.UUID,
                           document_id: uuid.UUID, partner_scope: uuid.UUID | None,
                           keys: CardKeys) -> tuple[asyncpg.Record, bytes]:
    """A document's metadata and its content as uploaded, for a reviewer (within a partner scope
    when given); rows stored before encryption (no key id) are returned as they are."""
    await get_corporation(conn, corporation_id, partner_scope)
    row = await conn.fetchrow(DOCUMENT_CONTENT, document_id, corporation_id)
    if row is None:
        raise NotFound("no such document")
    if row["key_id"] is None:
        return row, row["content"]
    return row, keys.decrypt_document(document_id, row["key_id"], row["content"])


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


# --- employees, and what a corporation owns ---------------------------------------------------


async def add_employee(conn: asyncpg.Connection, partner_id: uuid.UUID, corporation_id: uuid.UUID,
                       *, name: str, email: str, phone: str | None) -> asyncpg.Record:
    """Record an employee of the partner's corporation, in the caller's transaction; its row."""
    await get_corporation(conn, corporation_id, partner_id, lock="FOR SHARE")
    return await employees.add_employee(conn, corporation_id, name=name, email=email, phone=phone)


async def corporation_employees(conn: asyncpg.Connection, partner_id: uuid.UUID,
                                corporation_id: uuid.UUID,
                                page: pages.PageRequest) -> list[asyncpg.Record]:
    """A page of the employees of the partner's corporation, oldest first."""
    await get_corporation(conn, corporation_id, partner_id)
    return await employees.corporation_employees(conn, corporation_id, page)


async def corporation_balances(conn: asyncpg.Connection, partner_id: uuid.UUID,
                               corporation_id: uuid.UUID, hidden: list[str],
                               page: pages.PageRequest,
                               ) -> tuple[list[asyncpg.Record], balances.CardsByBalance]:
    """A page of the balances of the partner's corporation, and their cards."""
    await get_corporation(conn, corporation_id, partner_id)
    return await balances.corporation_balances(conn, partner_id, corporation_id, hidden, page)


CardsWithHolders = tuple[list[asyncpg.Record], dict[uuid.UUID, asyncpg.Record]]


async def corporation_cards(conn: asyncpg.Connection, partner_id: uuid.UUID,
                            corporation_id: uuid.UUID, page: pages.PageRequest) -> CardsWithHolders:
    """A page of the cards of the partner's corporation (removed ones left out), and the
    employees they name, by id."""
    await get_corporation(conn, corporation_id, partner_id)
    rows = await cards.corporation_cards(conn, corporation_id, partner_id, page)
    return rows, await employees.employees_by_id(conn, [row["employee_id"] for row in rows])


async def corporate_balance_cards(conn: asyncpg.Connection, partner_id: uuid.UUID,
                                  balance_id: uuid.UUID, page: pages.PageRequest) -> CardsWithHolders:
    """A page of the cards under one of the partner's corporate balances (removed ones left
    out), and the employees they name, by id."""
    await balances.corporate_balance(conn, partner_id, balance_id)
    rows = await cards.balance_cards(conn, balance_id, partner_id, page)
    return rows, await employees.employees_by_id(conn, [row["employee_id"] for row in rows])


async def corporate_card(conn: asyncpg.Connection, partner_id: uuid.UUID,
                         card_id: uuid.UUID) -> tuple[asyncpg.Record, asyncpg.Record | None]:
    """One of the partner's corporate cards and the employee it names (None for a card issued
    before cards named employees); a customer's card, another partner's or an unknown one is
    NOT_FOUND."""
    row = await cards.find_card(conn, card_id, cards.CardScope(partner_id, corporate=True))
    holders = await employees.employees_by_id(conn, [row["employee_id"]])
    return row, holders.get(row["employee_id"])
CORPORATION_PARTNER = "SELECT partner_id FROM corporations WHERE id = $1"


async def partner_of_corporation(conn: asyncpg.Connection,
                                 corporation_id: uuid.UUID) -> uuid.UUID | None:
    """The partner a corporation belongs to, or None for an unknown one."""
    return await conn.fetchval(CORPORATION_PARTNER, corporation_id)


SEAL_BATCH_SIZE_MAX = 20  # documents re-encrypted per transaction (each up to the upload limit)
CLEAR_DOCUMENTS = """
    SELECT id, content FROM corporation_documents WHERE key_id IS NULL
    ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"""
SEAL_DOCUMENT = "UPDATE corporation_documents SET content = $2, key_id = $3 WHERE id = $1"


async def seal_clear_documents(pool: asyncpg.Pool, keys: CardKeys) -> int:
    """Encrypt the documents stored before encryption at rest (no key id); how many. Run at
    start-up: a no-op once every row has a key id."""
    sealed = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(CLEAR_DOCUMENTS, SEAL_BATCH_SIZE_MAX)
            for row in rows:
                key_id, blob = keys.encrypt_document(row["id"], bytes(row["content"]))
                await conn.execute(SEAL_DOCUMENT, row["id"], blob, key_id)
        sealed += len(rows)
        if len(rows) < SEAL_BATCH_SIZE_MAX:
            return sealed
