"""Card programs: created for a partner, read by administrators."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import msgspec

from antaca_api import pages, webhooks
from antaca_api.domain_errors import InvalidProgram, NotFound
from antaca_api.partners import check_exists as check_partner_exists
from antaca_auth import authorization_settings
from antaca_auth.accounts import AccountKind, NewAccount
from antaca_auth.authorization_settings import StandInMode
from antaca_auth.cardkeys import CardKeys
from antaca_auth.invariants import require
from antaca_auth.ledger import Ledger

INSERT_PROGRAM = """
    INSERT INTO card_programs (id, partner_id, name, bin_prefix, pan_length, currency, processor,
        funding_model, validity_months, processor_config, remote_deadline_ms, remote_endpoint_id,
        remote_account_id)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12, $13) RETURNING *"""
# A REMOTE program's partner account (antaca_auth/accounts.py PARTNER_REMOTE): one per program.
REMOTE_ACCOUNT_NAMESPACE = uuid.UUID("9d3c1f0e-52a7-4b8e-8f21-6e0b7c4d2a95")


@dataclass(frozen=True)
class RemoteSetup:
    """A REMOTE program's partner call: its URL (checked like a webhook target) and deadline."""

    url: str
    deadline_ms: int


def remote_account(program_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(REMOTE_ACCOUNT_NAMESPACE, str(program_id))
ALL_PROGRAMS = """
    SELECT * FROM card_programs
    WHERE ($1::uuid IS NULL OR partner_id = $1)
      AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3::uuid))
    ORDER BY created_at, id LIMIT $4"""
PROGRAM_PAGES = pages.Keyset("programs", tuple[datetime, uuid.UUID])  # (created_at, id)
PROGRAM = "SELECT * FROM card_programs WHERE id = $1"


async def create(conn: asyncpg.Connection, program_id: uuid.UUID, partner_id: uuid.UUID, *,
                 name: str, bin_prefix: str, pan_length: int, currency: str, processor: str,
                 funding_model: str, validity_months: int,
                 processor_config: dict, remote: RemoteSetup | None = None,
                 ledger: Ledger | None = None,
                 keys: CardKeys | None = None) -> tuple[asyncpg.Record, str | None]:
    """Record the partner's card program, in the caller's transaction; with it, for a REMOTE
    program, its advice endpoint and partner REMOTE account. The row, and the REMOTE program's
    signing secret (shown this once)."""
    await check_partner_exists(conn, partner_id)
    if (funding_model == "REMOTE") != (remote is not None):
        raise InvalidProgram("a REMOTE program needs remoteUrl, and only a REMOTE program has one")
    endpoint_id = account_id = secret = deadline_ms = None
    if remote is not None:
        require(ledger is not None and keys is not None,
                "a REMOTE program needs its ledger and keys")
        account_id, deadline_ms = remote_account(program_id), remote.deadline_ms
        await ledger.create_accounts_in(conn, [NewAccount(
            id=account_id, currency=currency, kind=AccountKind.PARTNER_REMOTE,
            owner_ref=f"partner_remote:{program_id}")])
        endpoint_id, secret = await webhooks.create_advice_endpoint(conn, keys, partner_id,
                                                                    program_id, remote.url)
    row = await conn.fetchrow(INSERT_PROGRAM, program_id, partner_id, name, bin_prefix, pan_length,
                              currency, processor, funding_model, validity_months,
                              msgspec.json.encode(processor_config).decode(), deadline_ms,
                              endpoint_id, account_id)
    return row, secret


async def all_programs(pool: asyncpg.Pool, page: pages.PageRequest,
                       partner_scope: uuid.UUID | None = None) -> list[asyncpg.Record]:
    """A page of every card program in creation order, or only those of the partner a staff
    member belongs to."""
    created_at, program_id = page.after or (None, None)
    return await pool.fetch(ALL_PROGRAMS, partner_scope, created_at, program_id, page.fetch)


async def find(pool: asyncpg.Pool, program_id: uuid.UUID) -> asyncpg.Record:
    row = await pool.fetchrow(PROGRAM, program_id)
    if row is None:
        raise NotFound("no such card program")
    return row


async def set_authorization_rules(conn: asyncpg.Connection, program_id: uuid.UUID,
                                  stand_in_mode: StandInMode, stand_in_limit: int,
                                  ecommerce_without_cvc2: bool) -> asyncpg.Record:
    """Set the program's stand-in rule and CVC2 requirement; the program's row after."""
    row = await authorization_settings.set_program_rules(
        conn, program_id, stand_in_mode, stand_in_limit, ecommerce_without_cvc2)
    if row is None:
        raise NotFound("no such card program")
    return row


PROGRAM_IN_CURRENCY = "SELECT 1 FROM card_programs WHERE partner_id = $1 AND currency = $2 LIMIT 1"
PROGRAM_PARTNER = "SELECT partner_id FROM card_programs WHERE id = $1"


async def has_program_in(conn: asyncpg.Connection, partner_id: uuid.UUID, currency: str) -> bool:
    """Whether the partner has a card program in this currency."""
    return await conn.fetchval(PROGRAM_IN_CURRENCY, partner_id, currency) is not None


async def partner_of_program(conn: asyncpg.Connection, program_id: uuid.UUID) -> uuid.UUID | None:
    """The partner a program belongs to, or None for an unknown program."""
    return await conn.fetchval(PROGRAM_PARTNER, program_id)
