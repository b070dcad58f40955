"""What operators set for the authorization path: each network's deadline, each program's stand-in
rule and whether it accepts e-commerce payments without CVC2 (docs/authorization.md)."""

from __future__ import annotations

import enum
import uuid
import zoneinfo

import asyncpg

DEADLINE_MS_MIN, DEADLINE_MS_MAX = 50, 10_000  # as sql/0014 checks


class StandInMode(enum.StrEnum):
    DECLINE = "DECLINE"  # 91, issuer unavailable
    APPROVE = "APPROVE"  # what the checks pass, up to the card's daily stand-in limit


SET_NETWORK_DEADLINE = """
    UPDATE networks SET authorization_deadline_ms = $2 WHERE id = $1 RETURNING *"""

SET_PROGRAM_RULES = """
    UPDATE card_programs SET stand_in_mode = $2, stand_in_limit = $3, ecommerce_without_cvc2 = $4
    WHERE id = $1 RETURNING *"""

SET_PROGRAM_TIME_ZONE = "UPDATE card_programs SET time_zone = $2 WHERE id = $1 RETURNING *"


async def set_network_deadline(conn: asyncpg.Connection, network_id: uuid.UUID,
                               deadline_ms: int) -> asyncpg.Record | None:
    """The network's row with its new deadline, or None for an unknown network."""
    if not DEADLINE_MS_MIN <= deadline_ms <= DEADLINE_MS_MAX:
        raise ValueError("the deadline is out of range")
    return await conn.fetchrow(SET_NETWORK_DEADLINE, network_id, deadline_ms)


async def set_program_rules(conn: asyncpg.Connection, program_id: uuid.UUID, mode: StandInMode,
                            stand_in_limit: int, ecommerce_without_cvc2: bool) -> asyncpg.Record | None:
    """The program's row with its new authorization rules, or None for an unknown program."""
    if stand_in_limit < 0:
        raise ValueError("the stand-in limit must not be negative")
    return await conn.fetchrow(SET_PROGRAM_RULES, program_id, str(mode), stand_in_limit,
                               ecommerce_without_cvc2)


async def set_program_time_zone(conn: asyncpg.Connection, program_id: uuid.UUID,
                                time_zone: str) -> asyncpg.Record | None:
    """The program's row with its new time zone (an IANA name; ValueError otherwise), or None for
    an unknown program. Velocity periods begin at the zone's midnight from the next payment on."""
    try:
        zoneinfo.ZoneInfo(time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("unknown time zone") from exc
    return await conn.fetchrow(SET_PROGRAM_TIME_ZONE, program_id, time_zone)
