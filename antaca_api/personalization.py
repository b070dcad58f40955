"""The physical card job: follow each order at its processor, link the personalized card to its
holder, and track delivery. Idempotent and safe across restarts: every step is a guarded state
change on `card_orders` rows claimed with SKIP LOCKED."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import asyncpg

from antaca_api.cards import CARD_COLUMNS, change_state, program_of
from antaca_api.processors import PROCESSORS, OrderStatus
from antaca_api.services import Services
from antaca_auth.card_events import SYSTEM_ACTOR, record_event
from antaca_auth.cardstate import CardState, linked
from antaca_auth.periodic import every

log = logging.getLogger(__name__)

DUE_ORDERS = """
    SELECT o.card_id, o.processor_ref, o.status, o.attempts, p.*
    FROM card_orders o JOIN cards c ON c.id = o.card_id JOIN card_programs p ON p.id = c.program_id
    WHERE o.status IN ('ORDERED', 'LINKED', 'SHIPPED') AND o.next_check_at <= $1
    ORDER BY o.next_check_at LIMIT $2
    FOR UPDATE OF o SKIP LOCKED"""

# Order status reached by each report, for orders already linked.
DELIVERY = {OrderStatus.SHIPPED: "SHIPPED", OrderStatus.DELIVERED: "DELIVERED"}


INSERT_ORDER = """
    INSERT INTO card_orders (card_id, processor_ref, status, next_check_at, delivery_method)
    VALUES ($1, $2, 'ORDERED', $3, $4)"""

# A card's order and where it stands: what partner, customer and admin see of its delivery.
SELECT_DELIVERY = """
    SELECT o.card_id, o.delivery_method, o.status, o.updated_at, c.delivery_address
    FROM card_orders o JOIN cards c ON c.id = o.card_id WHERE o.card_id = $1"""


async def record_order(conn: asyncpg.Connection, card_id: uuid.UUID, processor_ref: str,
                       services: Services, delivery_method: str) -> None:
    await conn.execute(INSERT_ORDER, card_id, processor_ref, services.clock(), delivery_method)


async def delivery_of(conn: asyncpg.Connection, card_id: uuid.UUID) -> asyncpg.Record | None:
    """The card's physical order with its delivery method, address and tracking status, or None."""
    return await conn.fetchrow(SELECT_DELIVERY, card_id)


async def process_due_orders(services: Services, *, limit: int = 50, recheck_seconds: float = 30.0) -> int:
    """One pass over due orders; returns how many changed."""
    now = services.clock()
    changed = 0
    async with services.pool.acquire() as conn, conn.transaction():
        for order in await conn.fetch(DUE_ORDERS, now, limit):
            program = program_of(order)
            processor = PROCESSORS[order["processor"]]
            report = await processor.order_report(program, order["processor_ref"], now)
            status = order["status"]
            new_status = status
            if report.status is OrderStatus.FAILED and status == "ORDERED":
                card = await conn.fetchrow(f"SELECT {CARD_COLUMNS} FROM cards c WHERE c.id = $1 FOR UPDATE",
                                           order["card_id"])
                await conn.execute("UPDATE cards SET state = 'FAILED', failure_reason = $2, updated_at = now() "
                                   "WHERE id = $1 AND state = 'ORDERED'", order["card_id"], report.reason)
                if card["state"] == "ORDERED":
                    await record_event(conn, order["card_id"], "ORDER_FAILED", SYSTEM_ACTOR, CardState.ORDERED,
                                       CardState.FAILED)
                new_status = "FAILED"
            elif status == "ORDERED" and report.status is not OrderStatus.IN_PRODUCTION:
                await processor.link_card(program, order["processor_ref"], order["card_id"])
                card = await conn.fetchrow(f"SELECT {CARD_COLUMNS} FROM cards c WHERE c.id = $1 FOR UPDATE",
                                           order["card_id"])
                if card["state"] == "ORDERED":  # removed meanwhile: nothing to link
                    await change_state(conn, card, linked, "LINKED", SYSTEM_ACTOR)
                new_status = DELIVERY.get(report.status, "LINKED")
            elif status in ("LINKED", "SHIPPED") and report.status in DELIVERY:
                new_status = DELIVERY[report.status]
            await conn.execute(
                """UPDATE card_orders SET status = $2, attempts = attempts + 1, next_check_at = $3, updated_at = now()
                   WHERE card_id = $1""",
                order["card_id"], new_status, now + timedelta(seconds=recheck_seconds),
            )
            changed += new_status != status
    return changed


async def run_personalization(services: Services, interval: float) -> None:
    """Follow physical card orders every `interval` seconds until cancelled."""
    await every(interval, lambda: process_due_orders(services, recheck_seconds=interval),
                "physical card order pass (orders processed)")
