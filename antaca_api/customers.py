"""Customers (end users) and their KYC: repository and rules."""

from __future__ import annotations

import enum
import uuid
from datetime import date

import asyncpg
import msgspec

from antaca_api import pages
from antaca_api.domain_errors import (
    CustomerExists,
    CustomerNotVerified,
    KycAlreadyDecided,
    NotFound,
    ValidationFailed,
)
from antaca_api.kyc import Identity, KycDecision, KycProvider, KycStatus
from antaca_auth import events

CUSTOMER_COLUMNS = """id, partner_id, external_id, first_name, last_name, email, phone, birth_date, address,
    country, kyc_status, created_at, updated_at, seq"""

# Which KYC states Antaca's own KYC may start from: a decided customer is not re-verified.
KYC_STARTABLE = {KycStatus.NOT_VERIFIED, KycStatus.REJECTED}


async def insert_customer(conn: asyncpg.Connection, partner_id: uuid.UUID, fields: dict) -> uuid.UUID:
    customer_id = uuid.uuid4()
    try:
        await conn.execute(
            """INSERT INTO customers (id, partner_id, external_id, first_name, last_name, email, phone, birth_date,
                   address, country)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
            customer_id, partner_id, fields["external_id"], fields["first_name"], fields["last_name"],
            fields["email"], fields["phone"], fields["birth_date"], msgspec.json.encode(fields["address"]).decode(),
            fields["country"],
        )
    except asyncpg.UniqueViolationError:
        raise CustomerExists() from None
    await conn.execute(
        "INSERT INTO kyc_events (customer_id, status, source) VALUES ($1, 'NOT_VERIFIED', 'REGISTRATION')",
        customer_id,
    )
    return customer_id


async def get_customer(
    conn: asyncpg.Connection, partner_id: uuid.UUID, customer_id: uuid.UUID, *, lock: bool = False
) -> asyncpg.Record:
    """The partner's customer; another partner's customer is as unknown as a missing one."""
    row = await conn.fetchrow(
        f"SELECT {CUSTOMER_COLUMNS} FROM customers WHERE id = $1 AND partner_id = $2" + (" FOR UPDATE" if lock else ""),
        customer_id, partner_id,
    )
    if row is None:
        raise NotFound("no such customer")
    return row


async def require_verified(conn: asyncpg.Connection, partner_id: uuid.UUID, customer_id: uuid.UUID) -> asyncpg.Record:
    """The customer, locked against KYC changes for this transaction, and VERIFIED."""
    row = await conn.fetchrow(
        f"SELECT {CUSTOMER_COLUMNS} FROM customers WHERE id = $1 AND partner_id = $2 FOR SHARE",
        customer_id, partner_id,
    )
    if row is None:
        raise NotFound("no such customer")
    if row["kyc_status"] != KycStatus.VERIFIED:
        raise CustomerNotVerified()
    return row


async def record_kyc(
    conn: asyncpg.Connection, customer_id: uuid.UUID, status: KycStatus, source: str, reason: str | None = None,
    details: dict | None = None,
) -> None:
    partner_id = await conn.fetchval(
        "UPDATE customers SET kyc_status = $2, updated_at = now() WHERE id = $1 "
        "RETURNING partner_id",
        customer_id, str(status))
    await events.record(conn, partner_id, events.KYC_RESULT, customer_id, {
        "customerId": customer_id, "status": str(status), "source": source, "reason": reason})
    await conn.execute(
        "INSERT INTO kyc_events (customer_id, status, source, reason, details) VALUES ($1, $2, $3, $4, $5::jsonb)",
        customer_id, str(status), source, reason, None if details is None else msgspec.json.encode(details).decode(),
    )


async def run_antaca_kyc(
    conn: asyncpg.Connection,
    provider: KycProvider,
    partner_id: uuid.UUID,
    customer_id: uuid.UUID,
    document: dict,
    today: date,
) -> KycDecision:
    """Antaca's KYC: PENDING while the provider decides, then its decision; history kept."""
    customer = await get_customer(conn, partner_id, customer_id, lock=True)
    status = KycStatus(customer["kyc_status"])
    if status not in KYC_STARTABLE:
        raise KycAlreadyDecided(f"the customer's KYC is {status}")
    identity = Identity(
        first_name=customer["first_name"], last_name=customer["last_name"], birth_date=customer["birth_date"],
        country=customer["country"], document_type=document["document_type"],
        document_number=document["document_number"], document_country=document["document_country"],
    )
    # Only the document's type and country are kept in the history, never its number.
    kept = {"documentType": document["document_type"], "documentCountry": document["document_country"]}
    await record_kyc(conn, customer_id, KycStatus.PENDING, provider.name, details=kept)
    decision = await provider.verify(identity, today)
    await record_kyc(conn, customer_id, decision.status, provider.name, decision.reason)
    return decision


CUSTOMER_PARTNER = "SELECT partner_id FROM customers WHERE id = $1"


async def partner_of_customer(conn: asyncpg.Connection | asyncpg.Pool,
                              customer_id: uuid.UUID) -> uuid.UUID:
    """The partner a customer belongs to (administrators act on any partner's customers)."""
    partner_id = await conn.fetchval(CUSTOMER_PARTNER, customer_id)
    if partner_id is None:
        raise NotFound("no such customer")
    return partner_id


CUSTOMERS_PAGE = f"""
    SELECT {CUSTOMER_COLUMNS} FROM customers WHERE partner_id = $1 AND seq > $2
    ORDER BY seq LIMIT $3"""
CUSTOMER_PAGES = pages.Keyset("customers", tuple[int])  # (seq,)
UPDATE_CONTACT = """
    UPDATE customers SET email = coalesce($2, email), phone = coalesce($3, phone),
        address = coalesce($4::jsonb, address), updated_at = now()
    WHERE id = $1"""
KYC_HISTORY = """
    SELECT status, source, reason, created_at FROM kyc_events WHERE customer_id = $1 ORDER BY id"""


AGE_YEARS_MAX = 130  # a birth date further back than this is a typing error, not a customer


def birth_date_problem(birth_date: date, today: date) -> str | None:
    """Why a birth date is refused, or None: it must not be after today (age 0 is a newborn's,
    whose parent may hold an account for them) nor more than AGE_YEARS_MAX years back."""
    if birth_date > today:
        return "birthDate must not be in the future"
    oldest = today.replace(year=today.year - AGE_YEARS_MAX, day=min(today.day, 28))
    if birth_date < oldest:
        return f"birthDate must be within the last {AGE_YEARS_MAX} years"
    return None


async def create_customer(conn: asyncpg.Connection, partner_id: uuid.UUID,
                          fields: dict, *, today: date) -> asyncpg.Record:
    """insert_customer, in the caller's transaction; the new customer's row. The birth date must
    be plausible (birth_date_problem)."""
    problem = birth_date_problem(fields["birth_date"], today)
    if problem is not None:
        raise ValidationFailed(problem)
    customer_id = await insert_customer(conn, partner_id, fields)
    return await get_customer(conn, partner_id, customer_id)


async def customers_page(pool: asyncpg.Pool, partner_id: uuid.UUID,
                         page: pages.PageRequest) -> list[asyncpg.Record]:
    """A page of the partner's customers, oldest first."""
    after = page.after_key(0)
    return await pool.fetch(CUSTOMERS_PAGE, partner_id, after, page.fetch)


async def update_contact(conn: asyncpg.Connection, partner_id: uuid.UUID, customer_id: uuid.UUID, *,
                         email: str | None, phone: str | None,
                         address: object | None) -> asyncpg.Record:
    """Change the contact data given (None keeps it), in the caller's transaction; the new row."""
    await get_customer(conn, partner_id, customer_id, lock=True)
    encoded_address = None if address is None else msgspec.json.encode(address).decode()
    await conn.execute(UPDATE_CONTACT, customer_id, email, phone, encoded_address)
    return await get_customer(conn, partner_id, customer_id)


async def set_partner_kyc(conn: asyncpg.Connection, partner_id: uuid.UUID, customer_id: uuid.UUID,
                          status: KycStatus, reason: str | None) -> None:
    """Record the result of the partner's own KYC, in the caller's transaction."""
    await get_customer(conn, partner_id, customer_id, lock=True)
    await record_kyc(conn, customer_id, status, "PARTNER", reason)


async def kyc_history(conn: asyncpg.Connection, partner_id: uuid.UUID,
                      customer_id: uuid.UUID) -> tuple[asyncpg.Record, list[asyncpg.Record]]:
    """The customer's row and its KYC events, oldest first."""
    customer = await get_customer(conn, partner_id, customer_id)
    return customer, await conn.fetch(KYC_HISTORY, customer_id)


async def partner_of_customer_or_none(conn: asyncpg.Connection,
                                      customer_id: uuid.UUID) -> uuid.UUID | None:
    """The partner a customer belongs to, or None for an unknown customer."""
    return await conn.fetchval(CUSTOMER_PARTNER, customer_id)


# --- customer service on the admin channel ---------------------------------------------------

SEARCH_PAGE_SIZE_MAX = 200  # customers in one page of an administrator's search
SEARCH_NAME_LENGTH_MAX = 100
SEARCH = f"""
    SELECT {CUSTOMER_COLUMNS} FROM customers
    WHERE ($1::uuid IS NULL OR partner_id = $1) AND ($2::uuid IS NULL OR partner_id = $2)
      AND ($3::text IS NULL OR lower(email) = lower($3))
      AND ($4::text IS NULL OR phone = $4)
      AND ($5::text IS NULL OR (first_name || ' ' || last_name) ILIKE $5 ESCAPE '\\')
      AND seq > $6
    ORDER BY seq LIMIT $7"""
CUSTOMER_IN_SCOPE = f"""
    SELECT {CUSTOMER_COLUMNS} FROM customers
    WHERE id = $1 AND ($2::uuid IS NULL OR partner_id = $2)"""
ADMIN_KYC_HISTORY = """
    SELECT status, source, reason, admin_id, created_at FROM kyc_events WHERE customer_id = $1
    ORDER BY id"""
RECORD_MANUAL_KYC = """
    INSERT INTO kyc_events (customer_id, status, source, reason, admin_id)
    VALUES ($1, $2, 'MANUAL_REVIEW', $3, $4)"""
SET_KYC_STATUS = "UPDATE customers SET kyc_status = $2, updated_at = now() WHERE id = $1"


class ReviewDecision(enum.StrEnum):
    APPROVE = "APPROVE"
    REJECT = "REJECT"


# A manual review decides customers not yet verified; a VERIFIED customer stays verified.
MANUAL_REVIEW_RESULT = {ReviewDecision.APPROVE: KycStatus.VERIFIED,
                        ReviewDecision.REJECT: KycStatus.REJECTED}


def manual_review(current: KycStatus, decision: ReviewDecision, reason: str | None) -> KycStatus:
    """The KYC status after a reviewer's decision, or the typed refusal."""
    if decision is ReviewDecision.REJECT and not (reason and reason.strip()):
        raise ValidationFailed("a rejection needs a reason")
    result = MANUAL_REVIEW_RESULT[decision]
    if current is KycStatus.VERIFIED or current is result:
        raise KycAlreadyDecided(f"the customer's KYC is already {current}")
    return result


def name_pattern(name: str | None) -> str | None:
    """An ILIKE pattern matching names that contain `name` (its wildcards taken literally)."""
    if name is None or not name.strip():
        return None
    if len(name) > SEARCH_NAME_LENGTH_MAX:
        raise ValidationFailed(f"a name to search is at most {SEARCH_NAME_LENGTH_MAX} characters")
    escaped = name.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def search(pool: asyncpg.Pool, *, partner_scope: uuid.UUID | None,
                 partner_id: uuid.UUID | None, email: str | None, phone: str | None,
                 name: str | None, page: pages.PageRequest) -> list[asyncpg.Record]:
    """A page (CUSTOMER_PAGES) of the customers matching every criterion given, in registration
    order; a partner's staff member (partner_scope) finds only that partner's."""
    return await pool.fetch(SEARCH, partner_scope, partner_id, email, phone, name_pattern(name),
                            page.after_key(0), page.fetch)


async def customer_in_scope(conn: asyncpg.Connection, partner_scope: uuid.UUID | None,
                            customer_id: uuid.UUID, *, lock: bool = False) -> asyncpg.Record:
    """A customer of any partner (or of the staff member's partner); NOT_FOUND otherwise."""
    row = await conn.fetchrow(CUSTOMER_IN_SCOPE + (" FOR UPDATE" if lock else ""), customer_id,
                              partner_scope)
    if row is None:
        raise NotFound("no such customer")
    return row


async def admin_kyc_history(conn: asyncpg.Connection,
                            customer_id: uuid.UUID) -> list[asyncpg.Record]:
    """Every KYC event of the customer, oldest first, with the reviewer of manual decisions."""
    return await conn.fetch(ADMIN_KYC_HISTORY, customer_id)


async def review_kyc(conn: asyncpg.Connection, partner_scope: uuid.UUID | None,
                     customer_id: uuid.UUID, decision: ReviewDecision, reason: str | None,
                     admin_id: uuid.UUID) -> tuple[asyncpg.Record, list[asyncpg.Record]]:
    """Record a reviewer's manual KYC decision, in the caller's transaction (which audits it);
    the customer and their KYC history after it."""
    customer = await customer_in_scope(conn, partner_scope, customer_id, lock=True)
    status = manual_review(KycStatus(customer["kyc_status"]), decision, reason)
    await conn.execute(SET_KYC_STATUS, customer_id, str(status))
    await conn.execute(RECORD_MANUAL_KYC, customer_id, str(status), reason, admin_id)
    return (await customer_in_scope(conn, partner_scope, customer_id),
            await admin_kyc_history(conn, customer_id))
