"""Fee schedules and fee arithmetic (pure: data in, data out).

A schedule is immutable data: amounts in the program currency's minor units, percentages in
basis points (1/100 of a percent), and waiver rules evaluated by `waiver_for`. Every result is a
non-negative integer number of minor units; rounding is half up, once, at the end (docs/fees.md).
"""

from __future__ import annotations

import enum
import functools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated

import msgspec
from msgspec import Meta

from antaca_auth.codes import TransferCode
from antaca_auth.invariants import require

FEE_REVENUE_ACCOUNTS_CACHED_MAX = 4096  # (program, currency) pairs whose account id is kept

FEE_REVENUE_NAMESPACE = uuid.UUID("6c1e8f0a-4b7d-4a53-9a0e-2f6d8b1c3e57")
BASIS = 10_000  # basis points in a whole


class FeeType(enum.StrEnum):
    BALANCE_CREATION = "BALANCE_CREATION"
    VIRTUAL_CARD_CREATION = "VIRTUAL_CARD_CREATION"
    PHYSICAL_CARD_CREATION = "PHYSICAL_CARD_CREATION"
    CARD_RECURRING = "CARD_RECURRING"
    POS = "POS"
    ECOM = "ECOM"
    ATM = "ATM"
    MONEY_TRANSFER = "MONEY_TRANSFER"
    CURRENCY_CONVERSION = "CURRENCY_CONVERSION"


class Period(enum.StrEnum):
    DAILY = "DAILY"
    WEEKLY = "WEEKLY"  # ISO weeks, Monday to Sunday
    MONTHLY = "MONTHLY"  # calendar months


class Metric(enum.StrEnum):
    # The card's approved spend (balance currency, minor units; refunds excluded) and number of
    # approved payments over the period before the one being charged: for a recurring fee the
    # previous period of its own length, for any other fee the previous calendar month.
    APPROVED_SPEND_PREVIOUS_PERIOD = "APPROVED_SPEND_PREVIOUS_PERIOD"
    APPROVED_COUNT_PREVIOUS_PERIOD = "APPROVED_COUNT_PREVIOUS_PERIOD"


# A fee schedule's prices: far below the ledger's bound, so that fixed + percent never overflows.
FEE_PRICE_MINOR_UNITS_MAX = 10**15
MinorUnits = Annotated[int, Meta(ge=0, le=FEE_PRICE_MINOR_UNITS_MAX,
                                 description="minor units of the program currency")]
PositiveMinorUnits = Annotated[int, Meta(gt=0, le=FEE_PRICE_MINOR_UNITS_MAX,
                                         description="minor units of the program currency")]
BasisPoints = Annotated[int, Meta(ge=0, le=BASIS, description="hundredths of a percent: 150 is 1.50%")]


class Struct(msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True):
    pass


class TransactionFee(Struct):
    """fixed + percent of the amount, then raised to `minimum` and capped at `maximum`."""

    fixed: MinorUnits = 0
    percent_bp: BasisPoints = 0
    minimum: MinorUnits = 0
    maximum: MinorUnits | None = None


class RecurringFee(Struct):
    period: Period
    amount: PositiveMinorUnits


class Condition(Struct):
    """Holds when the metric is at least `at_least` and below `below` (either may be absent)."""

    metric: Metric
    at_least: MinorUnits | None = None
    below: MinorUnits | None = None


class Waiver(Struct):
    """No `fee` is charged when every condition holds."""

    name: Annotated[str, Meta(min_length=1, max_length=100)]
    fee: FeeType
    when: Annotated[list[Condition], Meta(min_length=1, max_length=8)]


class FeeSchedule(Struct):
    balance_creation: PositiveMinorUnits | None = None
    virtual_card_creation: PositiveMinorUnits | None = None
    physical_card_creation: PositiveMinorUnits | None = None
    card_recurring: RecurringFee | None = None
    pos: TransactionFee | None = None
    ecom: TransactionFee | None = None
    atm: TransactionFee | None = None
    money_transfer: TransactionFee | None = None
    currency_conversion_bp: BasisPoints | None = None
    waivers: Annotated[list[Waiver], Meta(max_length=32)] = []


def problems(schedule: FeeSchedule) -> list[str]:
    """What makes a schedule unusable (empty when it is fine)."""
    found = []
    for name in (r.schedule_field for r in FEE_RULES.values() if r.kind is FeeKind.TRANSACTION):
        spec = getattr(schedule, name)
        if spec is not None and spec.maximum is not None and spec.maximum < spec.minimum:
            found.append(f"{name}: the maximum is below the minimum")
    for waiver in schedule.waivers:
        for c in waiver.when:
            if c.at_least is None and c.below is None:
                found.append(f"waiver {waiver.name!r}: a condition needs atLeast or below")
            elif c.at_least is not None and c.below is not None and c.below <= c.at_least:
                found.append(f"waiver {waiver.name!r}: no value is at least {c.at_least} and below {c.below}")
    return found


def percent_of(amount: int, basis_points: int) -> int:
    """basis_points/10,000 of amount, rounded half up to a whole minor unit."""
    require(amount >= 0 and 0 <= basis_points <= BASIS, "a percentage of a negative amount")
    return (amount * basis_points + BASIS // 2) // BASIS


def transaction_fee(spec: TransactionFee | None, amount: int) -> int:
    """The fee on a transaction of `amount` minor units (0 when the schedule has none)."""
    if spec is None:
        return 0
    fee = max(spec.fixed + percent_of(amount, spec.percent_bp), spec.minimum)
    if spec.maximum is not None:
        fee = min(fee, spec.maximum)
    require(fee >= 0, "a negative fee")
    return fee


class FeeKind(enum.StrEnum):
    FLAT = "FLAT"  # an amount, once per cause (a balance or card created)
    RECURRING = "RECURRING"  # an amount per period, per card
    TRANSACTION = "TRANSACTION"  # fixed + percent of an amount, bounded (TransactionFee)
    CONVERSION = "CONVERSION"  # basis points of a converted payment


@dataclass(frozen=True)
class FeeRule:
    """Where a fee type lives: its field of the schedule, how it is priced, its ledger code, and the
    payment type it applies to (transaction fees of the authorization engine)."""

    fee_type: FeeType
    schedule_field: str  # the FeeSchedule attribute holding its price
    kind: FeeKind
    transfer_code: TransferCode
    transaction_type: str | None = None  # the authorization's TxType it prices


# The fee registry: a new fee type is a FeeType, a FeeSchedule field and a row here
# (tests/unit/test_fee_arithmetic.py fails for a fee type, a schedule field or a payment type left out).
FEE_RULES: dict[FeeType, FeeRule] = {rule.fee_type: rule for rule in (
    FeeRule(FeeType.BALANCE_CREATION, "balance_creation", FeeKind.FLAT,
            TransferCode.FEE_BALANCE_CREATION),
    FeeRule(FeeType.VIRTUAL_CARD_CREATION, "virtual_card_creation", FeeKind.FLAT,
            TransferCode.FEE_CARD_CREATION),
    FeeRule(FeeType.PHYSICAL_CARD_CREATION, "physical_card_creation", FeeKind.FLAT,
            TransferCode.FEE_CARD_CREATION),
    FeeRule(FeeType.CARD_RECURRING, "card_recurring", FeeKind.RECURRING,
            TransferCode.FEE_CARD_RECURRING),
    FeeRule(FeeType.POS, "pos", FeeKind.TRANSACTION, TransferCode.FEE_TRANSACTION, "POS"),
    FeeRule(FeeType.ECOM, "ecom", FeeKind.TRANSACTION, TransferCode.FEE_TRANSACTION, "ECOM"),
    FeeRule(FeeType.ATM, "atm", FeeKind.TRANSACTION, TransferCode.FEE_TRANSACTION, "ATM"),
    FeeRule(FeeType.MONEY_TRANSFER, "money_transfer", FeeKind.TRANSACTION,
            TransferCode.FEE_MONEY_TRANSFER),
    FeeRule(FeeType.CURRENCY_CONVERSION, "currency_conversion_bp", FeeKind.CONVERSION,
            TransferCode.FEE_TRANSACTION),
)}

# The payment types that carry a transaction fee (a refund carries none).
TRANSACTION_FEES = {rule.transaction_type: rule.fee_type for rule in FEE_RULES.values()
                    if rule.transaction_type is not None}


def spec_for(schedule: FeeSchedule, fee_type: FeeType) -> TransactionFee | None:
    """A transaction fee's pricing in the schedule (None: the schedule has none)."""
    rule = FEE_RULES[fee_type]
    if rule.kind is not FeeKind.TRANSACTION:
        return None
    return getattr(schedule, rule.schedule_field)


def flat_fee(schedule: FeeSchedule, fee_type: FeeType) -> int:
    """A one-off or recurring fee's amount (0 when the schedule has none)."""
    rule = FEE_RULES[fee_type]
    price = getattr(schedule, rule.schedule_field)
    if rule.kind is FeeKind.RECURRING:
        return price.amount if price else 0
    if rule.kind is FeeKind.FLAT:
        return price or 0
    return 0


def conversion_fee(schedule: FeeSchedule, billing_amount: int) -> int:
    """The currency conversion fee on an amount converted into the balance's currency."""
    return percent_of(billing_amount, schedule.currency_conversion_bp or 0)


def has_waivers(schedule: FeeSchedule, fee_type: FeeType) -> bool:
    return any(w.fee is fee_type for w in schedule.waivers)


def holds(condition: Condition, value: int) -> bool:
    if condition.at_least is not None and value < condition.at_least:
        return False
    return condition.below is None or value < condition.below


def waiver_for(schedule: FeeSchedule, fee_type: FeeType, facts: Mapping[Metric, int]) -> Waiver | None:
    """The first waiver rule of the schedule that waives this fee given the facts, or None."""
    for waiver in schedule.waivers:
        if waiver.fee is fee_type and all(holds(c, facts.get(c.metric, 0)) for c in waiver.when):
            return waiver
    return None


def period_bounds(period: Period, day: date) -> tuple[date, date]:
    """The period containing `day`: [start, end)."""
    if period is Period.DAILY:
        return day, day + timedelta(days=1)
    if period is Period.WEEKLY:
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    start = day.replace(day=1)
    return start, (start + timedelta(days=32)).replace(day=1)


def previous_period(period: Period, day: date) -> tuple[date, date]:
    """The period before the one containing `day`."""
    start, _ = period_bounds(period, day)
    return period_bounds(period, start - timedelta(days=1))


def convert(amount: int, from_exponent: int, to_exponent: int, rate: Decimal) -> int:
    """`amount` minor units of one currency in minor units of another at `rate`, rounded half up."""
    require(amount >= 0 and rate > 0, "a conversion of a negative amount or at a rate <= 0")
    exact = Decimal(amount) * rate * Decimal(10) ** (to_exponent - from_exponent)
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@functools.lru_cache(maxsize=FEE_REVENUE_ACCOUNTS_CACHED_MAX)
def fee_revenue_account(program_id: uuid.UUID, currency: str) -> uuid.UUID:
    """The ledger account collecting a card program's fees in a currency (a SHA-1 name-based UUID:
    cached, it was 3 % of the engine's CPU under the realistic mix, one per approval)."""
    return uuid.uuid5(FEE_REVENUE_NAMESPACE, f"{program_id}:{currency}")


def decode_schedule(raw: bytes | str | dict) -> FeeSchedule:
    if isinstance(raw, dict):
        return msgspec.convert(raw, FeeSchedule)
    return msgspec.json.decode(raw, type=FeeSchedule)


def transaction_fees(schedule: FeeSchedule | None, tx_type: str, billing_amount: int, converted: bool,
                     facts: Mapping[Metric, int]) -> tuple[int, int]:
    """(transaction fee, conversion fee) of a card payment in the balance currency; refunds pay none."""
    if schedule is None or tx_type not in TRANSACTION_FEES:
        return 0, 0
    fee_type = TRANSACTION_FEES[tx_type]
    fee = transaction_fee(spec_for(schedule, fee_type), billing_amount)
    if fee and waiver_for(schedule, fee_type, facts) is not None:
        fee = 0
    conversion = conversion_fee(schedule, billing_amount) if converted else 0
    if conversion and waiver_for(schedule, FeeType.CURRENCY_CONVERSION, facts) is not None:
        conversion = 0
    return fee, conversion


def needs_facts(schedule: FeeSchedule | None, tx_type: str) -> bool:
    """Whether pricing this payment depends on the card's activity (a waiver rule may apply)."""
    return schedule is not None and tx_type in TRANSACTION_FEES and (
        has_waivers(schedule, TRANSACTION_FEES[tx_type]) or has_waivers(schedule, FeeType.CURRENCY_CONVERSION))


@dataclass(frozen=True)
class InternalTransferPrice:
    """What a transfer between two balances moves: the amount the receiver gets (in its currency)
    and the conversion fee the sender pays (in the sender's currency)."""

    received_amount: int
    fee: int


def price_internal_transfer(schedule: FeeSchedule | None, amount: int, rate: Decimal | None,
                            from_exponent: int, to_exponent: int) -> InternalTransferPrice:
    """A balance-to-balance transfer of `amount` in the sender's currency: converted at `rate`
    (None: the same currency, nothing converted and no fee), with the sender's program's currency
    conversion fee on the amount unless a waiver rule waives it."""
    require(amount > 0, "a transfer of a non-positive amount")
    if rate is None:
        return InternalTransferPrice(received_amount=amount, fee=0)
    received = convert(amount, from_exponent, to_exponent, rate)
    fee = 0 if schedule is None else conversion_fee(schedule, amount)
    if fee and waiver_for(schedule, FeeType.CURRENCY_CONVERSION, {}) is not None:
        fee = 0
    return InternalTransferPrice(received_amount=received, fee=fee)
