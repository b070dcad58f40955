"""Spending controls as data, and what they decide about one payment (pure: no I/O, no clock).

A control is set on a level (program, partner's card product, balance, card) and is ACTIVE or
SHADOW. Every applicable control must pass: the strictest wins by construction. When several
ACTIVE controls decline, the answer names the first in the order of `evaluate`: levels from the
broadest (program) to the narrowest (card), and within a level the control created first.
SHADOW controls never change the answer; each one that would have declined is reported.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from antaca_auth.authorization import Decline, TxType


class Level(enum.StrEnum):
    PROGRAM = "PROGRAM"
    PRODUCT = "PRODUCT"
    BALANCE = "BALANCE"
    CARD = "CARD"


LEVEL_ORDER = {level: index for index, level in enumerate(Level)}


class Status(enum.StrEnum):
    ACTIVE = "ACTIVE"
    SHADOW = "SHADOW"


class Kind(enum.StrEnum):
    MCC_ALLOW = "MCC_ALLOW"
    MCC_BLOCK = "MCC_BLOCK"
    COUNTRY_ALLOW = "COUNTRY_ALLOW"
    COUNTRY_BLOCK = "COUNTRY_BLOCK"
    CHANNEL_BLOCK = "CHANNEL_BLOCK"
    AMOUNT_MAX = "AMOUNT_MAX"
    VELOCITY = "VELOCITY"


class PaymentChannel(enum.StrEnum):
    """How a payment was made: the request's type, then DE22's PAN entry mode."""

    ATM = "ATM"
    ECOMMERCE = "ECOMMERCE"
    CONTACTLESS = "CONTACTLESS"
    MAGNETIC_STRIPE = "MAGNETIC_STRIPE"
    CHIP = "CHIP"
    MANUAL = "MANUAL"
    UNKNOWN = "UNKNOWN"  # a point-of-sale payment without an entry mode


# DE22's first two digits (PAN entry mode) by channel.
ENTRY_MODES = {"07": PaymentChannel.CONTACTLESS, "91": PaymentChannel.CONTACTLESS,
               "02": PaymentChannel.MAGNETIC_STRIPE, "90": PaymentChannel.MAGNETIC_STRIPE,
               "80": PaymentChannel.MAGNETIC_STRIPE, "05": PaymentChannel.CHIP,
               "95": PaymentChannel.CHIP, "01": PaymentChannel.MANUAL,
               "81": PaymentChannel.ECOMMERCE, "10": PaymentChannel.ECOMMERCE}


class Period(enum.StrEnum):
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"
    LIFETIME = "LIFETIME"


class CountedPer(enum.StrEnum):
    CARD = "CARD"
    BALANCE = "BALANCE"


LIFETIME_START = date(1970, 1, 1)
# The bit of each (counted per, period) in an authorization's velocity_periods.
PERIOD_BITS = {(per, period): 1 << (4 * p + q)
               for p, per in enumerate(CountedPer) for q, period in enumerate(Period)}

# DE39 of each kind's decline: 57 not permitted to the cardholder, 62 restricted card, 61 exceeds
# the amount limit, 65 exceeds the frequency limit.
MCC_NOT_PERMITTED = Decline("57", "CONTROL_MCC_NOT_PERMITTED")
COUNTRY_RESTRICTED = Decline("62", "CONTROL_COUNTRY_RESTRICTED")
CHANNEL_NOT_PERMITTED = Decline("57", "CONTROL_CHANNEL_NOT_PERMITTED")
AMOUNT_LIMIT_EXCEEDED = Decline("61", "CONTROL_AMOUNT_LIMIT_EXCEEDED")
VELOCITY_AMOUNT_EXCEEDED = Decline("61", "CONTROL_VELOCITY_AMOUNT_EXCEEDED")
VELOCITY_COUNT_EXCEEDED = Decline("65", "CONTROL_VELOCITY_COUNT_EXCEEDED")
CONTROL_DECLINES = (MCC_NOT_PERMITTED, COUNTRY_RESTRICTED, CHANNEL_NOT_PERMITTED,
                    AMOUNT_LIMIT_EXCEEDED, VELOCITY_AMOUNT_EXCEEDED, VELOCITY_COUNT_EXCEEDED)


@dataclass(frozen=True, slots=True)
class Control:
    """One control's current version, as the engine evaluates it."""

    id: uuid.UUID
    version: int
    level: Level
    scope_id: uuid.UUID
    status: Status
    kind: Kind
    codes: frozenset[str] = frozenset()  # MCCs or countries
    mcc_ranges: tuple[tuple[int, int], ...] = ()  # inclusive
    channels: frozenset[PaymentChannel] = frozenset()
    amount_max: int | None = None  # per authorization (AMOUNT_MAX) or per period (VELOCITY)
    count_max: int | None = None
    period: Period | None = None
    per: CountedPer | None = None
    created_order: int = 0  # ordering within a level: the control created first is named first


def control_from_rule(*, id: uuid.UUID, version: int, level: str, scope_id: uuid.UUID,
                      status: str, kind: str, rule: Mapping, created_order: int = 0) -> Control:
    """A control from its stored row (`rule` is the JSON the API validated)."""
    codes, ranges = frozenset(), ()
    if kind in (Kind.MCC_ALLOW, Kind.MCC_BLOCK):
        codes, ranges = parse_mccs(rule.get("mccs", ()))
    elif kind in (Kind.COUNTRY_ALLOW, Kind.COUNTRY_BLOCK):
        codes = frozenset(rule.get("countries", ()))
    period, per = rule.get("period"), rule.get("per")
    return Control(id, version, Level(level), scope_id, Status(status), Kind(kind), codes, ranges,
                   frozenset(PaymentChannel(c) for c in rule.get("channels", ())),
                   rule.get("amountMax"), rule.get("countMax"),
                   Period(period) if period else None, CountedPer(per) if per else None,
                   created_order)


def parse_mccs(entries: Iterable[str]) -> tuple[frozenset[str], tuple[tuple[int, int], ...]]:
    """Single codes ("5411") and inclusive ranges ("5000-5999"); ValueError for anything else."""
    codes, ranges = set(), []
    for entry in entries:
        low, dash, high = entry.partition("-")
        if not (len(low) == 4 and low.isdigit()) or (dash and not (len(high) == 4 and high.isdigit())):
            raise ValueError(f"an MCC is four digits, or a range of two: not {entry!r}")
        if dash:
            if int(low) > int(high):
                raise ValueError(f"an MCC range runs upwards: not {entry!r}")
            ranges.append((int(low), int(high)))
        else:
            codes.add(low)
    return frozenset(codes), tuple(sorted(ranges))


def payment_channel(tx_type: TxType, pos_entry_mode: str | None) -> PaymentChannel:
    if tx_type is TxType.ATM:
        return PaymentChannel.ATM
    if tx_type is TxType.ECOM:
        return PaymentChannel.ECOMMERCE
    if pos_entry_mode is None:
        return PaymentChannel.UNKNOWN
    return ENTRY_MODES.get(pos_entry_mode[:2], PaymentChannel.UNKNOWN)


def period_start(period: Period, local_day: date) -> date:
    """The first day of the period holding `local_day` (the program's local date)."""
    if period is Period.DAY:
        return local_day
    if period is Period.WEEK:
        return local_day - timedelta(days=local_day.weekday())
    if period is Period.MONTH:
        return local_day.replace(day=1)
    return LIFETIME_START


CounterKey = tuple[uuid.UUID, Period, date]  # (card or balance id, period, period start)


@dataclass(frozen=True, slots=True)
class Payment:
    """What the controls read about one payment."""

    card_id: uuid.UUID
    balance_id: uuid.UUID
    mcc: str | None
    country: str | None
    channel: PaymentChannel
    amount: int  # in the card's currency
    local_day: date  # the program's local date now


def scope_key(control: Control, card_id: uuid.UUID, balance_id: uuid.UUID,
              local_day: date) -> CounterKey:
    """The counter a velocity control reads for a card's payment on a local day."""
    scope = card_id if control.per is CountedPer.CARD else balance_id
    return scope, control.period, period_start(control.period, local_day)


def counter_key(control: Control, payment: Payment) -> CounterKey:
    return scope_key(control, payment.card_id, payment.balance_id, payment.local_day)


def _mcc_matches(control: Control, mcc: str | None) -> bool:
    if mcc is None:
        return False
    if mcc in control.codes:
        return True
    code = int(mcc)
    return any(low <= code <= high for low, high in control.mcc_ranges)


def check(control: Control, payment: Payment,
          counters: Mapping[CounterKey, tuple[int, int]]) -> Decline | None:
    """The decline one control gives the payment, or None. `counters`: (amount, count) spent."""
    kind = control.kind
    if kind is Kind.MCC_BLOCK:
        return MCC_NOT_PERMITTED if _mcc_matches(control, payment.mcc) else None
    if kind is Kind.MCC_ALLOW:
        return None if _mcc_matches(control, payment.mcc) else MCC_NOT_PERMITTED
    if kind is Kind.COUNTRY_BLOCK:
        return COUNTRY_RESTRICTED if payment.country in control.codes else None
    if kind is Kind.COUNTRY_ALLOW:
        return None if payment.country in control.codes else COUNTRY_RESTRICTED
    if kind is Kind.CHANNEL_BLOCK:
        return CHANNEL_NOT_PERMITTED if payment.channel in control.channels else None
    if kind is Kind.AMOUNT_MAX:
        return AMOUNT_LIMIT_EXCEEDED if payment.amount > control.amount_max else None
    spent, count = counters.get(counter_key(control, payment), (0, 0))
    if control.count_max is not None and count + 1 > control.count_max:
        return VELOCITY_COUNT_EXCEEDED
    if control.amount_max is not None and spent + payment.amount > control.amount_max:
        return VELOCITY_AMOUNT_EXCEEDED
    return None


@dataclass(frozen=True, slots=True)
class Verdict:
    decline: Decline | None = None
    control: Control | None = None  # the ACTIVE control that declined
    shadow: tuple[tuple[Control, Decline], ...] = ()  # SHADOW controls that would have declined


PASS = Verdict()


def evaluate(controls: Iterable[Control], payment: Payment,
             counters: Mapping[CounterKey, tuple[int, int]]) -> Verdict:
    """Every control in order (`ordered`); the first ACTIVE decline is the answer."""
    decline, decider, shadow = None, None, []
    for control in controls:
        if control.status is Status.ACTIVE and decider is not None:
            continue
        outcome = check(control, payment, counters)
        if outcome is None:
            continue
        if control.status is Status.SHADOW:
            shadow.append((control, outcome))
        else:
            decline, decider = outcome, control
    if decider is None and not shadow:
        return PASS
    return Verdict(decline, decider, tuple(shadow))


def ordered(controls: Iterable[Control]) -> tuple[Control, ...]:
    """Controls in evaluation order: by level (program first), then by creation."""
    return tuple(sorted(controls, key=lambda c: (LEVEL_ORDER[c.level], c.created_order)))


def velocity_keys(controls: Iterable[Control], payment: Payment) -> tuple[dict[CounterKey, int], int]:
    """The counters an approval of the payment adds to ({key: bit}) and their bit set."""
    keys: dict[CounterKey, int] = {}
    for control in controls:
        if control.kind is Kind.VELOCITY:
            keys[counter_key(control, payment)] = PERIOD_BITS[(control.per, control.period)]
    bits = 0
    for bit in keys.values():
        bits |= bit
    return keys, bits


def counted_keys(bits: int, card_id: uuid.UUID, balance_id: uuid.UUID,
                 local_day: date) -> list[CounterKey]:
    """The counters an authorization was counted in, from its bit set (for a reversal)."""
    found = []
    for (per, period), bit in PERIOD_BITS.items():
        if bits & bit:
            scope = card_id if per is CountedPer.CARD else balance_id
            found.append((scope, period, period_start(period, local_day)))
    return found


def limits(controls: Iterable[Control], payment: Payment) -> dict[CounterKey, tuple[int | None, int | None]]:
    """The tightest ACTIVE (amount, count) limit on each counter the payment adds to."""
    found: dict[CounterKey, tuple[int | None, int | None]] = {}
    for control in controls:
        if control.kind is not Kind.VELOCITY or control.status is not Status.ACTIVE:
            continue
        key = counter_key(control, payment)
        amount, count = found.get(key, (None, None))
        found[key] = (tighter(amount, control.amount_max), tighter(count, control.count_max))
    return found


def tighter(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
