"""Card events: every state change of a card, who made it and why. The one module that writes and
reads `card_events`: the API's card operations, the personalization jobs and the authorization
engine's locks all record through it. Each card event is also a partner event
(antaca_auth/events.py: `card.issued`, `card.locked`...), written in the same transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from antaca_auth import events
from antaca_auth.cardstate import CardState

SYSTEM_ACTOR = "system"  # events no person caused: the engine's locks, background jobs

INSERT_EVENT = """
    INSERT INTO card_events (card_id, event, actor, from_state, to_state, reason)
    VALUES ($1, $2, $3, $4, $5, $6)"""

# The authorization engine's locks of a batch: ACTIVE cards locked by the system for a reason.
INSERT_ENGINE_LOCKS = """
    INSERT INTO card_events (card_id, event, actor, from_state, to_state, reason)
    SELECT id, 'LOCKED', $3, 'ACTIVE', 'LOCKED', reason
    FROM unnest($1::uuid[], $2::smallint[]) AS v (id, reason)"""

SELECT_EVENTS = """
    SELECT event, actor, from_state, to_state, reason, created_at
    FROM card_events WHERE card_id = $1 ORDER BY id"""


async def record_event(conn: asyncpg.Connection, card_id: uuid.UUID, event: str, actor: str,
                       before: CardState | None, after: CardState, reason: int | None = None) -> None:
    """One state change (or event without one, `before` equal to `after`) of a card."""
    from_state = None if before is None else str(before)
    await conn.execute(INSERT_EVENT, card_id, event, actor, from_state, str(after), reason)
    await events.record_for_card(conn, card_id, events.card_event_type(event), card_id, {
        "event": event, "actor": actor, "fromState": from_state, "toState": str(after),
        "reason": reason})


async def record_engine_locks(conn: asyncpg.Connection,
                             locks: Sequence[tuple[uuid.UUID, int]]) -> None:
    """The cards the authorization engine locked in a batch, with each lock's reason."""
    if locks:
        await conn.execute(INSERT_ENGINE_LOCKS, [card for card, _ in locks],
                           [reason for _, reason in locks], SYSTEM_ACTOR)
        await events.record_engine_locks(conn, [card for card, _ in locks],
                                         [reason for _, reason in locks])


async def events_of(conn: asyncpg.Connection | asyncpg.Pool,
                    card_id: uuid.UUID) -> list[asyncpg.Record]:
    """A card's events, oldest first (none: no such card)."""
    return await conn.fetch(SELECT_EVENTS, card_id)
