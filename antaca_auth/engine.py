"""The authorization engine: micro-batches of authorizations decided and written together.

Requests queue; a writer takes up to `max_batch` of them (waiting at most `max_wait` seconds for
more), reads their cards once, decides them in memory, writes every ledger transfer of the batch
through one `Ledger.write_batch` (each account, the hot partner deposit included, locked and
updated once per batch) and the authorization rows, commits, and only then answers each caller.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg
import msgspec

from antaca_auth import authorization as rules
from antaca_auth import fees as pricing
from antaca_auth.accounts import MAX_AMOUNT, AccountKind, NewAccount
from antaca_auth.activity import card_activity
from antaca_auth.authorization import AuthorizationRequest, CardFacts, Decline, TxType
from antaca_auth.cardkeys import CardKeys
from antaca_auth.cardstate import CardState
from antaca_auth.holds import NewTransfers
from antaca_auth.ids import new_id
from antaca_auth.ledger import Ledger, utc_now
from antaca_auth.rates import rates_in_force
from antaca_auth.thresholds import check_crossings
from antaca_auth.settlement import TransferCodes, settlement_account
from antaca_auth.transfers import ResultCode

log = logging.getLogger(__name__)
_OK = ResultCode.OK

class AuthorizationResult(msgspec.Struct, frozen=True, rename="camel"):
    authorization_id: uuid.UUID
    decision: str  # APPROVED or DECLINED
    response_code: str
    reason: str
    approved_amount: int
    action_code: str | None = None
    available_after: int | None = None
    billing_amount: int | None = None  # the amount in the balance's currency (converted when they differ)
    fee: int = 0  # transaction plus conversion fee, held with the amount


CARDS = """
    SELECT c.pan_fingerprint, c.id, c.state, c.lock_reason, c.expiry, c.cvc_counter, c.pin_salt,
           c.pin_verification, c.pin_failures, p.currency AS program_currency, p.funding_model,
           b.id AS balance_id, b.state AS balance_state, b.account_id AS user_account,
           pa.account_id AS deposit_account, c.program_id, fs.id AS fee_schedule_id,
           pa.low_balance_threshold IS NOT NULL AND NOT pa.below_threshold AS deposit_alert_armed
    FROM cards c
    JOIN card_programs p ON p.id = c.program_id
    JOIN balances b ON b.id = c.balance_id
    LEFT JOIN partner_accounts pa
           ON pa.partner_id = c.partner_id AND pa.currency = p.currency AND pa.kind = 'partner_deposit'
    LEFT JOIN LATERAL (
        SELECT id FROM fee_schedules WHERE program_id = c.program_id AND effective_from <= $2
        ORDER BY effective_from DESC LIMIT 1) fs ON true
    WHERE c.pan_fingerprint = ANY($1::text[])"""

# Cards whose PIN is tried are locked for the batch: their wrong-PIN count (and a lock on the
# third) must not be lost to a concurrent batch. Other cards are only read: a batch waiting on
# another's card locks until its commit would chain batches one behind the other (with 1,024
# payments in flight over 10,000 cards, nearly every batch shares a card with another one).
CARDS_LOCKED = CARDS + """
    ORDER BY c.id
    FOR UPDATE OF c"""

EXISTING = """
    SELECT a.message_id, a.id, a.decision, a.response_code, a.reason, a.approved_amount, a.action_code,
           coalesce(a.available_after, CASE WHEN a.type = 'REFUND'
                                            THEN t.cr_credits_posted - t.cr_debits_posted - t.cr_debits_pending
                                            ELSE t.dr_credits_posted - t.dr_debits_posted - t.dr_debits_pending END)
               AS available_after,
           a.billing_amount, a.transaction_fee + a.conversion_fee AS fee
    FROM unnest($2::text[]) AS m (message_id)
    CROSS JOIN LATERAL (
        SELECT * FROM authorizations a WHERE a.network_id = $1 AND a.message_id = m.message_id LIMIT 1) a
    LEFT JOIN transfers t ON t.id = a.answer_hold_id"""
# LATERAL with LIMIT: one index probe per message whatever the statistics say (a plain join, planned
# from stale row counts, hashed the network's whole history: 19 ms instead of 0.5 at 47k rows).

SCHEDULES = "SELECT id, schedule FROM fee_schedules WHERE id = ANY($1::uuid[])"

AUTHORIZATION_COLUMNS = (
    "id", "network_id", "message_id", "card_id", "balance_id", "type", "amount", "currency", "mcc", "merchant_id",
    "merchant_name", "merchant_country", "terminal_id", "decision", "response_code", "action_code", "reason",
    "approved_amount", "deposit_hold_id", "user_hold_id", "created_at", "billing_amount",
    "fx_rate", "fee_schedule_id", "transaction_fee", "conversion_fee", "fee_hold_id", "answer_hold_id",
)

# The rows written as approved that the ledger then declined (few: a batch's funds declines).
DECLINE = """
    UPDATE authorizations a
    SET decision = 'DECLINED', response_code = v.response_code, reason = v.reason, action_code = v.action_code,
        approved_amount = 0, billing_amount = NULL, fx_rate = NULL, transaction_fee = 0, conversion_fee = 0,
        deposit_hold_id = NULL, user_hold_id = NULL, fee_hold_id = NULL, answer_hold_id = NULL
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS v (id, response_code, reason, action_code)
    WHERE a.id = v.id"""


@dataclass
class _Pending:
    network_id: uuid.UUID
    request: AuthorizationRequest
    future: asyncio.Future


@dataclass
class _Row:
    """An authorization being decided: its answer and what to write for it."""

    item: _Pending
    id: uuid.UUID
    card: CardFacts | None
    decline: Decline | None = None
    # Indexes of this payment's transfers in the batch's NewTransfers (None: no such transfer).
    deposit_at: int | None = None
    user_at: int | None = None
    fee_at: int | None = None
    available_after: int | None = None
    replay_of: AuthorizationResult | None = None
    program_id: uuid.UUID | None = None
    schedule_id: uuid.UUID | None = None
    billing_amount: int | None = None
    fx_rate: Decimal | None = None
    transaction_fee: int = 0
    conversion_fee: int = 0


class AuthorizationEngine:
    """Decides authorizations in micro-batches; `authorize` answers only after its batch committed."""

    def __init__(self, pool: asyncpg.Pool, ledger: Ledger, keys: CardKeys, *, max_batch: int = 512,
                 max_wait: float = 0.001, writers: int = 4, hold_seconds: int = 7 * 86400,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.pool, self.ledger, self.keys = pool, ledger, keys
        self.max_batch, self.max_wait, self.hold_seconds, self.clock = max_batch, max_wait, hold_seconds, clock
        self.queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self.writers = writers
        self._tasks: list[asyncio.Task] = []
        self._settlements: set[str] = set()
        self._schedules: dict[uuid.UUID, pricing.FeeSchedule] = {}  # versions are immutable: cached for good

    async def start(self) -> None:
        # Every currency's settlement account up front: a payment converted into a program's currency
        # books on that currency's account even if no payment ever arrived in it.
        await self._ensure_settlement(set(await self.ledger.currencies()))
        self._tasks = [asyncio.create_task(self._writer()) for _ in range(self.writers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def authorize(self, network_id: uuid.UUID, request: AuthorizationRequest) -> AuthorizationResult:
        future = asyncio.get_running_loop().create_future()
        self.queue.put_nowait(_Pending(network_id, request, future))
        return await future

    async def _writer(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                try:
                    batch.append(self.queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), remaining))
                except TimeoutError:
                    break
            try:
                results = await self._decide_and_write(batch)
            except Exception as exc:  # the whole batch rolled back: nobody was approved
                log.exception("authorization batch of %d failed", len(batch))
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            for item, result in zip(batch, results, strict=True):
                if not item.future.done():
                    item.future.set_result(result)

    async def _decide_and_write(self, batch: list[_Pending]) -> list[AuthorizationResult]:
        await self._ensure_settlement({item.request.currency for item in batch})  # currencies added since start
        for attempt in range(20):
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    answers = await self._batch(conn, batch)
                return answers()  # committed
            except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError, asyncpg.UniqueViolationError):
                if attempt == 19:
                    raise
                await asyncio.sleep(0.001 * (attempt + 1))
        raise AssertionError("unreachable")

    async def _ensure_settlement(self, currencies: set[str]) -> None:
        """Create the settlement accounts of new currencies, committed on their own (idempotent)."""
        known = await self.ledger.currencies()
        missing = {c for c in currencies if c in known} - self._settlements
        if missing:
            await self.ledger.create_accounts([
                NewAccount(id=settlement_account(c), currency=c, kind=AccountKind.NETWORK_SETTLEMENT,
                           owner_ref=f"settlement:{c}") for c in sorted(missing)])
            self._settlements |= missing

    async def _batch(self, conn: asyncpg.Connection, batch: list[_Pending]) -> Callable[[], list[AuthorizationResult]]:
        now = self.clock()
        today = now.date()
        by_network: dict[uuid.UUID, list[str]] = {}
        for item in batch:
            by_network.setdefault(item.network_id, []).append(item.request.message_id)
        existing: dict[tuple[uuid.UUID, str], AuthorizationResult] = {}
        for network_id, message_ids in by_network.items():
            for r in await conn.fetch(EXISTING, network_id, message_ids):
                existing[(network_id, r["message_id"])] = AuthorizationResult(
                    r["id"], r["decision"], r["response_code"], r["reason"], r["approved_amount"], r["action_code"],
                    r["available_after"], r["billing_amount"], r["fee"])
        fingerprints = {item.request.pan: self.keys.fingerprint(item.request.pan) for item in batch}
        with_pin = {fingerprints[item.request.pan] for item in batch if item.request.pin is not None}
        cards = {r["pan_fingerprint"]: r for r in await conn.fetch(CARDS, list(set(fingerprints.values()) - with_pin),
                                                                   now)}
        if with_pin:
            cards.update((r["pan_fingerprint"], r) for r in await conn.fetch(CARDS_LOCKED, list(with_pin), now))
        await self._load_schedules(conn, {r["fee_schedule_id"] for r in cards.values()} - {None})
        pairs, need_facts = set(), set()
        for item in batch:
            record = cards.get(fingerprints[item.request.pan])
            if record is None:
                continue
            if item.request.currency != record["program_currency"]:
                pairs.add((item.request.currency, record["program_currency"]))
            if pricing.needs_facts(self._schedules.get(record["fee_schedule_id"]), item.request.type):
                need_facts.add(record["id"])
        rates = await rates_in_force(conn, pairs, now)
        facts = await card_activity(conn, need_facts, *pricing.previous_period(pricing.Period.MONTHLY, today))
        exponents = await self.ledger.currencies()

        rows: list[_Row] = []
        first: dict[tuple[uuid.UUID, str], _Row] = {}
        pin_updates: dict[uuid.UUID, tuple[int, bool]] = {}
        holds = NewTransfers()
        for item in batch:
            key = (item.network_id, item.request.message_id)
            if key in existing:
                rows.append(_Row(item, existing[key].authorization_id, None, replay_of=existing[key]))
                continue
            if key in first:  # the same message twice in one batch: one decision
                rows.append(_Row(item, first[key].id, None, replay_of=None))
                rows[-1].decline = first[key].decline
                continue
            record = cards.get(fingerprints[item.request.pan])
            card = None if record is None else CardFacts(
                card_id=record["id"], state=CardState(record["state"]), lock_reason=record["lock_reason"],
                expiry=record["expiry"], cvc_counter=record["cvc_counter"], pin_salt=record["pin_salt"],
                pin_verification=record["pin_verification"],
                pin_failures=pin_updates.get(record["id"], (record["pin_failures"], False))[0],
                program_currency=record["program_currency"], funding_model=record["funding_model"],
                balance_id=record["balance_id"], balance_state=record["balance_state"],
                user_account=record["user_account"], deposit_account=record["deposit_account"])
            row = _Row(item, new_id(), card, program_id=record and record["program_id"],
                       schedule_id=record and record["fee_schedule_id"])
            rows.append(row)
            first[key] = row
            if card is not None and pin_updates.get(card.card_id, (0, False))[1]:
                row.decline = rules.locked(6)  # locked by a third wrong PIN earlier in this batch
                continue
            check = rules.check_card(item.request, card, self.keys, today, rates)
            if card is not None and check.pin_failures != card.pin_failures:
                pin_updates[card.card_id] = (check.pin_failures, check.lock_now)
            if check.lock_now:
                row.decline = check.decline
                continue
            if check.decline is not None:
                row.decline = check.decline
                continue
            self._price(row, rates, exponents, facts.get(card.card_id, {}))
            if row.decline is None:
                self._holds(row, holds)

        # Written before the ledger: the hot deposit's lock, taken by the ledger write and held to the
        # commit, then covers only the ledger's own work and the few rows the ledger declines.
        await self._update_cards(conn, pin_updates)
        await self._insert(conn, [r for r in rows if r.replay_of is None and first.get(
            (r.item.network_id, r.item.request.message_id)) is r], holds.ids, now)
        results = await self.ledger.write_new(conn, holds)
        # Partner deposits charged whose low-balance alert is armed get the crossing check (a latch
        # already set, or no threshold, needs no statement at all).
        armed = {r["deposit_account"]: r["deposit_alert_armed"] for r in cards.values()}
        if not any(armed.values()) and all(r[0] is _OK for r in results):
            # Every hold written and no alert to check: nothing more belongs in the transaction, whose
            # commit releases the hot deposit's lock. The answers are worked out once it is committed.
            def answers() -> list[AuthorizationResult]:
                self._settle(rows, results, holds, armed)
                return [self._answer(r, first) for r in rows]

            return answers
        declined, touched = self._settle(rows, results, holds, armed)
        if declined:
            await conn.execute(DECLINE, [r.id for r in declined], [r.decline.response_code for r in declined],
                               [r.decline.reason for r in declined], [r.decline.action_code for r in declined])
        await check_crossings(conn, touched)
        return lambda: [self._answer(r, first) for r in rows]

    @staticmethod
    def _settle(rows: list[_Row], results: list[tuple[ResultCode, int, int]], holds: NewTransfers,
                armed: dict) -> tuple[list[_Row], set[uuid.UUID]]:
        """Each payment's outcome from its transfers' results: (the rows the ledger declined, the armed
        partner deposits charged)."""
        touched: set[uuid.UUID] = set()
        declined: list[_Row] = []
        for row in rows:
            if row.replay_of is not None or row.decline is not None or row.user_at is None:
                continue
            user = results[row.user_at]
            last = results[row.fee_at if row.fee_at is not None else row.user_at]  # the chain's last on the user
            if row.deposit_at is not None and (deposit := results[row.deposit_at])[0] is not _OK:
                row.decline = rules.INSUFFICIENT_DEPOSIT if deposit[0] is ResultCode.EXCEEDS_CREDITS else (
                    rules.INSUFFICIENT_FUNDS if ResultCode.EXCEEDS_CREDITS in (user[0], last[0])
                    else rules.INVALID_AMOUNT)
            elif user[0] is not _OK or last[0] is not _OK:
                row.decline = rules.INSUFFICIENT_FUNDS if {user[0], last[0]} <= {
                    _OK, ResultCode.EXCEEDS_CREDITS, ResultCode.LINKED_EVENT_FAILED} else rules.INVALID_AMOUNT
            if row.item.request.type is TxType.REFUND:
                row.available_after = user[2] if user[0] is _OK else None
            else:
                row.available_after = last[1] if last[0] is _OK else None
            if row.decline is not None:
                row.deposit_at = row.user_at = row.fee_at = None
                declined.append(row)
            elif row.deposit_at is not None and armed.get(holds.debits[row.deposit_at]):
                touched.add(holds.debits[row.deposit_at])
        return declined, touched

    async def _load_schedules(self, conn: asyncpg.Connection, ids: set[uuid.UUID]) -> None:
        missing = [i for i in ids if i not in self._schedules]
        if missing:
            for r in await conn.fetch(SCHEDULES, missing):
                self._schedules[r["id"]] = pricing.decode_schedule(r["schedule"])

    def _price(self, row: _Row, rates: dict, exponents: dict[str, int], facts: dict) -> None:
        """The amount in the balance's currency and the fees held with it (or a decline)."""
        request, card = row.item.request, row.card
        billing = request.amount
        if request.currency != card.program_currency:
            row.fx_rate = rates[(request.currency, card.program_currency)]
            billing = pricing.convert(request.amount, exponents[request.currency],
                                      exponents[card.program_currency], row.fx_rate)
        row.billing_amount = billing
        row.transaction_fee, row.conversion_fee = pricing.transaction_fees(
            self._schedules.get(row.schedule_id), request.type, billing, row.fx_rate is not None, facts)
        if not 0 < billing <= MAX_AMOUNT or row.transaction_fee + row.conversion_fee > MAX_AMOUNT:
            row.decline = rules.INVALID_AMOUNT

    def _holds(self, row: _Row, holds: NewTransfers) -> None:
        """Add the ledger transfers of an approvable authorization, one linked chain: the partner deposit
        charge (DEPOSIT model), the hold on the user's balance, and the hold of its fees."""
        request, card = row.item.request, row.card
        currency, amount, reference = card.program_currency, row.billing_amount, request.message_id[:256]
        settlement = settlement_account(currency)
        if request.type is TxType.REFUND:
            row.user_at = holds.add(TransferCodes.REFUND, settlement, card.user_account, amount, currency,
                                    pending=False, reference=reference)
            return
        deposit = card.deposit_account
        if card.funding_model == "DEPOSIT":
            if deposit is None:
                row.decline = rules.INSUFFICIENT_DEPOSIT
                return
            row.deposit_at = holds.add(TransferCodes.DEPOSIT_HOLD, deposit, settlement, amount, currency,
                                       pending=True, timeout=self.hold_seconds, reference=reference, linked=True)
        row.user_at = holds.add(TransferCodes.USER_HOLD, card.user_account,
                                deposit if card.funding_model == "DEPOSIT" else settlement, amount, currency,
                                pending=True, timeout=self.hold_seconds, reference=reference)
        fee = row.transaction_fee + row.conversion_fee
        if fee:
            holds.link(row.user_at)
            row.fee_at = holds.add(TransferCodes.FEE, card.user_account,
                                   pricing.fee_revenue_account(row.program_id, currency), fee, currency,
                                   pending=True, timeout=self.hold_seconds, reference=reference)

    async def _update_cards(self, conn: asyncpg.Connection, updates: dict[uuid.UUID, tuple[int, bool]]) -> None:
        for card_id, (failures, lock_now) in updates.items():
            if lock_now:
                await conn.execute(
                    """UPDATE cards SET pin_failures = $2, state = 'LOCKED', lock_reason = 6,
                           state_before_lock = state, updated_at = now() WHERE id = $1 AND state = 'ACTIVE'""",
                    card_id, failures)
                await conn.execute(
                    """INSERT INTO card_events (card_id, event, actor, from_state, to_state, reason)
                       VALUES ($1, 'LOCKED', 'system', 'ACTIVE', 'LOCKED', 6)""", card_id)
            else:
                await conn.execute("UPDATE cards SET pin_failures = $2 WHERE id = $1", card_id, failures)

    async def _insert(self, conn: asyncpg.Connection, rows: list[_Row], hold_ids: list[uuid.UUID],
                      now: datetime) -> None:
        """Store every authorization of the batch with one binary COPY, as decided before the ledger."""
        records = []
        for row in rows:
            q, d, card = row.item.request, row.decline, row.card
            records.append((
                row.id, row.item.network_id, q.message_id, card.card_id if card else None,
                card.balance_id if card else None, str(q.type), q.amount, q.currency, q.mcc, q.merchant_id,
                q.merchant_name, q.merchant_country, q.terminal_id, "DECLINED" if d else "APPROVED",
                d.response_code if d else "00", d.action_code if d else None, d.reason if d else "APPROVED",
                0 if d else q.amount, None if row.deposit_at is None else hold_ids[row.deposit_at],
                None if row.user_at is None else hold_ids[row.user_at], now, None if d else row.billing_amount,
                None if d else row.fx_rate, row.schedule_id, 0 if d else row.transaction_fee,
                0 if d else row.conversion_fee, None if row.fee_at is None else hold_ids[row.fee_at],
                None if d else hold_ids[row.user_at if row.fee_at is None else row.fee_at],
            ))
        if records:
            await conn.copy_records_to_table("authorizations", records=records, columns=AUTHORIZATION_COLUMNS)

    @staticmethod
    def _answer(row: _Row, first: dict) -> AuthorizationResult:
        if row.replay_of is not None:
            return row.replay_of
        origin = first[(row.item.network_id, row.item.request.message_id)]
        d = origin.decline
        if d is None:
            return AuthorizationResult(origin.id, "APPROVED", "00", "APPROVED", origin.item.request.amount, None,
                                       origin.available_after, origin.billing_amount,
                                       origin.transaction_fee + origin.conversion_fee)
        return AuthorizationResult(origin.id, "DECLINED", d.response_code, d.reason, 0, d.action_code,
                                   origin.available_after)
