"""Spending controls' storage (tables `spending_controls`, `control_shadow_hits`, and the
`controls_version` columns of card_programs, balances and cards): this module owns their SQL.

A change to a control (create, update, promote, delete) takes a new value of the sequence
`spending_controls_version` into its scope's `controls_version`, in the same transaction: the
engine reads that column with the card and reloads a scope's controls only when it moved
(`load`). Updating a control gives it a new version number; the engine records the version
that decided on the authorization.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime

import asyncpg
import msgspec

from antaca_auth.control_rules import Control, Level, control_from_rule, ordered

CONTROL_COLUMNS = """id, version, level, scope_id, partner_id, customer_id, set_by, status, kind,
    rule, created_at, updated_at"""

SCOPE_CONTROLS = f"""
    SELECT {CONTROL_COLUMNS} FROM spending_controls
    WHERE scope_id = ANY($1::uuid[]) AND deleted_at IS NULL
    ORDER BY created_at, id"""

CONTROL = f"SELECT {CONTROL_COLUMNS} FROM spending_controls WHERE id = $1 AND deleted_at IS NULL"

CONTROL_LOCKED = CONTROL + " FOR UPDATE"

PARTNER_CONTROLS = f"""
    SELECT {CONTROL_COLUMNS} FROM spending_controls
    WHERE partner_id = $1 AND deleted_at IS NULL AND ($2::uuid IS NULL OR scope_id = $2)
    ORDER BY created_at, id LIMIT $3"""

ALL_CONTROLS = f"""
    SELECT {CONTROL_COLUMNS} FROM spending_controls
    WHERE deleted_at IS NULL AND ($1::uuid IS NULL OR scope_id = $1)
    ORDER BY created_at, id LIMIT $2"""

INSERT_CONTROL = f"""
    INSERT INTO spending_controls (id, level, scope_id, partner_id, customer_id, set_by, status,
                                   kind, rule)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb) RETURNING {CONTROL_COLUMNS}"""

UPDATE_CONTROL = f"""
    UPDATE spending_controls
    SET version = version + 1, status = $2, rule = $3::jsonb, updated_at = now()
    WHERE id = $1 AND deleted_at IS NULL RETURNING {CONTROL_COLUMNS}"""

DELETE_CONTROL = f"""
    UPDATE spending_controls SET deleted_at = now(), updated_at = now()
    WHERE id = $1 AND deleted_at IS NULL RETURNING {CONTROL_COLUMNS}"""

# Which partner a scope belongs to (and the customer of a card or balance), by level.
SCOPE_OWNERS = {
    Level.PROGRAM: "SELECT partner_id, NULL::uuid AS customer_id FROM card_programs WHERE id = $1",
    Level.BALANCE: "SELECT partner_id, customer_id FROM balances WHERE id = $1",
    Level.CARD: "SELECT partner_id, customer_id FROM cards WHERE id = $1",
}
SCOPE_OWNERS[Level.PRODUCT] = SCOPE_OWNERS[Level.PROGRAM]

BUMP_VERSION = {
    Level.PROGRAM: """UPDATE card_programs
                      SET controls_version = nextval('spending_controls_version') WHERE id = $1""",
    Level.BALANCE: """UPDATE balances
                      SET controls_version = nextval('spending_controls_version') WHERE id = $1""",
    Level.CARD: """UPDATE cards
                   SET controls_version = nextval('spending_controls_version') WHERE id = $1""",
}
BUMP_VERSION[Level.PRODUCT] = BUMP_VERSION[Level.PROGRAM]

# The controls in force on a card (its program's, its balance's, its own), for a customer's
# limits, which must never be looser than the partner's.
CARD_SCOPES = "SELECT program_id, balance_id FROM cards WHERE id = $1"

SHADOW_HIT_COLUMNS = ("control_id", "authorization_id", "control_version", "response_code",
                      "reason", "amount", "currency", "created_at")

SHADOW_SUMMARY = """
    SELECT currency, count(*) AS authorizations, sum(amount)::bigint AS amount
    FROM control_shadow_hits
    WHERE control_id = $1 AND created_at >= $2 AND created_at < $3
    GROUP BY currency ORDER BY currency"""

SHADOW_SAMPLE = """
    SELECT h.authorization_id, h.control_version, h.response_code, h.reason, h.amount, h.currency,
           h.created_at, a.decision, a.mcc, a.merchant_country, a.type
    FROM control_shadow_hits h JOIN authorizations a ON a.id = h.authorization_id
    WHERE h.control_id = $1 AND h.created_at >= $2 AND h.created_at < $3
    ORDER BY h.created_at DESC, h.authorization_id LIMIT $4"""


def control_of(record: asyncpg.Record) -> Control:
    return control_from_rule(id=record["id"], version=record["version"], level=record["level"],
                             scope_id=record["scope_id"], status=record["status"],
                             kind=record["kind"], rule=record["rule"])


async def load(conn: asyncpg.Connection,
               scope_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, tuple[Control, ...]]:
    """Every live control of each scope, in evaluation order (a scope without any: empty)."""
    scope_ids = list(scope_ids)
    found: dict[uuid.UUID, list[Control]] = {scope: [] for scope in scope_ids}
    for order, record in enumerate(await conn.fetch(SCOPE_CONTROLS, scope_ids)):
        control = dataclasses.replace(control_of(record), created_order=order)
        found[control.scope_id].append(control)
    return {scope: ordered(controls) for scope, controls in found.items()}


async def record_shadow_hits(conn: asyncpg.Connection, records: Sequence[tuple]) -> None:
    """Store what shadow controls would have declined (rows in SHADOW_HIT_COLUMNS' order)."""
    if records:
        await conn.copy_records_to_table("control_shadow_hits", records=records,
                                         columns=SHADOW_HIT_COLUMNS)


async def bump(conn: asyncpg.Connection, level: Level, scope_id: uuid.UUID) -> None:
    await conn.execute(BUMP_VERSION[level], scope_id)


async def scope_owner(conn: asyncpg.Connection, level: Level,
                      scope_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(SCOPE_OWNERS[level], scope_id)


async def insert(conn: asyncpg.Connection, control_id: uuid.UUID, level: Level,
                 scope_id: uuid.UUID, partner_id: uuid.UUID, customer_id: uuid.UUID | None,
                 set_by: str, status: str, kind: str, rule: dict) -> asyncpg.Record:
    record = await conn.fetchrow(INSERT_CONTROL, control_id, str(level), scope_id, partner_id,
                                 customer_id, set_by, status, kind,
                                 msgspec.json.encode(rule).decode())
    await bump(conn, level, scope_id)
    return record


async def find(conn: asyncpg.Connection, control_id: uuid.UUID, *,
               lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(CONTROL_LOCKED if lock else CONTROL, control_id)


async def update(conn: asyncpg.Connection, control_id: uuid.UUID, status: str,
                 rule: dict) -> asyncpg.Record:
    record = await conn.fetchrow(UPDATE_CONTROL, control_id, status,
                                 msgspec.json.encode(rule).decode())
    await bump(conn, Level(record["level"]), record["scope_id"])
    return record


async def delete(conn: asyncpg.Connection, control_id: uuid.UUID) -> asyncpg.Record:
    record = await conn.fetchrow(DELETE_CONTROL, control_id)
    await bump(conn, Level(record["level"]), record["scope_id"])
    return record


async def listing(conn: asyncpg.Connection, partner_id: uuid.UUID | None,
                  scope_id: uuid.UUID | None, limit: int) -> list[asyncpg.Record]:
    """Live controls, oldest first: a partner's (None: every partner's), of one scope or all."""
    if partner_id is None:
        return await conn.fetch(ALL_CONTROLS, scope_id, limit)
    return await conn.fetch(PARTNER_CONTROLS, partner_id, scope_id, limit)


async def in_force_on_card(conn: asyncpg.Connection,
                           card_id: uuid.UUID) -> list[asyncpg.Record]:
    """The live controls of the card's program, balance and the card itself."""
    scopes = await conn.fetchrow(CARD_SCOPES, card_id)
    if scopes is None:
        return []
    return await conn.fetch(SCOPE_CONTROLS, [scopes["program_id"], scopes["balance_id"], card_id])


async def shadow_report(conn: asyncpg.Connection, control_id: uuid.UUID, since: datetime,
                        until: datetime, sample_size: int) -> tuple[list, list]:
    """(totals by currency, a sample of the latest hits) of a control over [since, until)."""
    return (await conn.fetch(SHADOW_SUMMARY, control_id, since, until),
            await conn.fetch(SHADOW_SAMPLE, control_id, since, until, sample_size))
