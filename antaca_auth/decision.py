"""The authorization engine's decision core: a batch of requests and a snapshot in, a plan out.

Pure: no I/O and no clock. The engine loads the snapshot (earlier answers, cards, fee schedules,
rates, card activity, zone PIN keys), calls `decide`, writes the plan (card counters, authorization
rows, the ledger's holds), then `settle` maps the ledger's per-transfer results to the payments'
final outcomes, and `answer` gives each caller its answer once the transaction has committed.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Protocol

import msgspec

from antaca_auth import authorization as rules
from antaca_auth import control_rules
from antaca_auth import fees as pricing
from antaca_auth.accounts import AMOUNT_MINOR_UNITS_MAX
from antaca_auth.authorization import (
    AuthorizationRequest,
    CardFacts,
    Decline,
    PinOutcome,
    TxType,
)
from antaca_auth.cardkeys import CardKeys
from antaca_auth.control_rules import (
    NOTHING_SPENT,
    Control,
    ControlSet,
    CounterKey,
    Kind,
    Spent,
)
from antaca_auth.holds import NewTransfers
from antaca_auth.invariants import require
from antaca_auth.pinblock import PinBlockError, ZoneKey, decipher_pin
from antaca_auth.remote import partner_refusal
from antaca_auth.settlement import (
    TransferCodes,
    advice_receivable_account,
    settlement_account,
)
from antaca_auth.transfers import ResultCode

_OK = ResultCode.OK
PIN_TRIES_LOCK_REASON = 6
CARD_TESTING_LOCK_REASON = 7
# The reason of an authorization booked from a network's approved advice (0120): the network
# decided, not Antaca's checks.
NETWORK_ADVICE = "NETWORK_ADVICE"
# The reason of an answered balance inquiry (nothing is stored or held for it).
BALANCE_INQUIRY = "BALANCE_INQUIRY"


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
    stand_in: bool = False  # decided by stand-in: the engine could not decide in time
    # The currency of `available_after` and `billing_amount` (the card program's); None when no card
    # was found. A payment in another currency is converted into it.
    balance_currency: str | None = None
    # The spending control that declined, and its version (docs/controls.md); None otherwise.
    control_id: uuid.UUID | None = None
    control_version: int | None = None


class Incoming(Protocol):
    """A request as the engine queued it."""

    network_id: uuid.UUID
    request: AuthorizationRequest
    fingerprint: str  # the PAN's keyed fingerprint
    digest: bytes  # what a retransmission must repeat: `request_digest`
    authorization_id: uuid.UUID  # given at arrival: the id of its row and answer


def request_digest(fingerprint: str, request: AuthorizationRequest) -> bytes:
    """What identifies a payment beyond its message id (card, amount, currency, type): a message id
    sent again with another digest is a duplicate transmission, not a retransmission."""
    text = f"{fingerprint}|{request.amount}|{request.currency}|{request.type}"
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """An answer already given for a message id, and the digest of the request it answered."""

    result: AuthorizationResult
    digest: bytes | None  # None: stored before digests were kept (any retransmission matches)


@dataclass(frozen=True, slots=True)
class Policy:
    """The engine's rules that are settings rather than data."""

    hold_seconds: int
    card_testing_failures_max: int = 5  # wrong CVC2 or expiry in the window that lock the card
    card_testing_window: timedelta = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything a batch's decisions read, loaded in its transaction."""

    now: datetime
    answers: Mapping[tuple[uuid.UUID, str], StoredAnswer]  # by (network, message id)
    cards: Mapping[str, CardFacts]  # by PAN fingerprint
    schedules: Mapping[uuid.UUID, pricing.FeeSchedule]
    rates: Mapping[tuple[str, str], Decimal]
    activity: Mapping[uuid.UUID, Mapping[pricing.Metric, int]]  # by card, for fee waivers
    exponents: Mapping[str, int]
    zone_keys: Mapping[uuid.UUID, ZoneKey]  # by network
    # Spending controls in force on each card (by card id; absent: none), the velocity counters
    # each card's payment adds to, what they hold, (amount, count) by key, and each program time
    # zone's local date now.
    control_sets: Mapping[uuid.UUID, ControlSet] = field(default_factory=dict)
    counter_keys: Mapping[uuid.UUID, list[CounterKey]] = field(default_factory=dict)  # by card
    counters: Mapping[CounterKey, Spent] = field(default_factory=dict)
    local_days: Mapping[str, date] = field(default_factory=dict)


@dataclass(slots=True)
class CardUpdate:
    """A card's counters after the batch, and the lock it takes (6 or 7), if any."""

    pin_failures: int
    verification_failures: int
    verification_window_start: datetime | None
    stand_in_used: int
    lock_reason: int | None = None


@dataclass(slots=True, eq=False)
class Planned:
    """One request's decision and what to write for it."""

    incoming: Incoming
    id: uuid.UUID
    card: CardFacts | None
    decline: Decline | None = None
    replay: AuthorizationResult | None = None  # an answer given before, given again (nothing written)
    same_as: Planned | None = None  # the same message earlier in this batch: its answer
    stand_in: bool = False
    # Indexes of this payment's transfers in the plan's holds (None: no such transfer).
    deposit_at: int | None = None
    user_at: int | None = None
    fee_at: int | None = None
    available_after: int | None = None
    billing_amount: int | None = None
    fx_rate: Decimal | None = None
    transaction_fee: int = 0
    conversion_fee: int = 0
    advice: bool = False  # a network's approved advice, booked as the network decided
    advice_shortfall: int = 0  # what of it was held on the advice receivable
    supersedes: bool = False  # the advice approves a message Antaca had declined: its row
    control: Control | None = None  # the ACTIVE spending control that declined
    shadow: tuple[tuple[Control, Decline], ...] = ()  # SHADOW controls that would have declined
    velocity: list[CounterKey] | None = None  # the counters an approval adds to
    velocity_bits: int = 0
    local_day: date | None = None

    @property
    def stored(self) -> bool:
        """Whether this decision is a new authorization row."""
        return self.replay is None and self.same_as is None


@dataclass(slots=True)
class Plan:
    rows: list[Planned]  # one per request, in the batch's order
    holds: NewTransfers
    card_updates: dict[uuid.UUID, CardUpdate] = field(default_factory=dict)
    # Each limited account's available amount after the holds planned so far (from the snapshot).
    available: dict[uuid.UUID, int] = field(default_factory=dict)
    # Velocity: the counters after the approvals planned so far, what the batch adds to each, and
    # the tightest ACTIVE (amount, count) limit on each (checked again once the counters are
    # written, against what concurrent batches added meanwhile).
    counters: dict[CounterKey, tuple[int, int]] = field(default_factory=dict)
    deltas: dict[CounterKey, tuple[int, int]] = field(default_factory=dict)
    limits: dict[CounterKey, tuple[int | None, int | None]] = field(default_factory=dict)

    @property
    def new_rows(self) -> list[Planned]:
        return [row for row in self.rows if row.stored]


def decide(batch: Sequence[Incoming], snapshot: Snapshot, keys: CardKeys, policy: Policy, *,
           stand_in: bool = False) -> Plan:
    """Decide every request of a batch in order; `stand_in` applies the programs' stand-in rule to
    what the checks would approve (approve within the card's daily stand-in limit, else 91)."""
    plan = Plan([], NewTransfers())
    first: dict[tuple[uuid.UUID, str], Planned] = {}
    for incoming in batch:
        key = (incoming.network_id, incoming.request.message_id)
        earlier = snapshot.answers.get(key)
        if earlier is not None:
            plan.rows.append(_replayed(incoming, earlier.result, earlier.digest))
            continue
        origin = first.get(key)
        if origin is not None:  # the same message twice in one batch: one decision
            row = Planned(incoming, origin.id, None, same_as=origin)
            if origin.incoming.digest != incoming.digest:
                row.same_as, row.replay = None, duplicate_transmission(origin.id)
            plan.rows.append(row)
            continue
        row = Planned(incoming, incoming.authorization_id,
                      _card_now(snapshot.cards.get(incoming.fingerprint), plan))
        row.stand_in = stand_in
        first[key] = row
        plan.rows.append(row)
        _decide_one(row, snapshot, keys, policy, plan)
    return plan


def _replayed(incoming: Incoming, result: AuthorizationResult, digest: bytes | None) -> Planned:
    if digest is not None and digest != incoming.digest:
        result = duplicate_transmission(result.authorization_id)
    return Planned(incoming, result.authorization_id, None, replay=result)


def duplicate_transmission(original_id: uuid.UUID) -> AuthorizationResult:
    """The answer to a duplicate transmission: it names the original, which stands unchanged."""
    d = rules.DUPLICATE_TRANSMISSION
    return AuthorizationResult(original_id, "DECLINED", d.response_code, d.reason, 0, d.action_code)


def _card_now(card: CardFacts | None, plan: Plan) -> CardFacts | None:
    """The card as earlier requests of this batch left it (counters, lock)."""
    if card is None:
        return None
    update = plan.card_updates.get(card.card_id)
    if update is None:
        return card
    changes: dict = {"pin_failures": update.pin_failures,
                     "verification_failures": update.verification_failures,
                     "verification_window_start": update.verification_window_start,
                     "stand_in_used": update.stand_in_used}
    if update.lock_reason is not None:
        changes.update(state=rules.CardState.LOCKED, lock_reason=update.lock_reason)
    return msgspec.structs.replace(card, **changes)


def _decide_one(row: Planned, snapshot: Snapshot, keys: CardKeys, policy: Policy, plan: Plan) -> None:
    request, card = row.incoming.request, row.card
    pin = _pin(row.incoming, snapshot)
    check = rules.check_card(request, card, keys, snapshot.now.date(), snapshot.rates, pin)
    # A PIN checked sets the count (a right one resets it) even when the count read is the same:
    # the card is then locked and read again, so a concurrent batch's wrong PIN is not overwritten.
    if card is not None and (check.pin_checked or check.pin_failures != card.pin_failures
                             or check.verification_failed):
        _count(card, check, snapshot.now, policy, plan)
        if plan.card_updates[card.card_id].lock_reason == CARD_TESTING_LOCK_REASON:
            check = rules.CardCheck(rules.SUSPECTED_CARD_TESTING, check.pin_failures)
    if check.decline is not None:
        row.decline = check.decline
        return
    _price(row, snapshot)
    if row.decline is None and request.type is not TxType.REFUND:
        _controls(row, snapshot, plan)
    if row.decline is None:  # a REMOTE program's partner declined it (antaca_auth/remote.py)
        row.decline = partner_refusal(getattr(row.incoming, "remote", None))
    if row.decline is None and row.stand_in:
        row.decline = _stand_in_refusal(row)
    if row.decline is None:
        row.decline = _funds(row, plan)
    if row.decline is None:
        if row.stand_in:
            _use_allowance(row, plan, 1)
        _holds(row, plan.holds, policy.hold_seconds)
    if row.decline is None and row.velocity:
        _count_velocity(row, plan, 1)


def _controls(row: Planned, snapshot: Snapshot, plan: Plan) -> None:
    """The card's spending controls (program and product, balance, card) on the priced payment:
    an ACTIVE control's decline, the SHADOW controls that would have declined, the counters."""
    card, request = row.card, row.incoming.request
    found = snapshot.control_sets.get(card.card_id)
    if found is None:
        return
    payment = control_rules.Payment(
        card.card_id, card.balance_id, request.mcc, request.merchant_country,
        control_rules.payment_channel(request.type, request.pos_entry_mode), row.billing_amount)
    spent: dict[int, Spent] = {}
    keys = None
    if found.windows:
        keys = snapshot.counter_keys[card.card_id]
        counters, read = plan.counters, snapshot.counters
        for window, key in zip(found.windows, keys, strict=True):
            value = counters.get(key)
            if value is None:  # the batch's first payment on this counter: as read
                value = counters[key] = read.get(key, NOTHING_SPENT)
            spent[window] = value
    verdict = control_rules.evaluate(found.controls, payment, spent)
    row.shadow = verdict.shadow
    if verdict.decline is not None:
        row.decline, row.control = verdict.decline, verdict.control
        return
    if keys:
        row.velocity, row.velocity_bits = keys, found.bits
        row.local_day = snapshot.local_days[card.time_zone]
        tighter, limits = control_rules.tighter, plan.limits
        for key, (amount, count) in zip(keys, found.limits, strict=True):
            known = limits.get(key)
            limits[key] = (amount, count) if known is None else (
                tighter(known[0], amount), tighter(known[1], count))


def _count_velocity(row: Planned, plan: Plan, sign: int) -> None:
    """Count an approval in its counters (sign -1: take it back, the ledger declined it)."""
    amount = sign * row.billing_amount
    for key in row.velocity:
        spent, count = plan.counters[key]
        plan.counters[key] = (spent + amount, count + sign)
        added, times = plan.deltas.get(key, (0, 0))
        plan.deltas[key] = (added + amount, times + sign)


def taken_back(rows: Sequence[Planned]) -> dict[CounterKey, tuple[int, int]]:
    """What the counters must give back for approvals the ledger then declined (`settle`'s
    declined rows), whose counts were written with the batch's: negative (amount, count)."""
    back: dict[CounterKey, tuple[int, int]] = {}
    for row in rows:
        for key in row.velocity or ():
            amount, count = back.get(key, (0, 0))
            back[key] = (amount - row.billing_amount, count - 1)
    return back


def velocity_declined(plan: Plan) -> bool:
    """Whether a velocity limit declined a payment of the plan, or would have (SHADOW)."""
    velocity = Kind.VELOCITY
    return any((row.control is not None and row.control.kind is velocity)
               or any(control.kind is velocity for control, _ in row.shadow)
               for row in plan.rows)


def _pin(incoming: Incoming, snapshot: Snapshot) -> str | PinOutcome | None:
    """The PIN the request's PIN block deciphers to under its network's zone key."""
    block = incoming.request.pin_block
    if block is None:
        return None
    zone_key = snapshot.zone_keys.get(incoming.network_id)
    if zone_key is None:
        return PinOutcome.KEY_MISSING
    try:
        return decipher_pin(zone_key, bytes.fromhex(block), incoming.request.pan)
    except (PinBlockError, ValueError):
        return PinOutcome.UNREADABLE


def _count(card: CardFacts, check: rules.CardCheck, now: datetime, policy: Policy, plan: Plan) -> None:
    """Record the card's wrong-PIN count and card-testing failures; lock it when a limit is reached."""
    update = CardUpdate(check.pin_failures, card.verification_failures, card.verification_window_start,
                        card.stand_in_used)
    if check.lock_now:
        update.lock_reason = PIN_TRIES_LOCK_REASON
    if check.verification_failed:
        start = card.verification_window_start
        if start is None or now - start >= policy.card_testing_window:  # a new window
            update.verification_failures, update.verification_window_start = 0, now
        update.verification_failures += 1
        if update.verification_failures >= policy.card_testing_failures_max:
            update.lock_reason = CARD_TESTING_LOCK_REASON
    plan.card_updates[card.card_id] = update


def _price(row: Planned, snapshot: Snapshot) -> None:
    """The amount in the balance's currency and the fees held with it (or a decline)."""
    request, card = row.incoming.request, row.card
    billing = request.amount
    if request.currency != card.program_currency:
        row.fx_rate = snapshot.rates[(request.currency, card.program_currency)]
        billing = pricing.convert(request.amount, snapshot.exponents[request.currency],
                                  snapshot.exponents[card.program_currency], row.fx_rate)
    row.billing_amount = billing
    schedule = snapshot.schedules.get(card.fee_schedule_id) if card.fee_schedule_id else None
    row.transaction_fee, row.conversion_fee = pricing.transaction_fees(
        schedule, request.type, billing, row.fx_rate is not None, snapshot.activity.get(card.card_id, {}))
    if not 0 < billing <= AMOUNT_MINOR_UNITS_MAX or row.transaction_fee + row.conversion_fee > AMOUNT_MINOR_UNITS_MAX:
        row.decline = rules.INVALID_AMOUNT


def _stand_in_refusal(row: Planned) -> Decline | None:
    """The program's stand-in rule on a payment the checks approve: within the card's daily limit."""
    card = row.card
    if row.incoming.request.type is TxType.REFUND:
        return None  # a refund credits the card: no allowance is used
    if not card.stand_in_approves:
        return rules.ISSUER_UNAVAILABLE
    if card.stand_in_used + _spent(row) > card.stand_in_limit:
        return rules.STAND_IN_LIMIT_EXCEEDED
    return None


def _spent(row: Planned) -> int:
    return row.billing_amount + row.transaction_fee + row.conversion_fee


def _use_allowance(row: Planned, plan: Plan, sign: int) -> None:
    """Count a stand-in approval against the card's daily allowance (sign -1: give it back)."""
    card = row.card
    if row.incoming.request.type is TxType.REFUND:
        return
    update = plan.card_updates.get(card.card_id) or CardUpdate(
        card.pin_failures, card.verification_failures, card.verification_window_start, card.stand_in_used)
    update.stand_in_used += sign * _spent(row)
    plan.card_updates[card.card_id] = update


def _funds(row: Planned, plan: Plan) -> Decline | None:
    """Decline what the balances as read cannot cover, before the ledger sees it.

    The ledger decides again under its locks and stays the authority (a hold it refuses is declined
    in `settle`); declining here what is already short keeps a batch with declines on the ledger's
    one-call path, which a single refused transfer would send to the sequential one."""
    card, request = row.card, row.incoming.request
    available = plan.available
    user, deposit = card.user_account, card.deposit_account
    if card.user_available is not None:
        available.setdefault(user, card.user_available)
    if request.type is TxType.REFUND:
        if user in available:
            available[user] += row.billing_amount
        return None
    if card.funding_model == "DEPOSIT" and deposit is not None and card.deposit_available is not None:
        available.setdefault(deposit, card.deposit_available)
        if available[deposit] < row.billing_amount:
            return rules.INSUFFICIENT_DEPOSIT
    spent = row.billing_amount + row.transaction_fee + row.conversion_fee
    if user in available and available[user] < spent:
        return rules.INSUFFICIENT_FUNDS
    if user in available:
        available[user] -= spent
    if card.funding_model == "DEPOSIT" and deposit in available:
        available[deposit] -= row.billing_amount
    return None


def _holds(row: Planned, holds: NewTransfers, hold_seconds: int) -> None:
    """Add the ledger transfers of an approvable authorization, one linked chain: the partner deposit
    charge (DEPOSIT model), the hold on the user's balance, and the hold of its fees."""
    request, card = row.incoming.request, row.card
    require(row.user_at is None and row.deposit_at is None and row.fee_at is None,
            "one hold per approved payment")
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
                                   pending=True, timeout=hold_seconds, reference=reference,
                                   linked=True)
    row.user_at = holds.add(TransferCodes.USER_HOLD, card.user_account,
                            deposit if card.funding_model == "DEPOSIT" else settlement, amount, currency,
                            pending=True, timeout=hold_seconds, reference=reference)
    fee = row.transaction_fee + row.conversion_fee
    if fee:
        holds.link(row.user_at)
        row.fee_at = holds.add(TransferCodes.FEE, card.user_account,
                               pricing.fee_revenue_account(card.program_id, currency), fee, currency,
                               pending=True, timeout=hold_seconds, reference=reference)


LedgerResult = tuple[ResultCode, int, int]  # (code, debit account's available after, credit's)


def settle(plan: Plan, results: Sequence[LedgerResult]) -> tuple[list[Planned], set[uuid.UUID]]:
    """Each payment's outcome from its transfers' results: (the rows the ledger declined, the partner
    deposits charged whose low-balance alert is armed)."""
    touched: set[uuid.UUID] = set()
    declined: list[Planned] = []
    for row in plan.rows:
        if not row.stored or row.decline is not None or row.user_at is None:
            continue
        user = results[row.user_at]
        last = results[row.fee_at if row.fee_at is not None else row.user_at]  # the chain's last
        row.decline = _ledger_decline(row, results, user[0], last[0])
        if row.incoming.request.type is TxType.REFUND:
            row.available_after = user[2] if user[0] is _OK else None
        else:
            row.available_after = last[1] if last[0] is _OK else None
        if row.decline is not None:
            row.deposit_at = row.user_at = row.fee_at = None
            declined.append(row)
            if row.stand_in:
                _use_allowance(row, plan, -1)
        elif row.deposit_at is not None and row.card.deposit_alert_armed:
            touched.add(row.card.deposit_account)
    return declined, touched


def _ledger_decline(row: Planned, results: Sequence[LedgerResult], user: ResultCode,
                    last: ResultCode) -> Decline | None:
    if row.deposit_at is not None and (deposit := results[row.deposit_at][0]) is not _OK:
        if deposit is ResultCode.EXCEEDS_CREDITS:
            return rules.INSUFFICIENT_DEPOSIT
        return rules.INSUFFICIENT_FUNDS if ResultCode.EXCEEDS_CREDITS in (user, last) else rules.INVALID_AMOUNT
    if user is not _OK or last is not _OK:
        funds = {user, last} <= {_OK, ResultCode.EXCEEDS_CREDITS, ResultCode.LINKED_EVENT_FAILED}
        return rules.INSUFFICIENT_FUNDS if funds else rules.INVALID_AMOUNT
    return None


def answer(row: Planned) -> AuthorizationResult:
    """The answer a request gets once its batch has committed."""
    if row.replay is not None:
        return row.replay
    origin = row.same_as or row
    d = origin.decline
    currency = origin.card.program_currency if origin.card is not None else None
    if d is None:
        return AuthorizationResult(origin.id, "APPROVED", "00",
                                   NETWORK_ADVICE if origin.advice else "APPROVED",
                                   origin.incoming.request.amount, None, origin.available_after,
                                   origin.billing_amount,
                                   origin.transaction_fee + origin.conversion_fee,
                                   origin.stand_in, currency)
    if origin.available_after is None:
        currency = None
    control = origin.control
    return AuthorizationResult(origin.id, "DECLINED", d.response_code, d.reason, 0, d.action_code,
                               origin.available_after, stand_in=origin.stand_in,
                               balance_currency=currency,
                               control_id=control.id if control else None,
                               control_version=control.version if control else None)


def stand_in_decline(authorization_id: uuid.UUID) -> AuthorizationResult:
    """The stand-in answer when the engine could not decide in time: 91, issuer unavailable."""
    d = rules.ISSUER_UNAVAILABLE
    return AuthorizationResult(authorization_id, "DECLINED", d.response_code, d.reason, 0, stand_in=True)


# --- network advices and balance inquiries ------------------------------------------------------

def plan_advice(incoming: Incoming, snapshot: Snapshot, policy: Policy) -> Plan:
    """Book a network's approved advice (0120) as the network decided: none of Antaca's checks,
    counters or funds declines apply, the payment is priced as the engine prices it (conversion,
    fees) and held on the usual chain (deposit charge, user hold, fee hold).

    The network approved on the issuer's behalf and will settle it: the issuer must pay. A hold
    whose debit account (the user's balance, the partner deposit: both must never go negative)
    cannot cover it is held instead, whole, on the issuer's advice receivable of the currency, an
    account without a funds limit: what the cardholder (for the user and fee holds) or the partner
    (for the deposit charge) owes the issuer, recorded for collection. Reversals and clearings
    then work on those holds unchanged. `snapshot.cards` must hold the accounts' available amounts
    read under their locks, so the choice holds at the write.

    Only an advice that cannot be priced is not booked: an unknown card (14) or a currency with no
    rate in force (57); the caller logs it. A message approved before (by Antaca, or an advice
    booked already) is answered as it was, another payment under its id 94. A message Antaca
    declined, or stood in for with 91 because it could not answer in time (the usual cause of
    the network's stand-in, and the advice carries the original's identity), is booked over its
    decline: the same row (`supersedes`), approved."""
    plan = Plan([], NewTransfers())
    key = (incoming.network_id, incoming.request.message_id)
    earlier = snapshot.answers.get(key)
    row_id = incoming.authorization_id
    if earlier is not None:
        replay = _replayed(incoming, earlier.result, earlier.digest)
        if replay.replay.decision == "APPROVED" or replay.replay is not earlier.result:
            plan.rows.append(replay)  # approved already, or a duplicate transmission (94)
            return plan
        row_id = earlier.result.authorization_id
    card = snapshot.cards.get(incoming.fingerprint)
    row = Planned(incoming, row_id, card, advice=True, supersedes=earlier is not None)
    plan.rows.append(row)
    request = incoming.request
    if card is None:
        row.decline = rules.UNKNOWN_CARD
        return plan
    if (request.currency != card.program_currency
            and (request.currency, card.program_currency) not in snapshot.rates):
        row.decline = rules.CURRENCY_NOT_SUPPORTED
        return plan
    _price(row, snapshot)
    if row.decline is None:
        _advice_holds(row, plan, policy.hold_seconds)
    return plan


def _advice_holds(row: Planned, plan: Plan, hold_seconds: int) -> None:
    """The engine's chain of holds, each debiting the advice receivable instead of its own account
    when that account's available amount (None: no limit) cannot cover it."""
    _holds(row, plan.holds, hold_seconds)
    if row.decline is not None:  # a DEPOSIT program whose partner has no deposit account
        row.decline = None
        _holds_without_deposit(row, plan.holds, hold_seconds)
    card, holds = row.card, plan.holds
    receivable = advice_receivable_account(card.program_currency)
    available = {card.user_account: card.user_available}
    if card.deposit_account is not None:
        available[card.deposit_account] = card.deposit_available
    for at in (row.deposit_at, row.user_at, row.fee_at):
        if at is None or not holds.pending[at]:
            continue  # a refund credits the user: nothing to cover
        debit, amount = holds.debits[at], holds.amounts[at]
        left = available.get(debit)
        if left is None or left >= amount:
            if left is not None:
                available[debit] = left - amount
            continue
        holds.debits[at] = receivable
        row.advice_shortfall += amount


def _holds_without_deposit(row: Planned, holds: NewTransfers, hold_seconds: int) -> None:
    """A DEPOSIT program whose partner has no deposit account: the user's money pays the network
    directly, as in the CREDIT model (the engine declines such a payment; the network did not)."""
    card = row.card
    currency, reference = card.program_currency, row.incoming.request.message_id[:256]
    row.user_at = holds.add(TransferCodes.USER_HOLD, card.user_account,
                            settlement_account(currency), row.billing_amount, currency,
                            pending=True, timeout=hold_seconds, reference=reference)
    fee = row.transaction_fee + row.conversion_fee
    if fee:
        holds.link(row.user_at)
        row.fee_at = holds.add(TransferCodes.FEE, card.user_account,
                               pricing.fee_revenue_account(card.program_id, currency), fee,
                               currency, pending=True, timeout=hold_seconds, reference=reference)


def decide_inquiry(incoming: Incoming, snapshot: Snapshot, keys: CardKeys, policy: Policy) -> Plan:
    """A balance inquiry: the card checks of a payment (card state, expiry, CVC2, PIN and their
    counters), then the available amount of the card's balance; nothing is held.

    The inquiry moves no money, so the terminal's currency is not checked: the balance is given
    in its own currency."""
    card = snapshot.cards.get(incoming.fingerprint)
    plan = Plan([], NewTransfers())
    row = Planned(incoming, incoming.authorization_id, card)
    plan.rows.append(row)
    request = incoming.request
    if card is not None and request.currency != card.program_currency:
        request = msgspec.structs.replace(request, currency=card.program_currency)
    check = rules.check_card(request, card, keys, snapshot.now.date(), (), _pin(incoming, snapshot))
    if card is not None and (check.pin_checked or check.pin_failures != card.pin_failures
                             or check.verification_failed):
        _count(card, check, snapshot.now, policy, plan)
        if plan.card_updates[card.card_id].lock_reason == CARD_TESTING_LOCK_REASON:
            check = rules.CardCheck(rules.SUSPECTED_CARD_TESTING, check.pin_failures)
    row.decline = check.decline
    return plan


def inquiry_answer(row: Planned) -> AuthorizationResult:
    """The answer to a balance inquiry: the card's available balance in its currency, or the
    card check's decline."""
    d, card = row.decline, row.card
    if d is not None:
        return AuthorizationResult(row.id, "DECLINED", d.response_code, d.reason, 0, d.action_code)
    return AuthorizationResult(row.id, "APPROVED", "00", BALANCE_INQUIRY, 0,
                               available_after=card.user_available,
                               balance_currency=card.program_currency)
