"""Card programs' versioned fee schedules and fee revenue, the recurring fee run, exchange rates."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg
import msgspec

from antaca_api.domain_errors import Conflict, NotFound
from antaca_auth import charges
from antaca_auth.fees import FeeSchedule
from antaca_auth.ledger import Ledger

PROGRAM_CURRENCY = "SELECT id, currency FROM card_programs WHERE id = $1"
PROGRAM_CURRENCY_FOR_UPDATE = "SELECT id, currency FROM card_programs WHERE id = $1 FOR UPDATE"
NEXT_VERSION = "SELECT coalesce(max(version), 0) + 1 FROM fee_schedules WHERE program_id = $1"
VERSION_AT = "SELECT 1 FROM fee_schedules WHERE program_id = $1 AND effective_from = $2"
INSERT_SCHEDULE = """
    INSERT INTO fee_schedules (id, program_id, version, effective_from, schedule, created_by)
    VALUES ($1, $2, $3, $4, $5::jsonb, $6) RETURNING *"""
SCHEDULES_OF_PROGRAM = "SELECT * FROM fee_schedules WHERE program_id = $1 ORDER BY version"
INSERT_RATE = """
    INSERT INTO fx_rates (base, quote, rate, effective_from, created_by) VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (base, quote, effective_from) DO NOTHING RETURNING *"""
ALL_RATES = "SELECT * FROM fx_rates ORDER BY base, quote, effective_from DESC"


async def program_currency(conn: asyncpg.Connection, program_id: uuid.UUID, *,
                           lock: bool = False) -> str:
    """The card program's currency; locked, it serializes the program's version numbers."""
    row = await conn.fetchrow(PROGRAM_CURRENCY_FOR_UPDATE if lock else PROGRAM_CURRENCY, program_id)
    if row is None:
        raise NotFound("no such card program")
    return row["currency"]


async def publish(conn: asyncpg.Connection, ledger: Ledger, program_id: uuid.UUID,
                  schedule: FeeSchedule, effective: datetime,
                  admin_id: uuid.UUID) -> asyncpg.Record:
    """Record the program's next schedule version, applying from `effective`.

    In the caller's transaction: the program's row lock serializes its version numbers."""
    currency = await program_currency(conn, program_id, lock=True)
    version = await conn.fetchval(NEXT_VERSION, program_id)
    if await conn.fetchval(VERSION_AT, program_id, effective):
        raise Conflict("a version already applies from that moment")
    await charges.ensure_revenue_account(ledger, conn, program_id, currency)
    return await conn.fetchrow(INSERT_SCHEDULE, uuid.uuid4(), program_id, version, effective,
                               msgspec.json.encode(schedule).decode(), admin_id)


@dataclass(frozen=True)
class ScheduleVersions:
    rows: list[asyncpg.Record]
    in_force: uuid.UUID | None  # the version that applies at the time asked


async def versions(conn: asyncpg.Connection, program_id: uuid.UUID,
                   now: datetime) -> ScheduleVersions:
    """The program's schedule versions, oldest first, and the one in force now."""
    await program_currency(conn, program_id)
    rows = await conn.fetch(SCHEDULES_OF_PROGRAM, program_id)
    in_force = await charges.schedule_in_force(conn, program_id, now)
    return ScheduleVersions(rows=rows, in_force=in_force[0] if in_force else None)


@dataclass(frozen=True)
class Revenue:
    currency: str
    by_type: list[asyncpg.Record]
    account: asyncpg.Record | None  # the revenue account's held and posted amounts, once opened


async def revenue(conn: asyncpg.Connection, program_id: uuid.UUID) -> Revenue:
    """The program's fee revenue per fee type, and its ledger revenue account."""
    currency = await program_currency(conn, program_id)
    rows, account = await charges.revenue_of(conn, program_id, currency)
    return Revenue(currency=currency, by_type=rows, account=account)


@dataclass(frozen=True)
class FeeRunOutcome:
    charges: list  # the charges made for the current period
    collected: int  # unpaid fees collected afterwards


async def run_recurring(pool: asyncpg.Pool, ledger: Ledger, now: datetime) -> FeeRunOutcome:
    """Charge the current period's recurring fees, then collect the unpaid ones."""
    done = await charges.charge_recurring(pool, ledger, now)
    collected = await charges.collect_all(pool, ledger)
    return FeeRunOutcome(charges=done, collected=collected)


async def add_rate(conn: asyncpg.Connection, base: str, quote: str, rate: Decimal,
                   effective: datetime, admin_id: uuid.UUID) -> asyncpg.Record:
    """Record an exchange rate version; one per pair and moment."""
    row = await conn.fetchrow(INSERT_RATE, base, quote, rate, effective, admin_id)
    if row is None:
        raise Conflict("a rate for this pair already applies from that moment")
    return row


async def rates(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    """Every exchange rate version, newest first per pair."""
    return await pool.fetch(ALL_RATES)
