"""Customer service on the admin channel: what a reviewer reads about a customer, composed from
the owning modules (customers, balances, card_transactions); no SQL of its own."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from antaca_api import card_transactions, pages
from antaca_api.balances import BALANCE_PAGES, customer_balances, customer_statement
from antaca_api.customers import admin_kyc_history, customer_in_scope
from antaca_auth.ledger import Ledger, Statement


@dataclass(frozen=True)
class CustomerFile:
    customer: asyncpg.Record
    kyc_history: list[asyncpg.Record]
    balances: list[asyncpg.Record]
    cards: dict[uuid.UUID, list[asyncpg.Record]]  # each balance's cards (removed ones too)


async def customer_file(conn: asyncpg.Connection, partner_scope: uuid.UUID | None,
                        customer_id: uuid.UUID) -> CustomerFile:
    """The customer with their KYC history, balances and cards, for a reviewer whose scope is
    `partner_scope` (None: every partner)."""
    customer = await customer_in_scope(conn, partner_scope, customer_id)
    # A customer holds a handful of balances: the file shows the first page's worth.
    first_page = pages.PageRequest(BALANCE_PAGES, pages.page_size_max, None)
    balances, cards = await customer_balances(conn, customer["partner_id"], customer_id, [],
                                              first_page)
    return CustomerFile(customer=customer, kyc_history=await admin_kyc_history(conn, customer_id),
                        balances=balances, cards=cards)


async def customer_transactions(conn: asyncpg.Connection, partner_scope: uuid.UUID | None,
                                customer_id: uuid.UUID,
                                page: pages.PageRequest) -> list[asyncpg.Record]:
    """A page of the customer's card authorizations with their reversals and clearings, oldest
    first."""
    customer = await customer_in_scope(conn, partner_scope, customer_id)
    return await card_transactions.for_customer(conn, customer["partner_id"], customer_id, page)


async def balance_statement(pool: asyncpg.Pool, ledger: Ledger, partner_scope: uuid.UUID | None,
                            customer_id: uuid.UUID, balance_id: uuid.UUID,
                            page: pages.PageRequest) -> tuple[asyncpg.Record, Statement]:
    """One of the customer's balances and a page of its ledger statement."""
    async with pool.acquire() as conn:
        customer = await customer_in_scope(conn, partner_scope, customer_id)
    return await customer_statement(pool, ledger, partner_id=customer["partner_id"],
                                    customer_id=customer_id, balance_id=balance_id, page=page)
