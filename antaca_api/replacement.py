"""Card replacement and renewal: a new card for the same holder and balance.

Replacement (lost, stolen, damaged, renewal before expiry) is one transaction: the old card is
locked for good with reason 8 (its authorizations answer 1011) and its successor is made: a new
PAN, expiry and CVC2 from the processor, ACTIVE at once when virtual, ORDERED (then personalized,
linked and activated like any physical card) when physical. If the processor fails, nothing
changed.

Renewal is a background job: ACTIVE cards whose expiry falls within the renewal window
(`antaca_auth.renewal`) are renewed, each in its own transaction. A virtual card keeps its PAN and
gets a new expiry and CVC2; a physical card gets a new order (a successor with reason RENEWAL)
and keeps working until that successor is activated, which retires it (reason 8).
"""

from __future__ import annotations

import logging
import uuid
from typing import Literal

import asyncpg

from antaca_api.balances import require_active
from antaca_api.cards import (
    CARD_COLUMNS,
    CARD_PROGRAM,
    INSERT_CARD,
    CardScope,
    change_state,
    find_card,
    find_visible_card,
    place_order,
    program_of,
    store_card_data,
)
from antaca_api.domain_errors import ProcessorFailure
from antaca_api.personalization import delivery_of
from antaca_api.processors import PROCESSORS, ProcessorError
from antaca_api.services import Services
from antaca_auth import cardstate
from antaca_auth.card_events import SYSTEM_ACTOR, record_event
from antaca_auth.cardstate import CARD_REPLACED_LOCK_REASON, CardState
from antaca_auth.periodic import every
from antaca_auth.renewal import RENEWAL_BATCH_SIZE_MAX, due_expiries

log = logging.getLogger(__name__)

ReplacementReason = Literal["LOST", "STOLEN", "DAMAGED", "RENEWAL"]
DeliveryMethod = Literal["COURIER", "POST"]
DEFAULT_DELIVERY_METHOD = "POST"

# ACTIVE cards due for renewal (expiry between $1 and $2, YYMM) that have no successor yet (one
# whose order failed does not count: the next pass orders again).
_DUE = """
    c.state = 'ACTIVE' AND c.expiry BETWEEN $1 AND $2
    AND NOT EXISTS (SELECT 1 FROM cards n
                    WHERE n.replaces_card_id = c.id AND n.state <> 'FAILED')"""
CARDS_DUE_FOR_RENEWAL = f"SELECT c.id FROM cards c WHERE {_DUE} ORDER BY c.expiry, c.seq LIMIT $3"
CARD_DUE_FOR_RENEWAL = f"""
    SELECT {CARD_COLUMNS} FROM cards c WHERE c.id = $3 AND {_DUE} FOR UPDATE OF c SKIP LOCKED"""
RENEW_VIRTUAL = """
    UPDATE cards SET expiry = $2, cvc_counter = cvc_counter + 1, updated_at = now() WHERE id = $1"""


async def _successor(services: Services, conn: asyncpg.Connection, old: asyncpg.Record,
                     reason: ReplacementReason, actor: str, *, delivery_method: str | None,
                     delivery_address: dict | None) -> asyncpg.Record:
    """Make the card that replaces `old`, in the caller's transaction; its row."""
    card_id = uuid.uuid4()
    program = await conn.fetchrow(CARD_PROGRAM, old["program_id"])
    physical = old["kind"] == "PHYSICAL"
    state = CardState.ORDERED if physical else CardState.PENDING
    address = delivery_address if delivery_address is not None else old["delivery_address"]
    await conn.execute(INSERT_CARD, card_id, old["program_id"], old["partner_id"],
                       old["balance_id"], old["customer_id"], old["corporation_id"], old["kind"],
                       str(state), old["name_on_card"], old["holder_name"],
                       address if physical else None, old["id"], reason, old["employee_id"])
    await record_event(conn, card_id, "CREATED", actor, None, state)
    try:
        if physical:
            if delivery_method is None:
                previous = await delivery_of(conn, old["id"])
                delivery_method = (DEFAULT_DELIVERY_METHOD if previous is None
                                   else previous["delivery_method"])
            await place_order(services, conn, card_id, program, name_on_card=old["name_on_card"],
                              delivery_address=address, delivery_method=delivery_method)
        else:
            await store_card_data(services, conn, card_id, program, CardState.ACTIVE)
            await record_event(conn, card_id, "GENERATED", actor, CardState.PENDING,
                               CardState.ACTIVE)
    except ProcessorError as exc:
        raise ProcessorFailure(f"the new card could not be made: {exc}") from None
    return await find_card(conn, card_id, CardScope(None))


async def replace_card(services: Services, card_id: uuid.UUID, scope: CardScope, *,
                       hide_ordered: bool, reason: ReplacementReason, actor: str,
                       delivery_method: DeliveryMethod | None = None,
                       delivery_address: dict | None = None) -> asyncpg.Record:
    """Replace a visible card, in one transaction: the old one locked for good (reason 8), a new
    one on the same balance for the same holder (for a physical card, at the old card's address
    and by its delivery method unless others are given). The new card's row."""
    async with services.pool.acquire() as conn, conn.transaction():
        seen = await find_visible_card(conn, card_id, scope, hide_ordered=hide_ordered)
        await require_active(conn, seen["balance_id"])  # balance before card, as issuing locks them
        old = await find_card(conn, card_id, CardScope(None), lock=True)
        await change_state(conn, old, cardstate.replaced, "REPLACED", actor,
                           CARD_REPLACED_LOCK_REASON)
        return await _successor(services, conn, old, reason, actor, delivery_method=delivery_method,
                                delivery_address=delivery_address)


async def _renew(services: Services, conn: asyncpg.Connection, card_id: uuid.UUID,
                 due: tuple[str, str]) -> bool:
    """Renew one card still due (in the caller's transaction); False when another pass has it or
    it is no longer due."""
    row = await conn.fetchrow(CARD_DUE_FOR_RENEWAL, due[0], due[1], card_id)
    if row is None:
        return False
    if row["kind"] == "PHYSICAL":
        await _successor(services, conn, row, "RENEWAL", SYSTEM_ACTOR, delivery_method=None,
                         delivery_address=None)
        await record_event(conn, card_id, "RENEWAL_ORDERED", SYSTEM_ACTOR, CardState.ACTIVE,
                           CardState.ACTIVE)
        return True
    program = await conn.fetchrow(CARD_PROGRAM, row["program_id"])
    try:
        expiry = await PROCESSORS[program["processor"]].renew_virtual(program_of(program), card_id,
                                                                      services.clock())
    except ProcessorError as exc:
        raise ProcessorFailure(f"the card could not be renewed: {exc}") from None
    await conn.execute(RENEW_VIRTUAL, card_id, expiry)
    await record_event(conn, card_id, "RENEWED", SYSTEM_ACTOR, CardState.ACTIVE, CardState.ACTIVE)
    return True


async def renew_expiring_cards(services: Services, window_days: int, *,
                               limit: int = RENEWAL_BATCH_SIZE_MAX) -> int:
    """One pass of the renewal job: renew up to `limit` cards expiring within `window_days`, each
    in its own transaction (a processor failure is logged and retried next pass); how many."""
    due = due_expiries(services.clock().date(), window_days)
    if due is None:
        return 0
    renewed = 0
    async with services.pool.acquire() as conn:
        for candidate in await conn.fetch(CARDS_DUE_FOR_RENEWAL, due[0], due[1], limit):
            try:
                async with conn.transaction():
                    renewed += await _renew(services, conn, candidate["id"], due)
            except ProcessorFailure as exc:
                log.warning("card renewal failed, retried next pass: %s", exc.message)
    return renewed


async def run_renewal(services: Services, interval: float, window_days: int) -> None:
    """Renew expiring cards every `interval` seconds until cancelled."""
    await every(interval, lambda: renew_expiring_cards(services, window_days),
                "card renewal pass (cards renewed)")
