"""What follows an authorization on the network channel: reversals (full or partial), clearings
(captures, within a tolerance above the hold) and force posts (a clearing without an
authorization).

Each is one transaction that books the ledger transfers and records the network's message in
`authorization_events` (this module owns that table), so the same message again returns the first
answer. The transaction first takes a lock on the message's key, so copies of one message sent at
once wait for the first and then answer what it recorded; it then locks the authorization row, so
different follow-ups of one authorization run one after another (docs/authorization.md, lock
order). A refused follow-up records nothing: sent again, it is decided afresh.

The arithmetic (how much to release and hold again, what each hold is cleared at, the tolerance)
is in pure functions below the SQL; `FollowUps` loads, calls them and writes.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from typing import NamedTuple

import asyncpg
import msgspec

from antaca_auth import events, velocity
from antaca_auth import fees as pricing
from antaca_auth.cardkeys import CardKeys
from antaca_auth.charges import record_paid
from antaca_auth.control_rules import CounterKey, counted_keys
from antaca_auth.ids import new_id
from antaca_auth.ledger import SELECT_TRANSFERS, Ledger, transfer_from_row
from antaca_auth.query import Query
from antaca_auth.settlement import TransferCodes, settlement_account
from antaca_auth.thresholds import check_crossings
from antaca_auth.transfers import MAX_REFERENCE, ResultCode, StoredTransfer, Transfer, TransferKind

PERCENT = 100
MESSAGE_LOCK_KEY_BYTES = 8  # PostgreSQL advisory lock keys are one bigint
# Personalizes the message-lock hash, so its keys follow no other advisory lock's scheme.
MESSAGE_LOCK_PERSONALIZATION = b"antaca:followup"


class AuthorizationNotFound(Exception):
    """No approved authorization with that message id for this network."""


class FollowUpRefused(Exception):
    """A reversal or clearing that the authorization's holds cannot take (the reason says why)."""


class FollowUp(msgspec.Struct, frozen=True, rename="camel"):
    event_id: uuid.UUID
    authorization_id: uuid.UUID | None
    kind: str
    amount: int
    replayed: bool


# --- SQL -------------------------------------------------------------------------------------
# Transaction-scoped: released at commit or rollback, so no path can leave it held on a pooled
# connection. Copies of a message wait for it holding their pool connection; the holder already
# has its own and takes no other (currencies are read before the transaction), so a pool full of
# waiters cannot stall it.
LOCK_MESSAGE = "SELECT pg_advisory_xact_lock($1)"

RECORDED_EVENT = Query("""
    SELECT id, authorization_id, kind, amount FROM authorization_events
    WHERE network_id = :network_id AND message_id = :message_id""")

INSERT_EVENT = Query("""
    INSERT INTO authorization_events
        (id, network_id, message_id, authorization_id, kind, amount, currency)
    VALUES (:id, :network_id, :message_id, :authorization_id, :kind, :amount, :currency)""")

AUTHORIZATION_FOR_FOLLOW_UP = """
    SELECT a.id, a.amount, a.currency, a.type, a.deposit_hold_id, a.user_hold_id, a.fee_hold_id,
           a.card_id, a.billing_amount, a.fx_rate, a.fee_schedule_id, a.transaction_fee,
           a.conversion_fee, c.program_id, c.balance_id, p.currency AS program_currency,
           a.velocity_periods, a.velocity_day
    FROM authorizations a
    JOIN cards c ON c.id = a.card_id
    JOIN card_programs p ON p.id = c.program_id
    WHERE a.network_id = $1 AND a.message_id = $2 AND a.decision = 'APPROVED'
      AND a.user_hold_id IS NOT NULL
    FOR UPDATE OF a"""

SET_HOLDS = Query("""
    UPDATE authorizations
    SET user_hold_id = :user_hold_id, deposit_hold_id = :deposit_hold_id, fee_hold_id = :fee_hold_id
    WHERE id = :id""")

FEE_SCHEDULE = "SELECT schedule FROM fee_schedules WHERE id = $1"


FORCE_POST_CARD = """
    SELECT c.id AS card_id, p.currency, p.funding_model,
           coalesce(p.remote_account_id, b.account_id) AS user_account,  -- REMOTE: the partner's
           pa.account_id AS deposit
    FROM cards c JOIN card_programs p ON p.id = c.program_id JOIN balances b ON b.id = c.balance_id
    LEFT JOIN partner_accounts pa
           ON pa.partner_id = c.partner_id AND pa.currency = p.currency
          AND pa.kind = 'partner_deposit'
    WHERE c.pan_fingerprint = $1"""


# --- pure decisions --------------------------------------------------------------------------
def message_lock_key(network_id: uuid.UUID, message_id: str) -> int:
    """The advisory lock key of a network's message: a signed 64-bit hash (PostgreSQL's bigint).

    Two messages whose keys collide only wait for each other: each then looks up its own answer
    by the exact (network, message)."""
    digest = hashlib.blake2b(network_id.bytes + message_id.encode(),
                             digest_size=MESSAGE_LOCK_KEY_BYTES,
                             person=MESSAGE_LOCK_PERSONALIZATION).digest()
    return int.from_bytes(digest, "big", signed=True)


class HoldIds(NamedTuple):
    """An authorization's open holds; the deposit's (DEPOSIT model only) and the fee's may be
    absent."""

    deposit: uuid.UUID | None
    user: uuid.UUID
    fee: uuid.UUID | None

    def in_booking_order(self) -> list[uuid.UUID]:
        return [i for i in (self.deposit, self.user, self.fee) if i is not None]


class Release(NamedTuple):
    released: int
    rest: int  # still held after the reversal


def decide_release(held: int, requested: int | None, converted: bool) -> Release:
    """How much of the user's hold (`held`) a reversal releases, and what stays held.

    `requested` is the reversal's amount in the balance's currency (None: the whole hold). Parts
    of a converted amount are each rounded, so the last part may come to one more than is left:
    it releases what is left."""
    if held <= 0:
        raise ValueError(f"a hold is positive, not {held}")
    if requested is None or (converted and requested == held + 1):
        released = held
    else:
        released = requested
    if not 0 < released <= held:
        raise FollowUpRefused("the reversal is larger than what is held")
    return Release(released, held - released)


def rehold_amounts(holds: HoldIds, rest: int, fee_on_rest: int,
                   fee_held: int) -> dict[uuid.UUID, int]:
    """What each hold is held at again after a reversal (0: released entirely). The fee is the
    fee of what stays, never more than was held for it, and nothing when nothing stays (a fixed
    fee or a minimum priced on 0 would otherwise keep the fee held after a full reversal)."""
    if rest < 0 or fee_on_rest < 0 or fee_held < 0:
        raise ValueError(f"holding {rest} again with fees of {fee_on_rest} (held {fee_held})")
    amounts = {holds.user: rest}
    if holds.deposit is not None:
        amounts[holds.deposit] = rest
    if holds.fee is not None:
        amounts[holds.fee] = min(fee_on_rest, fee_held) if rest else 0
    return amounts


def reversal_deltas(auth: asyncpg.Record | dict,
                    release: Release) -> dict[CounterKey, tuple[int, int]]:
    """What a reversal gives back to the velocity counters its authorization was counted in:
    the amount released, and the payment itself once nothing of it stays held."""
    keys = counted_keys(auth["velocity_periods"], auth["card_id"], auth["balance_id"],
                        auth["velocity_day"])
    back = (-release.released, -1 if release.rest == 0 else 0)
    return dict.fromkeys(keys, back)


def clearing_limit(held: int, tolerance_percent: int) -> int:
    """The most a clearing of `held` may capture: the hold plus the tolerance, rounded down."""
    return held + held * tolerance_percent // PERCENT


def check_clearing(billing: int, held: int, tolerance_percent: int) -> None:
    """Refuse a clearing (in the balance's currency) of nothing, or above the tolerance."""
    if billing <= 0:
        raise FollowUpRefused("the clearing comes to nothing in the balance's currency")
    if billing > clearing_limit(held, tolerance_percent):
        raise FollowUpRefused(
            f"the clearing exceeds the hold plus the {tolerance_percent}% tolerance")


def clearing_targets(holds: HoldIds, billing: int, fee_total: int) -> dict[uuid.UUID, int]:
    """What each hold is captured at (0: voided): the payment on the user's and the deposit's
    holds, the fees recomputed on it on the fee hold."""
    if billing <= 0 or fee_total < 0:
        raise ValueError(f"a clearing of {billing} with fees of {fee_total}")
    targets = {holds.user: billing}
    if holds.deposit is not None:
        targets[holds.deposit] = billing
    if holds.fee is not None:
        targets[holds.fee] = fee_total
    return targets


def _chain(batch: list[Transfer]) -> list[Transfer]:
    """The batch as one linked chain: all of it is booked, or none."""
    linked = [msgspec.structs.replace(t, linked=True) for t in batch]
    linked[-1] = msgspec.structs.replace(linked[-1], linked=False)
    return linked


IdFactory = Callable[[], uuid.UUID]


def _void(hold: StoredTransfer, make_id: IdFactory) -> Transfer:
    return Transfer(id=make_id(), kind=TransferKind.VOID_PENDING, pending_id=hold.id,
                    code=hold.code)


def reversal_transfers(holds: list[StoredTransfer], amounts: dict[uuid.UUID, int],
                       hold_seconds: int, make_id: IdFactory = new_id,
                       ) -> tuple[list[Transfer], dict[uuid.UUID, uuid.UUID]]:
    """Void each hold and hold its new amount again on the same accounts (a hold cannot shrink);
    (the linked chain, the new hold's id by the old one's)."""
    batch, new_ids = [], {}
    for h in holds:
        batch.append(_void(h, make_id))
        if amounts[h.id] > 0:
            new_ids[h.id] = make_id()
            batch.append(Transfer(
                id=new_ids[h.id], kind=TransferKind.PENDING, code=h.code,
                debit_account_id=h.debit_account_id, credit_account_id=h.credit_account_id,
                amount=amounts[h.id], currency=h.currency, timeout=hold_seconds,
                reference=h.reference))
    return _chain(batch), new_ids


def clearing_transfers(holds: list[StoredTransfer], targets: dict[uuid.UUID, int],
                       make_id: IdFactory = new_id,
                       ) -> tuple[list[Transfer], dict[uuid.UUID, uuid.UUID]]:
    """Post each hold at its target (void it at 0); the part of a target above its hold moves at
    once on the same accounts. (The linked chain, each posted hold's post id.)"""
    batch, posts = [], {}
    for h in holds:
        target = targets[h.id]
        if target == 0:
            batch.append(_void(h, make_id))
            continue
        posts[h.id] = make_id()
        batch.append(Transfer(id=posts[h.id], kind=TransferKind.POST_PENDING, pending_id=h.id,
                              code=h.code, amount=min(target, h.amount)))
        if target > h.amount:
            batch.append(Transfer(
                id=make_id(), code=h.code, debit_account_id=h.debit_account_id,
                credit_account_id=h.credit_account_id, amount=target - h.amount,
                currency=h.currency, reference=h.reference))
    return _chain(batch), posts


def force_post_transfers(card: asyncpg.Record | dict, message_id: str, amount: int, currency: str,
                         make_id: IdFactory = new_id) -> list[Transfer]:
    """A force post booked at once: DEPOSIT, the deposit pays the network and the user's money
    repays the deposit; CREDIT, the user's money pays the network."""
    settlement, reference = settlement_account(currency), message_id[:MAX_REFERENCE]
    user = card["user_account"]
    if card["funding_model"] != "DEPOSIT":
        return [Transfer(id=make_id(), code=TransferCodes.USER_HOLD, debit_account_id=user,
                         credit_account_id=settlement, amount=amount, currency=currency,
                         reference=reference)]
    deposit = card["deposit"]
    if deposit is None:
        raise FollowUpRefused("the partner has no deposit balance")
    return _chain([
        Transfer(id=make_id(), code=TransferCodes.DEPOSIT_HOLD, debit_account_id=deposit,
                 credit_account_id=settlement, amount=amount, currency=currency,
                 reference=reference),
        Transfer(id=make_id(), code=TransferCodes.USER_HOLD, debit_account_id=user,
                 credit_account_id=deposit, amount=amount, currency=currency,
                 reference=reference)])


class Pricing:
    """How a follow-up of an authorization converts amounts and recomputes its fees (pure)."""

    def __init__(self, authorization: asyncpg.Record | dict, schedule: pricing.FeeSchedule | None,
                 exponents: dict[str, int]) -> None:
        self.authorization, self.schedule, self.exponents = authorization, schedule, exponents

    @property
    def converted(self) -> bool:
        return self.authorization["fx_rate"] is not None

    def billing(self, amount: int) -> int:
        """A network amount (the authorization's currency) in the balance's currency, at its
        rate."""
        a = self.authorization
        if not self.converted:
            return amount
        if amount == a["amount"]:
            return a["billing_amount"]
        return pricing.convert(amount, self.exponents[a["currency"]],
                               self.exponents[a["program_currency"]], a["fx_rate"])

    def fees(self, billing: int) -> tuple[int, int]:
        """(transaction fee, conversion fee) on `billing`; a part waived or absent at authorization
        stays 0."""
        a = self.authorization
        if self.schedule is None or a["transaction_fee"] + a["conversion_fee"] == 0:
            return 0, 0
        fee, conversion = pricing.transaction_fees(self.schedule, a["type"], billing,
                                                   self.converted, {})
        return (fee if a["transaction_fee"] else 0), (conversion if a["conversion_fee"] else 0)


# --- load, decide, write ---------------------------------------------------------------------
class FollowUps:
    """The network channel's reversals, clearings and force posts; built once per process."""

    def __init__(self, pool: asyncpg.Pool, ledger: Ledger, keys: CardKeys, *, hold_seconds: int,
                 clearing_tolerance_percent: int) -> None:
        if hold_seconds <= 0:
            raise ValueError(f"holds need a positive timeout, not {hold_seconds} seconds")
        if clearing_tolerance_percent < 0:
            raise ValueError(f"a negative clearing tolerance ({clearing_tolerance_percent}%)")
        self.pool, self.ledger, self.keys = pool, ledger, keys
        self.hold_seconds = hold_seconds  # the timeout of what a partial reversal holds again
        self.clearing_tolerance_percent = clearing_tolerance_percent  # above the hold (tips, fuel)

    async def reverse(self, network_id: uuid.UUID, message_id: str, original_message_id: str,
                      amount: int | None) -> FollowUp:
        """Release an authorization's hold, in full or in part (the rest, and its fee, stays
        held)."""
        # Before the transaction: on a cold cache this takes a second pool connection, which a
        # holder of the message lock must never wait for (its copies may hold all the others).
        exponents = await self.ledger.currencies()
        async with self.pool.acquire() as conn, conn.transaction():
            earlier = await _claim(conn, network_id, message_id)
            if earlier is not None:
                return earlier
            auth, hold_ids, holds = await _open_authorization(conn, network_id,
                                                              original_message_id)
            price = Pricing(auth, await _schedule(conn, auth), exponents)
            requested = None if amount is None else price.billing(amount)
            release = decide_release(holds[hold_ids.user].amount, requested, price.converted)
            fee_held = 0 if hold_ids.fee is None else holds[hold_ids.fee].amount
            fee_on_rest = sum(price.fees(release.rest))
            amounts = rehold_amounts(hold_ids, release.rest, fee_on_rest, fee_held)
            batch, new_ids = reversal_transfers(_in_order(holds, hold_ids), amounts,
                                                self.hold_seconds)
            if auth["velocity_periods"]:  # before the ledger: the engine's lock order
                await velocity.add(conn, reversal_deltas(auth, release))
            await self._book(conn, batch, "the hold cannot be released")
            await SET_HOLDS.execute(conn, id=auth["id"], user_hold_id=new_ids.get(hold_ids.user),
                                    deposit_hold_id=new_ids.get(hold_ids.deposit),
                                    fee_hold_id=new_ids.get(hold_ids.fee))
            # A full reversal names no amount: it is recorded as released, in the balance's
            # currency.
            if amount is None:
                recorded, currency = release.released, auth["program_currency"]
            else:
                recorded, currency = amount, auth["currency"]
            event_id = await _record(conn, network_id, message_id, auth["id"], "REVERSAL",
                                     recorded, currency, auth["card_id"])
        return FollowUp(event_id, auth["id"], "REVERSAL", recorded, False)

    async def clear(self, network_id: uuid.UUID, message_id: str, original_message_id: str,
                    amount: int) -> FollowUp:
        """Capture an authorization's hold and its fee: in part (the rest is released) or above it
        within the tolerance; the fees are recomputed on the captured amount and recorded as paid
        charges."""
        # Before the transaction: on a cold cache this takes a second pool connection, which a
        # holder of the message lock must never wait for (its copies may hold all the others).
        exponents = await self.ledger.currencies()
        async with self.pool.acquire() as conn, conn.transaction():
            earlier = await _claim(conn, network_id, message_id)
            if earlier is not None:
                return earlier
            auth, hold_ids, holds = await _open_authorization(conn, network_id,
                                                              original_message_id)
            price = Pricing(auth, await _schedule(conn, auth), exponents)
            billing = price.billing(amount)
            check_clearing(billing, holds[hold_ids.user].amount, self.clearing_tolerance_percent)
            fee, conversion = price.fees(billing)
            targets = clearing_targets(hold_ids, billing, fee + conversion)
            batch, posts = clearing_transfers(_in_order(holds, hold_ids), targets)
            await self._book(conn, batch, "the clearing cannot be booked")
            await SET_HOLDS.execute(conn, id=auth["id"], user_hold_id=None, deposit_hold_id=None,
                                    fee_hold_id=None)
            if hold_ids.fee is not None and hold_ids.fee in posts:
                await _record_fee_charges(conn, auth, posts[hold_ids.fee], fee, conversion)
            if hold_ids.deposit is not None:
                await check_crossings(conn, [holds[hold_ids.deposit].debit_account_id])
            event_id = await _record(conn, network_id, message_id, auth["id"], "CLEARING", amount,
                                     auth["currency"], auth["card_id"])
        return FollowUp(event_id, auth["id"], "CLEARING", amount, False)

    async def force_post(self, network_id: uuid.UUID, message_id: str, pan: str, amount: int,
                         currency: str) -> FollowUp:
        """Book a clearing that has no authorization (a force post) directly on the card's
        accounts."""
        fingerprint = self.keys.fingerprint(pan)
        async with self.pool.acquire() as conn, conn.transaction():
            earlier = await _claim(conn, network_id, message_id)
            if earlier is not None:
                return earlier
            card = await conn.fetchrow(FORCE_POST_CARD, fingerprint)
            if card is None:
                raise AuthorizationNotFound()
            if card["currency"] != currency:
                raise FollowUpRefused("the currency is not the card program's")
            await self._book(conn, force_post_transfers(card, message_id, amount, currency),
                             "the force post cannot be booked")
            if card["funding_model"] == "DEPOSIT":
                await check_crossings(conn, [card["deposit"]])
            event_id = await _record(conn, network_id, message_id, None, "FORCE_POST", amount,
                                     currency, card["card_id"])
        return FollowUp(event_id, None, "FORCE_POST", amount, False)

    async def _book(self, conn: asyncpg.Connection, batch: list[Transfer], what: str) -> None:
        """Write a follow-up's transfers; any refusal refuses the whole follow-up."""
        outcome = await self.ledger.write_batch(conn, batch)
        failed = [r.code for r in outcome.results if r.code is not ResultCode.OK]
        if failed:
            raise FollowUpRefused(f"{what}: {failed[0]}")


async def _claim(conn: asyncpg.Connection, network_id: uuid.UUID,
                 message_id: str) -> FollowUp | None:
    """Take the message's lock, first in the transaction, then return the answer recorded for it
    (a replay), or None: this transaction decides it.

    Without the lock, copies sent at once all found no answer, and all but the first then failed
    on the unique (network, message) or on the hold the first had already moved. With it, a copy
    waits until the first commits or rolls back and then reads what it recorded (READ COMMITTED:
    each statement sees what committed before it began)."""
    await conn.execute(LOCK_MESSAGE, message_lock_key(network_id, message_id))
    done = await RECORDED_EVENT.fetchrow(conn, network_id=network_id, message_id=message_id)
    if done is None:
        return None
    return FollowUp(done["id"], done["authorization_id"], done["kind"], done["amount"], True)


async def _open_authorization(conn: asyncpg.Connection, network_id: uuid.UUID,
                              original_message_id: str,
                              ) -> tuple[asyncpg.Record, HoldIds, dict[uuid.UUID, StoredTransfer]]:
    """The approved authorization with an open hold, locked; its hold ids; its holds by id."""
    auth = await conn.fetchrow(AUTHORIZATION_FOR_FOLLOW_UP, network_id, original_message_id)
    if auth is None:
        raise AuthorizationNotFound()
    hold_ids = HoldIds(auth["deposit_hold_id"], auth["user_hold_id"], auth["fee_hold_id"])
    rows = await SELECT_TRANSFERS.fetch(conn, ids=hold_ids.in_booking_order())
    holds = {t.id: t for t in map(transfer_from_row, rows)}
    missing = set(hold_ids.in_booking_order()) - holds.keys()
    if missing:  # the authorization row and the ledger disagree: book nothing
        raise LookupError(f"authorization {auth['id']} names holds the ledger lacks: {missing}")
    return auth, hold_ids, holds


def _in_order(holds: dict[uuid.UUID, StoredTransfer], hold_ids: HoldIds) -> list[StoredTransfer]:
    return [holds[i] for i in hold_ids.in_booking_order()]


async def _schedule(conn: asyncpg.Connection,
                    auth: asyncpg.Record) -> pricing.FeeSchedule | None:
    """The fee schedule version the authorization was priced with (None: no fees)."""
    if auth["fee_schedule_id"] is None:
        return None
    return pricing.decode_schedule(await conn.fetchval(FEE_SCHEDULE, auth["fee_schedule_id"]))


async def _record(conn: asyncpg.Connection, network_id: uuid.UUID, message_id: str,
                  authorization_id: uuid.UUID | None, kind: str, amount: int,
                  currency: str, card_id: uuid.UUID) -> uuid.UUID:
    event_id = new_id()
    await INSERT_EVENT.execute(conn, id=event_id, network_id=network_id, message_id=message_id,
                               authorization_id=authorization_id, kind=kind, amount=amount,
                               currency=currency)
    # The partner's event: about the authorization, or the card for a force post (it has none).
    await events.record_for_card(conn, card_id, events.FOLLOW_UP_TYPES[kind],
                                 authorization_id or card_id, {
                                     "followUpId": str(event_id), "kind": kind,
                                     "authorizationId": authorization_id and str(authorization_id),
                                     "amount": amount, "currency": currency})
    return event_id


async def _record_fee_charges(conn: asyncpg.Connection, auth: asyncpg.Record,
                              transfer_id: uuid.UUID, fee: int, conversion: int) -> None:
    """The transaction and conversion fees a clearing posted, as paid charges (fee revenue
    reports)."""
    for fee_type, amount in ((pricing.TRANSACTION_FEES[auth["type"]], fee),
                             (pricing.FeeType.CURRENCY_CONVERSION, conversion)):
        if amount:
            await record_paid(
                conn, charge=new_id(), program_id=auth["program_id"],
                schedule_id=auth["fee_schedule_id"], fee_type=fee_type,
                cause=f"authorization:{auth['id']}", balance_id=auth["balance_id"],
                card_id=auth["card_id"], amount=amount, currency=auth["program_currency"],
                transfer_id=transfer_id)
