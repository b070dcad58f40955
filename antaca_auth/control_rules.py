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
from typing import NamedTuple

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
    CHANNEL_ALLOW = "CHANNEL_ALLOW"
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
# A counted window is a (counted per, period) pair, numbered 0..7; its bit in an authorization's
# velocity_periods is 1 << its number.
WINDOWS = tuple((per, period) for per in CountedPer for period in Period)
WINDOW_OF = {window: number for number, window in enumerate(WINDOWS)}
# Each window as (counted per card, period): no enum lookups on the hot path.
_WINDOW_PARTS = tuple((per is CountedPer.CARD, period) for per, period in WINDOWS)

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
    window: int = -1  # VELOCITY: the number of its (per, period) window


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
                   created_order,
                   WINDOW_OF[(CountedPer(per), Period(period))] if period and per else -1)


def parse_mccs(entries: Iterable[str]) -> tuple[frozenset[str], tuple[tuple[int, int], ...]]:
    """Single codes ("5411") and inclusive ranges ("5000-5999"); ValueError for anything else."""
    codes, ranges = set(), []
    for entry in entries:
        low, dash, high = entry.partition("-")
        digits = len(low) == 4 and low.isdigit()
        if not digits or (dash and not (len(high) == 4 and high.isdigit())):
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
Spent = tuple[int, int]  # (amount, count) counted in a window
NOTHING_SPENT: Spent = (0, 0)


class Payment(NamedTuple):
    """What the controls read about one payment (a tuple: one is built for every payment)."""

    card_id: uuid.UUID
    balance_id: uuid.UUID
    mcc: str | None
    country: str | None
    channel: PaymentChannel
    amount: int  # in the card's currency


def period_starts(local_day: date) -> dict[Period, date]:
    return {period: period_start(period, local_day) for period in Period}


def window_key(window: int, card_id: uuid.UUID, balance_id: uuid.UUID,
               starts: Mapping[Period, date]) -> CounterKey:
    """The counter of a window for a card's payment, the periods starting at `starts`."""
    per_card, period = _WINDOW_PARTS[window]
    return (card_id if per_card else balance_id), period, starts[period]


@dataclass(frozen=True, slots=True)
class ControlSet:
    """The controls in force on a card, prepared once per combination of scopes: in evaluation
    order, the windows their velocity controls count, and the tightest ACTIVE limit of each."""

    controls: tuple[Control, ...]
    windows: tuple[int, ...]
    limits: tuple[tuple[int | None, int | None], ...]  # (amount, count) by window, as `windows`
    bits: int  # the windows as an authorization's velocity_periods

    def keys(self, card_id: uuid.UUID, balance_id: uuid.UUID,
             starts: Mapping[Period, date]) -> list[CounterKey]:
        return [window_key(window, card_id, balance_id, starts) for window in self.windows]


def control_set(*parts: Iterable[Control]) -> ControlSet:
    """The set of the controls of a card's scopes (program, balance, card), each part ordered."""
    controls = ordered(c for part in parts for c in part)
    limits: dict[int, tuple[int | None, int | None]] = {}
    for control in controls:
        if control.kind is not Kind.VELOCITY:
            continue
        amount, count = limits.get(control.window, (None, None))
        if control.status is Status.ACTIVE:
            amount, count = tighter(amount, control.amount_max), tighter(count, control.count_max)
        limits[control.window] = (amount, count)
    windows = tuple(sorted(limits))
    bits = 0
    for window in windows:
        bits |= 1 << window
    return ControlSet(controls, windows, tuple(limits[w] for w in windows), bits)


def _mcc_matches(control: Control, mcc: str | None) -> bool:
    if mcc is None:
        return False
    if mcc in control.codes:
        return True
    if not control.mcc_ranges:
        return False
    code = int(mcc)
    return any(low <= code <= high for low, high in control.mcc_ranges)


def check(control: Control, payment: Payment, spent: Mapping[int, Spent]) -> Decline | None:
    """The decline one control gives the payment, or None. `spent`: by window, what the card or
    balance spent in the period so far."""
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
    if kind is Kind.CHANNEL_ALLOW:
        return None if payment.channel in control.channels else CHANNEL_NOT_PERMITTED
    if kind is Kind.AMOUNT_MAX:
        return AMOUNT_LIMIT_EXCEEDED if payment.amount > control.amount_max else None
    amount, count = spent.get(control.window, NOTHING_SPENT)
    if control.count_max is not None and count + 1 > control.count_max:
        return VELOCITY_COUNT_EXCEEDED
    if control.amount_max is not None and amount + payment.amount > control.amount_max:
        return VELOCITY_AMOUNT_EXCEEDED
    return None


@dataclass(frozen=True, slots=True)
class Verdict:
    decline: Decline | None = None
    control: Control | None = None  # the ACTIVE control that declined
    shadow: tuple[tuple[Control, Decline], ...] = ()  # SHADOW controls that would have declined


PASS = Verdict()
_ACTIVE, _SHADOW = Status.ACTIVE, Status.SHADOW


def evaluate(controls: Iterable[Control], payment: Payment,
             spent: Mapping[int, Spent]) -> Verdict:
    """Every control in order (`ordered`); the first ACTIVE decline is the answer."""
    decline, decider, shadow = None, None, []
    for control in controls:
        if decider is not None and control.status is _ACTIVE:
            continue
        outcome = check(control, payment, spent)
        if outcome is None:
            continue
        if control.status is _SHADOW:
            shadow.append((control, outcome))
        else:
            decline, decider = outcome, control
    if decider is None and not shadow:
        return PASS
    return Verdict(decline, decider, tuple(shadow))


def ordered(controls: Iterable[Control]) -> tuple[Control, ...]:
    """Controls in evaluation order: by level (program first), then by creation."""
    return tuple(sorted(controls, key=lambda c: (LEVEL_ORDER[c.level], c.created_order)))


def counted_keys(bits: int, card_id: uuid.UUID, balance_id: uuid.UUID,
                 local_day: date) -> list[CounterKey]:
    """The counters an authorization was counted in, from its bit set (for a reversal)."""
    starts = period_starts(local_day)
    return [window_key(window, card_id, balance_id, starts)
            for window in range(len(WINDOWS)) if bits & (1 << window)]


def tighter(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
