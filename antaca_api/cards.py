"""Cards: issuing, card data, and state changes (repository and orchestration).

Card data never leaves this module in clear except in the response to its holder's own,
JWE-protected request: the PAN is stored encrypted, CVC2 is derived, the PIN is a verification
value. State rules live in `antaca_auth.cardstate`; this module applies them under a row lock
and records every change as a card event.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
import msgspec

from antaca_api import pages
from antaca_api.balances import require_active
from antaca_api.domain_errors import (
    CARD_TRANSITION_ERRORS,
    CardDataUnavailable,
    CorporationNotApproved,
    CustomerNotVerified,
    InvalidPin,
    NotFound,
    ProcessorFailure,
    ProgramCurrencyMismatch,
    ProgramRequired,
    VirtualCardOnly,
)
from antaca_api.employees import employee_of
from antaca_api.processors import PROCESSORS, ProcessorError, Program
from antaca_api.services import Services
from antaca_auth import cardstate
from antaca_auth.card_events import SYSTEM_ACTOR, events_of, record_event
from antaca_auth.cardstate import (
    CARD_REPLACED_LOCK_REASON,
    CARD_TESTING_LOCK_REASONS,
    PIN_TRIES_LOCK_REASONS,
    CardState,
    CardStatus,
    CardTransitionError,
    pin_problem,
    usable_for_data,
)
from antaca_auth.charges import CARD_CREATION, charge_flat, refund_flat

log = logging.getLogger(__name__)

CARD_COLUMNS = """c.id, c.program_id, c.partner_id, c.balance_id, c.customer_id, c.corporation_id, c.kind, c.state,
    c.lock_reason, c.state_before_lock, c.pan_key_id, c.pan_ciphertext, c.bin, c.last4, c.expiry, c.cvc_counter,
    c.pin_salt, c.pin_verification, c.name_on_card, c.holder_name, c.processor_ref, c.failure_reason,
    c.created_at, c.updated_at, c.seq, c.employee_id, c.delivery_address, c.replaces_card_id,
    c.replacement_reason"""

PAN_ATTEMPTS = 5  # fresh PANs tried when one collides with an existing card's fingerprint


@dataclass(frozen=True)
class CardScope:
    """Whose cards a caller may touch: a partner's, one customer's of it, only its corporations'
    (`corporate`: the partner's corporate card routes), or (admins) any."""

    partner_id: uuid.UUID | None
    customer_id: uuid.UUID | None = None
    corporate: bool = False


@dataclass(frozen=True)
class CardSecrets:
    """Full card data, for the holder's own encrypted response only."""

    pan: str
    expiry: str  # YYMM
    cvc2: str


def status_of(row: asyncpg.Record) -> CardStatus:
    before = row["state_before_lock"]
    return CardStatus(CardState(row["state"]), row["lock_reason"], CardState(before) if before else None)


def program_of(row: asyncpg.Record) -> Program:
    return Program(id=row["id"], bin_prefix=row["bin_prefix"], pan_length=row["pan_length"],
                   validity_months=row["validity_months"], config=row["processor_config"])


async def find_card(conn: asyncpg.Connection, card_id: uuid.UUID, scope: CardScope, *, lock: bool = False) -> asyncpg.Record:
    """The card if the scope may see it; anything else is NOT_FOUND."""
    row = await conn.fetchrow(
        f"""SELECT {CARD_COLUMNS} FROM cards c
            WHERE c.id = $1 AND ($2::uuid IS NULL OR c.partner_id = $2) AND ($3::uuid IS NULL OR c.customer_id = $3)
              AND (NOT $4::boolean OR c.corporation_id IS NOT NULL)
            {"FOR UPDATE" if lock else ""}""",
        card_id, scope.partner_id, scope.customer_id, scope.corporate,
    )
    if row is None:
        raise NotFound("no such card")
    return row


async def change_state(conn: asyncpg.Connection, row: asyncpg.Record, rule: Callable[[CardStatus], CardStatus],
                       event: str, actor: str, reason: int | None = None) -> CardStatus:
    """Apply a state rule to a locked card row and record the event."""
    before = status_of(row)
    try:
        after = rule(before)
    except CardTransitionError as exc:
        raise CARD_TRANSITION_ERRORS[exc.code](exc.message) from None
    # Unlocking a card locked for PIN tries (6, or 11 offline) gives its holder the full tries
    # again: the count that locked it would otherwise lock it at the next wrong PIN.
    unlocked = before.state is CardState.LOCKED and after.state is not CardState.LOCKED
    pin_tries_unlocked = unlocked and before.lock_reason in PIN_TRIES_LOCK_REASONS
    card_testing_unlocked = unlocked and before.lock_reason in CARD_TESTING_LOCK_REASONS
    await conn.execute(
        """UPDATE cards SET state = $2, lock_reason = $3, state_before_lock = $4, updated_at = now(),
                            pin_failures = CASE WHEN $5 THEN 0 ELSE pin_failures END,
                            verification_failures = CASE WHEN $6 THEN 0 ELSE verification_failures END,
                            verification_window_start = CASE WHEN $6 THEN NULL
                                                             ELSE verification_window_start END
           WHERE id = $1""",
        row["id"], str(after.state), after.lock_reason,
        None if after.state_before_lock is None else str(after.state_before_lock), pin_tries_unlocked,
        card_testing_unlocked,
    )
    await record_event(conn, row["id"], event, actor, before.state, after.state, reason)
    return after


async def resolve_program(conn: asyncpg.Connection, partner_id: uuid.UUID, currency: str,
                          program_id: uuid.UUID | None) -> asyncpg.Record:
    """The card program to issue under: the one named, or the partner's only one in this currency."""
    if program_id is not None:
        row = await conn.fetchrow("SELECT * FROM card_programs WHERE id = $1 AND partner_id = $2", program_id, partner_id)
        if row is None:
            raise NotFound("no such card program")
        if row["currency"] != currency:
            raise ProgramCurrencyMismatch()
        return row
    rows = await conn.fetch("SELECT * FROM card_programs WHERE partner_id = $1 AND currency = $2", partner_id, currency)
    if len(rows) != 1:
        raise ProgramRequired()
    return rows[0]


INSERT_CARD = """
    INSERT INTO cards (id, program_id, partner_id, balance_id, customer_id, corporation_id, kind,
        state, name_on_card, holder_name, delivery_address, replaces_card_id, replacement_reason,
        employee_id)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $13, $14)"""


@dataclass(frozen=True)
class Holder:
    """Who a new card is for: a customer, or a corporation's employee."""

    partner_id: uuid.UUID
    customer_id: uuid.UUID | None = None
    corporation_id: uuid.UUID | None = None
    employee_id: uuid.UUID | None = None


async def _check_holder(conn: asyncpg.Connection, holder: Holder,
                        balance_id: uuid.UUID) -> tuple[asyncpg.Record, str | None]:
    """Lock the holder and its ACTIVE balance for the transaction; both must be in good standing.
    The balance and, for a corporate card, its employee's name."""
    holder_name = None
    if holder.customer_id is not None:
        status = await conn.fetchval(
            "SELECT kyc_status FROM customers WHERE id = $1 AND partner_id = $2 FOR SHARE",
            holder.customer_id, holder.partner_id,
        )
        if status is None:
            raise NotFound("no such customer")
        if status != "VERIFIED":
            raise CustomerNotVerified()
    else:
        status = await conn.fetchval(
            "SELECT kyb_status FROM corporations WHERE id = $1 AND partner_id = $2 FOR SHARE",
            holder.corporation_id, holder.partner_id,
        )
        if status is None:
            raise NotFound("no such corporation")
        if status != "APPROVED":
            raise CorporationNotApproved()
        holder_name = (await employee_of(conn, holder.corporation_id, holder.employee_id))["name"]
    balance = await conn.fetchrow(
        """SELECT id, currency FROM balances WHERE id = $1 AND partner_id = $2
           AND customer_id IS NOT DISTINCT FROM $3 AND corporation_id IS NOT DISTINCT FROM $4""",
        balance_id, holder.partner_id, holder.customer_id, holder.corporation_id,
    )
    if balance is None:
        raise NotFound("no such balance")
    await require_active(conn, balance_id)
    return balance, holder_name


async def start_card(services: Services, holder: Holder, balance_id: uuid.UUID, program_id: uuid.UUID | None,
                     kind: str, actor: str, *, name_on_card: str | None = None,
                     delivery_address: dict | None = None) -> tuple[uuid.UUID, asyncpg.Record]:
    """Record a new card, PENDING (virtual) or ORDERED (physical), under the holder's balance."""
    card_id = uuid.uuid4()
    state = CardState.PENDING if kind == "VIRTUAL" else CardState.ORDERED
    async with services.pool.acquire() as conn, conn.transaction():
        balance, holder_name = await _check_holder(conn, holder, balance_id)
        program = await resolve_program(conn, holder.partner_id, balance["currency"], program_id)
        await conn.execute(
            INSERT_CARD, card_id, program["id"], holder.partner_id, balance_id, holder.customer_id,
            holder.corporation_id, kind, str(state), name_on_card, holder_name,
            None if delivery_address is None else msgspec.json.encode(delivery_address).decode(),
            None, None, holder.employee_id)
        await record_event(conn, card_id, "CREATED", actor, None, state)
        await charge_flat(conn, services.ledger, program_id=program["id"], fee_type=CARD_CREATION[kind],
                          cause=f"card:{card_id}", balance_id=balance_id, account_id=balance_id,
                          currency=balance["currency"], card_id=card_id, at=services.clock())
    return card_id, program


async def store_card_data(services: Services, conn: asyncpg.Connection, card_id: uuid.UUID, program: asyncpg.Record,
                           target: CardState) -> CardSecrets:
    """Have the processor generate card data and store it protected; retries on a PAN collision."""
    processor = PROCESSORS[program["processor"]]
    keys = services.card_keys
    for _ in range(PAN_ATTEMPTS):
        generated = await processor.generate_card(program_of(program), card_id, services.clock())
        key_id, sealed = keys.encrypt_pan(card_id, generated.pan)
        try:
            async with conn.transaction():
                await conn.execute(
                    """UPDATE cards SET pan_key_id = $2, pan_ciphertext = $3, pan_fingerprint = $4, bin = $5,
                           last4 = $6, expiry = $7, state = $8, updated_at = now()
                       WHERE id = $1""",
                    card_id, key_id, sealed, keys.fingerprint(generated.pan), generated.pan[:6],
                    generated.pan[-4:], generated.expiry, str(target),
                )
        except asyncpg.UniqueViolationError:
            continue  # another card has this PAN: draw again
        return CardSecrets(generated.pan, generated.expiry, keys.cvc2(generated.pan, generated.expiry, 0))
    raise ProcessorError("no unused PAN could be drawn from the BIN range")


async def fail_card(services: Services, conn: asyncpg.Connection, card_id: uuid.UUID, expected: CardState,
                    event: str, reason: str, actor: str) -> None:
    """Mark a card still in `expected` (PENDING or ORDERED) as FAILED with its reason, in its own transaction;
    its creation fee is given back."""
    async with conn.transaction():
        failed = await conn.fetchval(
            "UPDATE cards SET state = 'FAILED', failure_reason = $3, updated_at = now() "
            "WHERE id = $1 AND state = $2 RETURNING id",
            card_id, str(expected), reason,
        )
        if failed is not None:
            await record_event(conn, card_id, event, actor, expected, CardState.FAILED)
            kind = await conn.fetchval("SELECT kind FROM cards WHERE id = $1", card_id)
            await refund_flat(conn, services.ledger, CARD_CREATION[kind], f"card:{card_id}")


async def complete_virtual(services: Services, card_id: uuid.UUID, program: asyncpg.Record, actor: str) -> CardSecrets:
    """Generate a PENDING virtual card's data: ACTIVE with all its data, or FAILED with a reason."""
    async with services.pool.acquire() as conn:
        try:
            async with conn.transaction():
                row = await conn.fetchrow(f"SELECT {CARD_COLUMNS} FROM cards c WHERE c.id = $1 FOR UPDATE", card_id)
                if CardState(row["state"]) is not CardState.PENDING:
                    raise CardDataUnavailable("the card is no longer pending")
                secrets = await store_card_data(services, conn, card_id, program, CardState.ACTIVE)
                await record_event(conn, card_id, "GENERATED", actor, CardState.PENDING, CardState.ACTIVE)
                return secrets
        except ProcessorError as exc:
            await fail_card(services, conn, card_id, CardState.PENDING, "GENERATION_FAILED", str(exc), actor)
            raise ProcessorFailure(f"card generation failed: {exc}") from None


async def complete_virtual_in_background(services: Services, card_id: uuid.UUID, program: asyncpg.Record,
                                         actor: str) -> None:
    try:
        await complete_virtual(services, card_id, program, actor)
    except ProcessorFailure:
        pass  # recorded on the card as FAILED with its reason
    except Exception:
        log.exception("asynchronous card generation crashed; the card stays PENDING for the recovery job")


async def resume_pending(services: Services) -> int:
    """Finish virtual cards left PENDING by a restart; returns how many were picked up."""
    rows = await services.pool.fetch(
        "SELECT id, program_id FROM cards WHERE state = 'PENDING' AND updated_at < now() - interval '30 seconds'"
    )
    for r in rows:
        program = await services.pool.fetchrow("SELECT * FROM card_programs WHERE id = $1", r["program_id"])
        await complete_virtual_in_background(services, r["id"], program, SYSTEM_ACTOR)
    return len(rows)


def card_secrets(services: Services, row: asyncpg.Record) -> CardSecrets:
    """Decrypt a card's PAN and derive its current CVC2 (holder's own request only)."""
    if not usable_for_data(status_of(row)) or row["pan_ciphertext"] is None:
        raise CardDataUnavailable()
    keys = services.card_keys
    pan = keys.decrypt_pan(row["id"], row["pan_key_id"], row["pan_ciphertext"])
    return CardSecrets(pan, row["expiry"], keys.cvc2(pan, row["expiry"], row["cvc_counter"]))


async def reset_cvv(conn: asyncpg.Connection, row: asyncpg.Record, actor: str) -> None:
    """A new CVC2 for a virtual card: the counter moves, so the previous CVC2 stops matching at once."""
    if row["kind"] != "VIRTUAL":
        raise VirtualCardOnly()
    if not usable_for_data(status_of(row)):
        raise CardDataUnavailable()
    await conn.execute("UPDATE cards SET cvc_counter = cvc_counter + 1, updated_at = now() WHERE id = $1", row["id"])
    state = CardState(row["state"])
    await record_event(conn, row["id"], "CVV_RESET", actor, state, state)


async def set_pin(services: Services, conn: asyncpg.Connection, row: asyncpg.Record, pin: str, actor: str,
                  *, at_order: bool = False) -> None:
    """Store a PIN's verification value (never the PIN) and tell the processor."""
    problem = pin_problem(pin)
    if problem is not None:
        raise InvalidPin(problem)
    if not (usable_for_data(status_of(row)) or (at_order and row["state"] == CardState.ORDERED)):
        raise CardDataUnavailable()
    salt, value = services.card_keys.new_pin_record(row["id"], pin)
    await conn.execute(
        "UPDATE cards SET pin_salt = $2, pin_verification = $3, pin_failures = 0, updated_at = now() WHERE id = $1",
        row["id"], salt, value,
    )
    program = await conn.fetchrow("SELECT * FROM card_programs WHERE id = $1", row["program_id"])
    await PROCESSORS[program["processor"]].set_pin(program_of(program), row["id"])
    state = CardState(row["state"])
    await record_event(conn, row["id"], "PIN_SET", actor, state, state)


# The partner filter is written unlike find_card's, so that each check is its own mutation target.
KNOWN_CUSTOMER = "SELECT 1 FROM customers WHERE id = $1 AND (partner_id = $2 OR $2::uuid IS NULL)"
CUSTOMER_CARDS = f"""
    SELECT {CARD_COLUMNS} FROM cards c
    WHERE c.customer_id = $1 AND (c.partner_id = $2 OR $2::uuid IS NULL)
      AND c.state <> ALL($3::text[]) AND c.seq > $4
    ORDER BY c.seq LIMIT $5"""
# The partner's cards, its customers' and its corporations' alike, in issue order.
PARTNER_CARDS = f"""
    SELECT {CARD_COLUMNS} FROM cards c
    WHERE c.partner_id = $1 AND c.state <> 'REMOVED' AND c.seq > $2
    ORDER BY c.seq LIMIT $3"""
CARD_PAGES = pages.Keyset("cards", tuple[int])
CARD_BY_FINGERPRINT = f"SELECT {CARD_COLUMNS} FROM cards c WHERE c.pan_fingerprint = $1 FOR UPDATE"
CORPORATION_CARDS = f"""
    SELECT {CARD_COLUMNS} FROM cards c
    WHERE c.corporation_id = $1 AND c.partner_id = $2 AND c.state <> 'REMOVED' AND c.seq > $3
    ORDER BY c.seq LIMIT $4"""
BALANCE_CARDS = f"""
    SELECT {CARD_COLUMNS} FROM cards c
    WHERE c.balance_id = $1 AND c.partner_id = $2 AND c.state <> 'REMOVED' AND c.seq > $3
    ORDER BY c.seq LIMIT $4"""
SET_PROCESSOR_REFERENCE = "UPDATE cards SET processor_ref = $2 WHERE id = $1"
CARD_PROGRAM = "SELECT * FROM card_programs WHERE id = $1"


async def customer_cards(conn: asyncpg.Connection, customer_id: uuid.UUID,
                         partner_id: uuid.UUID | None, hidden: list[str], *,
                         check_customer: bool, page: pages.PageRequest) -> list[asyncpg.Record]:
    """A customer's cards in issue order, leaving out the `hidden` states; with `check_customer`,
    an unknown customer (or, given a partner, another partner's) is NOT_FOUND."""
    # An empty list would answer for customers that are not the caller's to ask about.
    if check_customer and await conn.fetchval(KNOWN_CUSTOMER, customer_id, partner_id) is None:
        raise NotFound("no such customer")
    after = page.after[0] if page.after else 0
    return await conn.fetch(CUSTOMER_CARDS, customer_id, partner_id, hidden, after, page.fetch)


async def partner_cards(conn: asyncpg.Connection, partner_id: uuid.UUID,
                        page: pages.PageRequest) -> list[asyncpg.Record]:
    """A page of the partner's cards (customers' and corporations'), REMOVED ones left out."""
    after = page.after[0] if page.after else 0
    return await conn.fetch(PARTNER_CARDS, partner_id, after, page.fetch)


async def corporation_cards(conn: asyncpg.Connection, corporation_id: uuid.UUID,
                            partner_id: uuid.UUID, *, after: int,
                            limit: int) -> list[asyncpg.Record]:
    """A corporation's cards the caller has checked it may list, removed ones left out, in issue
    order after the cursor `after`."""
    return await conn.fetch(CORPORATION_CARDS, corporation_id, partner_id, after, limit)


async def balance_cards(conn: asyncpg.Connection, balance_id: uuid.UUID, partner_id: uuid.UUID,
                        *, after: int, limit: int) -> list[asyncpg.Record]:
    """The cards under a balance the caller has checked it may see, removed ones left out, in
    issue order after the cursor `after`."""
    return await conn.fetch(BALANCE_CARDS, balance_id, partner_id, after, limit)


async def find_visible_card(conn: asyncpg.Connection, card_id: uuid.UUID, scope: CardScope, *,
                            hide_ordered: bool, lock: bool = False) -> asyncpg.Record:
    """find_card, and with `hide_ordered` (the app) an ORDERED card is NOT_FOUND too."""
    row = await find_card(conn, card_id, scope, lock=lock)
    if hide_ordered and row["state"] == CardState.ORDERED:
        raise NotFound("no such card")  # not the user's until the processor's report links it
    return row


async def issue_virtual(services: Services, holder: Holder, balance_id: uuid.UUID,
                        program_id: uuid.UUID | None,
                        actor: str) -> tuple[asyncpg.Record, CardSecrets]:
    """Issue a virtual card, ACTIVE with its data: its row and its data."""
    card_id, program = await start_card(services, holder, balance_id, program_id, "VIRTUAL", actor)
    secrets = await complete_virtual(services, card_id, program, actor)
    async with services.pool.acquire() as conn:
        row = await find_card(conn, card_id, CardScope(None))
    return row, secrets


async def issue_virtual_in_background(services: Services, holder: Holder, balance_id: uuid.UUID,
                                      program_id: uuid.UUID | None, actor: str) -> uuid.UUID:
    """Record a PENDING virtual card and generate its data in the background; its id."""
    card_id, program = await start_card(services, holder, balance_id, program_id, "VIRTUAL", actor)
    services.spawn(complete_virtual_in_background(services, card_id, program, actor))
    return card_id


async def place_order(services: Services, conn: asyncpg.Connection, card_id: uuid.UUID,
                      program: asyncpg.Record, *, name_on_card: str, delivery_address: dict,
                      delivery_method: str) -> None:
    """Generate an ORDERED card's data, order it from its processor and record the order, in the
    caller's transaction (ProcessorError when the processor refuses)."""
    # Imported here: personalization imports this module.
    from antaca_api.personalization import record_order

    await store_card_data(services, conn, card_id, program, CardState.ORDERED)
    reference = await PROCESSORS[program["processor"]].order_physical(
        program_of(program), card_id, name_on_card, delivery_address, services.clock(),
        delivery_method=delivery_method)
    await conn.execute(SET_PROCESSOR_REFERENCE, card_id, reference)
    await record_order(conn, card_id, reference, services, delivery_method)


async def order_physical(services: Services, holder: Holder, balance_id: uuid.UUID,
                         program_id: uuid.UUID | None, actor: str, *, name_on_card: str,
                         delivery_address: dict, delivery_method: str = "POST",
                         pin: str | None = None) -> asyncpg.Record:
    """Order a physical card from its processor (ORDERED, or FAILED with the reason); its row."""
    card_id, program = await start_card(services, holder, balance_id, program_id, "PHYSICAL", actor,
                                        name_on_card=name_on_card,
                                        delivery_address=delivery_address)
    async with services.pool.acquire() as conn:
        try:
            async with conn.transaction():
                await find_card(conn, card_id, CardScope(None), lock=True)
                await place_order(services, conn, card_id, program, name_on_card=name_on_card,
                                  delivery_address=delivery_address,
                                  delivery_method=delivery_method)
                if pin is not None:
                    row = await find_card(conn, card_id, CardScope(None), lock=True)
                    await set_pin(services, conn, row, pin, actor, at_order=True)
        except ProcessorError as exc:
            await fail_card(services, conn, card_id, CardState.ORDERED, "ORDER_FAILED", str(exc),
                            actor)
        except BaseException:
            # Never leave an ORDERED card without data or order behind: it fails visibly instead.
            await fail_card(services, conn, card_id, CardState.ORDERED, "ORDER_FAILED",
                            "internal error", actor)
            raise
        return await find_card(conn, card_id, CardScope(None))


async def transition(conn: asyncpg.Connection, card_id: uuid.UUID, scope: CardScope, *,
                     hide_ordered: bool, rule: Callable[[CardStatus], CardStatus], event: str,
                     actor: str, reason: int | None = None) -> asyncpg.Record:
    """Apply a state rule to a visible card, in the caller's transaction (an activation is told
    to the processor); the card's new row."""
    row = await find_visible_card(conn, card_id, scope, hide_ordered=hide_ordered, lock=True)
    await change_state(conn, row, rule, event, actor, reason)
    if event == "ACTIVATED":
        program = await conn.fetchrow(CARD_PROGRAM, row["program_id"])
        await PROCESSORS[program["processor"]].activate(program_of(program), row["id"])
    return await find_card(conn, row["id"], CardScope(None))


async def retire_predecessor(conn: asyncpg.Connection, card_id: uuid.UUID, actor: str) -> None:
    """Lock for good (reason 8) the card an activated successor replaces, unless something already
    ended it (a replacement locked it at once; a renewal leaves it working until now)."""
    row = await find_card(conn, card_id, CardScope(None), lock=True)
    ended = (row["state"] in (CardState.REMOVED, CardState.FAILED)
             or row["lock_reason"] == CARD_REPLACED_LOCK_REASON)
    if not ended:
        await change_state(conn, row, cardstate.replaced, "REPLACED", actor,
                           CARD_REPLACED_LOCK_REASON)


async def activate_card(services: Services, conn: asyncpg.Connection, card_id: uuid.UUID,
                        scope: CardScope, *, hide_ordered: bool, actor: str,
                        pin: str | None = None) -> asyncpg.Record:
    """Activate a linked card and, when given, set its PIN in the same transaction (the caller's);
    the card it replaces, if any, is retired. The card's new row."""
    problem = None if pin is None else pin_problem(pin)
    if problem is not None:
        raise InvalidPin(problem)
    row = await transition(conn, card_id, scope, hide_ordered=hide_ordered, rule=cardstate.activate,
                           event="ACTIVATED", actor=actor)
    if row["replaces_card_id"] is not None:
        await retire_predecessor(conn, row["replaces_card_id"], actor)
    if pin is None:
        return row
    await set_pin(services, conn, row, pin, actor)
    return await find_card(conn, card_id, CardScope(None))


async def reset_visible_cvv(conn: asyncpg.Connection, card_id: uuid.UUID, scope: CardScope, *,
                            hide_ordered: bool, actor: str) -> asyncpg.Record:
    """reset_cvv on a visible card, in the caller's transaction; the card's new row."""
    row = await find_visible_card(conn, card_id, scope, hide_ordered=hide_ordered, lock=True)
    await reset_cvv(conn, row, actor)
    return await find_card(conn, row["id"], CardScope(None))


async def set_visible_pin(services: Services, conn: asyncpg.Connection, card_id: uuid.UUID,
                          scope: CardScope, *, hide_ordered: bool, pin: str, actor: str) -> None:
    """set_pin on a visible card, in the caller's transaction."""
    row = await find_visible_card(conn, card_id, scope, hide_ordered=hide_ordered, lock=True)
    await set_pin(services, conn, row, pin, actor)


async def network_lock(conn: asyncpg.Connection, fingerprint: str, reason: int,
                       actor: str) -> CardStatus:
    """Lock the card with this PAN fingerprint for a card network, in the caller's transaction."""
    row = await conn.fetchrow(CARD_BY_FINGERPRINT, fingerprint)
    if row is None:
        raise NotFound("no such card")
    return await change_state(conn, row, lambda status: cardstate.lock(status, reason), "LOCKED",
                              actor, reason)


async def card_events(conn: asyncpg.Connection | asyncpg.Pool,
                      card_id: uuid.UUID) -> list[asyncpg.Record]:
    """Every state change of a card, oldest first; an unknown card is NOT_FOUND."""
    rows = await events_of(conn, card_id)
    if not rows:
        raise NotFound("no such card")
    return rows


CARD_PARTNER = "SELECT partner_id FROM cards WHERE id = $1"


async def partner_of_card(conn: asyncpg.Connection, card_id: uuid.UUID) -> uuid.UUID | None:
    """The partner a card belongs to, or None for an unknown card."""
    return await conn.fetchval(CARD_PARTNER, card_id)


# The administration panel's card search: the last four digits and the expiry (YYMM) a caller
# reads out; a partner's staff member (partner_scope) finds only that partner's cards.
CARDS_BY_LAST_FOUR = f"""
    SELECT {CARD_COLUMNS} FROM cards c
    WHERE c.last4 = $1 AND c.expiry = $2 AND ($3::uuid IS NULL OR c.partner_id = $3)
    ORDER BY c.created_at, c.id LIMIT $4"""
card_matches_max = 50


async def cards_by_last_four(conn: asyncpg.Connection | asyncpg.Pool, last_four: str,
                             expiry_yymm: str, partner_scope: uuid.UUID | None
                             ) -> list[asyncpg.Record]:
    """The cards (at most card_matches_max) ending in `last_four` that expire in `expiry_yymm`."""
    return await conn.fetch(CARDS_BY_LAST_FOUR, last_four, expiry_yymm, partner_scope,
                            card_matches_max)
