"""What follows an authorization on the network channel: reversals (full or partial), clearings
(captures, within a tolerance above the hold) and force posts (a clearing without an authorization).

Each is one transaction that books the ledger transfers and records the network's message, so the
same message again returns the first answer.
"""

from __future__ import annotations

import uuid

import asyncpg
import msgspec

from antaca_auth import fees as pricing
from antaca_auth.cardkeys import CardKeys
from antaca_auth.ids import new_id
from antaca_auth.ledger import SELECT_TRANSFERS, Ledger, transfer_from_row
from antaca_auth.settlement import TransferCodes, settlement_account
from antaca_auth.thresholds import check_crossings
from antaca_auth.transfers import ResultCode, Transfer, TransferKind


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


AUTH_FOR_FOLLOW_UP = """
    SELECT a.id, a.amount, a.currency, a.type, a.deposit_hold_id, a.user_hold_id, a.fee_hold_id, a.card_id,
           a.billing_amount, a.fx_rate, a.fee_schedule_id, a.transaction_fee, a.conversion_fee, c.program_id,
           c.balance_id, p.currency AS program_currency
    FROM authorizations a
    JOIN cards c ON c.id = a.card_id
    JOIN card_programs p ON p.id = c.program_id
    WHERE a.network_id = $1 AND a.message_id = $2 AND a.decision = 'APPROVED' AND a.user_hold_id IS NOT NULL
    FOR UPDATE OF a"""


async def _recorded(conn: asyncpg.Connection, network_id: uuid.UUID, message_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, authorization_id, kind, amount FROM authorization_events WHERE network_id = $1 AND message_id = $2",
        network_id, message_id)


async def _record(conn, network_id, message_id, authorization_id, kind, amount, currency) -> uuid.UUID:
    event_id = new_id()
    await conn.execute(
        """INSERT INTO authorization_events (id, network_id, message_id, authorization_id, kind, amount, currency)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        event_id, network_id, message_id, authorization_id, kind, amount, currency)
    return event_id


async def _open_holds(conn: asyncpg.Connection, network_id: uuid.UUID, message_id: str, original_message_id: str):
    """(the earlier answer to this message, or None; the authorization, locked; its open holds by id)."""
    done = await _recorded(conn, network_id, message_id)
    if done is not None:
        return FollowUp(done["id"], done["authorization_id"], done["kind"], done["amount"], True), None, None
    auth = await conn.fetchrow(AUTH_FOR_FOLLOW_UP, network_id, original_message_id)
    if auth is None:
        raise AuthorizationNotFound()
    ids = [i for i in (auth["user_hold_id"], auth["deposit_hold_id"], auth["fee_hold_id"]) if i]
    holds = {t.id: t for t in map(transfer_from_row, await SELECT_TRANSFERS.fetch(conn, ids=ids))}
    return None, auth, holds


async def _book(conn: asyncpg.Connection, ledger: Ledger, batch: list[Transfer], what: str) -> None:
    """Write a follow-up's transfers; any refusal refuses the whole follow-up."""
    outcome = await ledger.write_batch(conn, batch)
    failed = [r.code for r in outcome.results if r.code is not ResultCode.OK]
    if failed:
        raise FollowUpRefused(f"{what}: {failed[0]}")


class _Pricing:
    """How a follow-up of an authorization converts amounts and recomputes its fees."""

    def __init__(self, auth: asyncpg.Record, schedule: pricing.FeeSchedule | None, exponents: dict[str, int]):
        self.auth, self.schedule, self.exponents = auth, schedule, exponents

    def billing(self, amount: int) -> int:
        """A network amount (the authorization's currency) in the balance's currency, at its rate."""
        a = self.auth
        if a["fx_rate"] is None:
            return amount
        if amount == a["amount"]:
            return a["billing_amount"]
        return pricing.convert(amount, self.exponents[a["currency"]], self.exponents[a["program_currency"]],
                               a["fx_rate"])

    def fees(self, billing: int) -> tuple[int, int]:
        """(transaction fee, conversion fee) on `billing`; a part waived or absent at authorization stays 0."""
        a = self.auth
        if self.schedule is None or a["transaction_fee"] + a["conversion_fee"] == 0:
            return 0, 0
        fee, conversion = pricing.transaction_fees(self.schedule, a["type"], billing, a["fx_rate"] is not None, {})
        return (fee if a["transaction_fee"] else 0), (conversion if a["conversion_fee"] else 0)


async def _pricing(conn: asyncpg.Connection, ledger: Ledger, auth: asyncpg.Record) -> _Pricing:
    schedule = None
    if auth["fee_schedule_id"] is not None:
        raw = await conn.fetchval("SELECT schedule FROM fee_schedules WHERE id = $1", auth["fee_schedule_id"])
        schedule = pricing.decode_schedule(raw)
    return _Pricing(auth, schedule, await ledger.currencies())


async def reverse(pool: asyncpg.Pool, ledger: Ledger, network_id: uuid.UUID, message_id: str,
                  original_message_id: str, amount: int | None, hold_seconds: int) -> FollowUp:
    """Release an authorization's hold, in full or in part (the rest, and its fee, stays held)."""
    async with pool.acquire() as conn, conn.transaction():
        replay, auth, holds = await _open_holds(conn, network_id, message_id, original_message_id)
        if replay is not None:
            return replay
        price = await _pricing(conn, ledger, auth)
        held = holds[auth["user_hold_id"]].amount
        released = held if amount is None else price.billing(amount)
        if amount is not None and auth["fx_rate"] is not None and released == held + 1:
            released = held  # the last piece of a converted amount reversed in parts: rounding
        if not 0 < released <= held:
            raise FollowUpRefused("the reversal is larger than what is held")
        rest = held - released
        new_amounts = {auth["deposit_hold_id"]: rest, auth["user_hold_id"]: rest}
        if auth["fee_hold_id"] is not None:
            new_amounts[auth["fee_hold_id"]] = min(sum(price.fees(rest)), holds[auth["fee_hold_id"]].amount)
        batch, new_ids = [], {}
        for hold_id in (auth["deposit_hold_id"], auth["user_hold_id"], auth["fee_hold_id"]):
            if hold_id is None:
                continue
            h = holds[hold_id]
            batch.append(Transfer(id=new_id(), kind=TransferKind.VOID_PENDING, pending_id=hold_id, code=h.code,
                                  linked=True))
            if new_amounts[hold_id] > 0:  # hold the rest again
                new_ids[hold_id] = new_id()
                batch.append(Transfer(id=new_ids[hold_id], kind=TransferKind.PENDING, code=h.code,
                                      debit_account_id=h.debit_account_id, credit_account_id=h.credit_account_id,
                                      amount=new_amounts[hold_id], currency=h.currency, timeout=hold_seconds,
                                      reference=h.reference, linked=True))
        batch[-1] = msgspec.structs.replace(batch[-1], linked=False)
        await _book(conn, ledger, batch, "the hold cannot be released")
        await conn.execute(
            "UPDATE authorizations SET user_hold_id = $2, deposit_hold_id = $3, fee_hold_id = $4 WHERE id = $1",
            auth["id"], new_ids.get(auth["user_hold_id"]), new_ids.get(auth["deposit_hold_id"]),
            new_ids.get(auth["fee_hold_id"]))
        # A full reversal names no amount: it is recorded as released, in the balance's currency.
        amount, currency = (released, auth["program_currency"]) if amount is None else (amount, auth["currency"])
        event_id = await _record(conn, network_id, message_id, auth["id"], "REVERSAL", amount, currency)
    return FollowUp(event_id, auth["id"], "REVERSAL", amount, False)


async def clear(pool: asyncpg.Pool, ledger: Ledger, network_id: uuid.UUID, message_id: str,
                original_message_id: str, amount: int, tolerance_percent: int) -> FollowUp:
    """Capture an authorization's hold and its fee: in part (the rest is released) or above it within the
    tolerance; the fees are recomputed on the captured amount and recorded as paid charges."""
    async with pool.acquire() as conn, conn.transaction():
        replay, auth, holds = await _open_holds(conn, network_id, message_id, original_message_id)
        if replay is not None:
            return replay
        price = await _pricing(conn, ledger, auth)
        held = holds[auth["user_hold_id"]].amount
        billing = price.billing(amount)
        limit = held + held * tolerance_percent // 100
        if not 0 < billing <= limit:
            raise FollowUpRefused(f"the clearing exceeds the hold plus the {tolerance_percent}% tolerance")
        fee, conversion = price.fees(billing)
        targets = {auth["deposit_hold_id"]: billing, auth["user_hold_id"]: billing}
        if auth["fee_hold_id"] is not None:
            targets[auth["fee_hold_id"]] = fee + conversion
        batch, paid_by = [], None
        for hold_id in (auth["deposit_hold_id"], auth["user_hold_id"], auth["fee_hold_id"]):
            if hold_id is None:
                continue
            h, target = holds[hold_id], targets[hold_id]
            if target == 0:
                batch.append(Transfer(id=new_id(), kind=TransferKind.VOID_PENDING, pending_id=hold_id, code=h.code,
                                      linked=True))
                continue
            batch.append(Transfer(id=new_id(), kind=TransferKind.POST_PENDING, pending_id=hold_id, code=h.code,
                                  amount=min(target, h.amount), linked=True))
            if hold_id == auth["fee_hold_id"]:
                paid_by = batch[-1].id
            if target > h.amount:  # the part above the hold moves at once, on the same accounts
                batch.append(Transfer(id=new_id(), code=h.code, debit_account_id=h.debit_account_id,
                                      credit_account_id=h.credit_account_id, amount=target - h.amount,
                                      currency=h.currency, reference=h.reference, linked=True))
        batch[-1] = msgspec.structs.replace(batch[-1], linked=False)
        await _book(conn, ledger, batch, "the clearing cannot be booked")
        await conn.execute(
            "UPDATE authorizations SET user_hold_id = NULL, deposit_hold_id = NULL, fee_hold_id = NULL WHERE id = $1",
            auth["id"])
        if paid_by is not None:
            await _record_fee_charges(conn, auth, paid_by, fee, conversion)
        if auth["deposit_hold_id"] is not None:
            await check_crossings(conn, [holds[auth["deposit_hold_id"]].debit_account_id])
        event_id = await _record(conn, network_id, message_id, auth["id"], "CLEARING", amount, auth["currency"])
    return FollowUp(event_id, auth["id"], "CLEARING", amount, False)


async def _record_fee_charges(conn: asyncpg.Connection, auth: asyncpg.Record, transfer_id: uuid.UUID, fee: int,
                              conversion: int) -> None:
    """The transaction and conversion fees a clearing posted, as paid charges (fee revenue reports)."""
    for fee_type, amount in ((pricing.TRANSACTION_FEES[auth["type"]], fee),
                             (pricing.FeeType.CURRENCY_CONVERSION, conversion)):
        if amount:
            await conn.execute(
                """INSERT INTO fee_charges (id, program_id, schedule_id, fee_type, cause, balance_id, card_id, amount,
                       currency, state, transfer_id, paid_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'PAID', $10, now())""",
                new_id(), auth["program_id"], auth["fee_schedule_id"], str(fee_type), f"authorization:{auth['id']}",
                auth["balance_id"], auth["card_id"], amount, auth["program_currency"], transfer_id)


FORCE_POST_CARD = """
    SELECT c.id AS card_id, p.currency, p.funding_model, b.account_id AS user_account, pa.account_id AS deposit
    FROM cards c JOIN card_programs p ON p.id = c.program_id JOIN balances b ON b.id = c.balance_id
    LEFT JOIN partner_accounts pa
           ON pa.partner_id = c.partner_id AND pa.currency = p.currency AND pa.kind = 'partner_deposit'
    WHERE c.pan_fingerprint = $1"""


async def force_post(pool: asyncpg.Pool, ledger: Ledger, keys: CardKeys, network_id: uuid.UUID, message_id: str,
                     pan: str, amount: int, currency: str) -> FollowUp:
    """Book a clearing that has no authorization (a force post) directly on the card's accounts."""
    async with pool.acquire() as conn, conn.transaction():
        done = await _recorded(conn, network_id, message_id)
        if done is not None:
            return FollowUp(done["id"], done["authorization_id"], done["kind"], done["amount"], True)
        card = await conn.fetchrow(FORCE_POST_CARD, keys.fingerprint(pan))
        if card is None:
            raise AuthorizationNotFound()
        if card["currency"] != currency:
            raise FollowUpRefused("the currency is not the card program's")
        settlement = settlement_account(currency)
        if card["funding_model"] == "DEPOSIT":
            if card["deposit"] is None:
                raise FollowUpRefused("the partner has no deposit balance")
            batch = [Transfer(id=new_id(), code=TransferCodes.DEPOSIT_HOLD, debit_account_id=card["deposit"],
                              credit_account_id=settlement, amount=amount, currency=currency,
                              reference=message_id[:256], linked=True),
                     Transfer(id=new_id(), code=TransferCodes.USER_HOLD, debit_account_id=card["user_account"],
                              credit_account_id=card["deposit"], amount=amount, currency=currency,
                              reference=message_id[:256])]
        else:
            batch = [Transfer(id=new_id(), code=TransferCodes.USER_HOLD, debit_account_id=card["user_account"],
                              credit_account_id=settlement, amount=amount, currency=currency,
                              reference=message_id[:256])]
        await _book(conn, ledger, batch, "the force post cannot be booked")
        if card["funding_model"] == "DEPOSIT":
            await check_crossings(conn, [card["deposit"]])
        event_id = await _record(conn, network_id, message_id, None, "FORCE_POST", amount, currency)
    return FollowUp(event_id, None, "FORCE_POST", amount, False)
