"""Spending controls for the partner, admin and customer channels (docs/controls.md): who may set
which control on what, the rules' validation, and a customer's limits never looser than the
partner's. The SQL is antaca_auth/controls.py's; the engine evaluates the controls.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import msgspec

from antaca_api.domain_errors import (
    ControlLooserThanPartner,
    ControlNotShadow,
    Forbidden,
    InvalidControl,
    NotFound,
)
from antaca_auth import controls as store
from antaca_auth.control_rules import (
    CountedPer,
    Kind,
    Level,
    PaymentChannel,
    Period,
    Status,
    parse_mccs,
)

MCC_ENTRIES_MAX = 500
COUNTRIES_MAX = 300
CONTROLS_PAGE_SIZE_MAX = 500
SHADOW_SAMPLE_SIZE_MAX = 100
SHADOW_REPORT_PERIOD_DAYS_MAX = 366
LIMIT_MINOR_UNITS_MAX = 2**62
COUNT_MAX = 1_000_000


@dataclass(frozen=True)
class Actor:
    """Who acts: an administrator (no partner), a partner, or a partner's customer."""

    set_by: str  # ADMIN, PARTNER or CUSTOMER
    partner_id: uuid.UUID | None = None
    customer_id: uuid.UUID | None = None


class RuleFields(msgspec.Struct, kw_only=True):
    """A control's rule as the API carries it; which fields a kind takes is in `rule_of`."""

    mccs: list[str] | None = None
    countries: list[str] | None = None
    channels: list[PaymentChannel] | None = None
    amount_max: int | None = None
    count_max: int | None = None
    period: Period | None = None
    per: CountedPer | None = None


KIND_FIELDS = {
    Kind.MCC_ALLOW: {"mccs"}, Kind.MCC_BLOCK: {"mccs"},
    Kind.COUNTRY_ALLOW: {"countries"}, Kind.COUNTRY_BLOCK: {"countries"},
    Kind.CHANNEL_ALLOW: {"channels"}, Kind.CHANNEL_BLOCK: {"channels"},
    Kind.AMOUNT_MAX: {"amount_max"},
    Kind.VELOCITY: {"amount_max", "count_max", "period", "per"},
}
RULE_KEYS = {"mccs": "mccs", "countries": "countries", "channels": "channels",
             "amount_max": "amountMax", "count_max": "countMax", "period": "period", "per": "per"}


def rule_of(kind: Kind, fields: RuleFields) -> dict:
    """The stored rule of a control of `kind`; InvalidControl when the fields do not fit it."""
    given = {name for name in RULE_KEYS if getattr(fields, name) is not None}
    extra = given - KIND_FIELDS[kind]
    if extra:
        raise InvalidControl(f"a {kind} control takes no {', '.join(sorted(extra))}")
    if kind in (Kind.MCC_ALLOW, Kind.MCC_BLOCK):
        _bounded_list(fields.mccs, "mccs", MCC_ENTRIES_MAX)
        try:
            parse_mccs(fields.mccs)
        except ValueError as exc:
            raise InvalidControl(str(exc)) from None
    elif kind in (Kind.COUNTRY_ALLOW, Kind.COUNTRY_BLOCK):
        _bounded_list(fields.countries, "countries", COUNTRIES_MAX)
        if not all(len(c) in (2, 3) and c.isascii() and c.isupper() and c.isalpha()
                   for c in fields.countries):
            raise InvalidControl("a country is an ISO 3166-1 code, as DE43 carries it")
    elif kind in (Kind.CHANNEL_ALLOW, Kind.CHANNEL_BLOCK):
        _bounded_list(fields.channels, "channels", len(PaymentChannel))
    elif kind is Kind.AMOUNT_MAX:
        _limit(fields.amount_max, "amountMax", LIMIT_MINOR_UNITS_MAX, required=True)
    else:
        if fields.period is None or fields.per is None:
            raise InvalidControl("a VELOCITY control needs a period and what it counts per")
        if fields.amount_max is None and fields.count_max is None:
            raise InvalidControl("a VELOCITY control limits an amount, a count or both")
        _limit(fields.amount_max, "amountMax", LIMIT_MINOR_UNITS_MAX)
        _limit(fields.count_max, "countMax", COUNT_MAX)
    return {RULE_KEYS[name]: (sorted(set(value)) if isinstance(value, list) else value)
            for name in given if (value := getattr(fields, name)) is not None}


def _bounded_list(values: list | None, name: str, most: int) -> None:
    if not values or len(values) > most:
        raise InvalidControl(f"{name}: between 1 and {most} entries")


def _limit(value: int | None, name: str, most: int, *, required: bool = False) -> None:
    if value is None:
        if required:
            raise InvalidControl(f"{name} is required")
        return
    if not 0 < value <= most:
        raise InvalidControl(f"{name}: a positive integer up to {most}")


def looser_than(rule: dict, kind: Kind, theirs: list[asyncpg.Record] | list[dict]) -> str | None:
    """What of a customer's limit is looser than an ACTIVE partner or admin limit of the same kind
    (and, for velocity, period and counting) on the card; None when none is."""
    for other in theirs:
        if (other["kind"] != kind or other["status"] != Status.ACTIVE
                or other["set_by"] == "CUSTOMER"):
            continue
        limit = other["rule"]
        if kind is Kind.VELOCITY and (limit.get("period"), limit.get("per")) != (
                rule.get("period"), rule.get("per")):
            continue
        for key in ("amountMax", "countMax"):
            if key in rule and key in limit and rule[key] > limit[key]:
                return f"{key} {rule[key]} is above the partner's {limit[key]}"
    return None


async def _scope_partner(conn: asyncpg.Connection, actor: Actor, level: Level,
                         scope_id: uuid.UUID) -> uuid.UUID:
    """The partner whose cards the scope holds, once the actor may set controls on it."""
    owner = await store.scope_owner(conn, level, scope_id)
    if owner is None:
        raise NotFound()
    if actor.partner_id is not None and owner["partner_id"] != actor.partner_id:
        raise NotFound()
    if actor.customer_id is not None and owner["customer_id"] != actor.customer_id:
        raise NotFound()
    return owner["partner_id"]


async def create(conn: asyncpg.Connection, actor: Actor, *, level: Level, scope_id: uuid.UUID,
                 kind: Kind, status: Status, fields: RuleFields) -> asyncpg.Record:
    """Set a new control (version 1) on a scope the actor may reach."""
    partner_id = await _scope_partner(conn, actor, level, scope_id)
    if level is Level.PROGRAM and actor.set_by != "ADMIN":
        raise InvalidControl("PROGRAM controls are an administrator's; a partner sets PRODUCT")
    rule = rule_of(kind, fields)
    if actor.set_by == "CUSTOMER":
        await _check_not_looser(conn, scope_id, kind, rule)
    return await store.insert(conn, uuid.uuid4(), level, scope_id, partner_id, actor.customer_id,
                              actor.set_by, str(status), str(kind), rule)


async def _check_not_looser(conn: asyncpg.Connection, card_id: uuid.UUID, kind: Kind,
                            rule: dict) -> None:
    problem = looser_than(rule, kind, await store.in_force_on_card(conn, card_id))
    if problem is not None:
        raise ControlLooserThanPartner(f"a customer's limit is never looser: {problem}")


async def find(conn: asyncpg.Connection, actor: Actor, control_id: uuid.UUID, *,
               lock: bool = False) -> asyncpg.Record:
    """A live control the actor may see: a partner its own, a customer those it set."""
    record = await store.find(conn, control_id, lock=lock)
    if record is None:
        raise NotFound()
    if actor.partner_id is not None and record["partner_id"] != actor.partner_id:
        raise NotFound()
    if actor.customer_id is not None and (record["customer_id"] != actor.customer_id
                                          or record["set_by"] != "CUSTOMER"):
        raise NotFound()
    return record


async def _changeable(conn: asyncpg.Connection, actor: Actor,
                      control_id: uuid.UUID) -> asyncpg.Record:
    """The control, locked, once the actor may change it (a partner reads the administrator's
    PROGRAM controls on its programs, and changes none)."""
    record = await find(conn, actor, control_id, lock=True)
    if actor.set_by == "PARTNER" and record["level"] == Level.PROGRAM:
        raise Forbidden("PROGRAM controls are changed by administrators")
    return record


async def update(conn: asyncpg.Connection, actor: Actor, control_id: uuid.UUID, *,
                 status: Status | None, fields: RuleFields) -> asyncpg.Record:
    """Replace the control's rule (and status): a new version; the old one stays on the
    authorizations it decided."""
    record = await _changeable(conn, actor, control_id)
    kind = Kind(record["kind"])
    rule = rule_of(kind, fields)
    if actor.set_by == "CUSTOMER":
        if status is Status.SHADOW:
            raise InvalidControl("a customer's controls are ACTIVE")
        await _check_not_looser(conn, record["scope_id"], kind, rule)
    return await store.update(conn, control_id, str(status or record["status"]), rule)


async def promote(conn: asyncpg.Connection, actor: Actor, control_id: uuid.UUID) -> asyncpg.Record:
    """SHADOW to ACTIVE, one call: the same rule, a new version."""
    record = await _changeable(conn, actor, control_id)
    if record["status"] != Status.SHADOW:
        raise ControlNotShadow()
    return await store.update(conn, control_id, str(Status.ACTIVE), record["rule"])


async def delete(conn: asyncpg.Connection, actor: Actor, control_id: uuid.UUID) -> None:
    await _changeable(conn, actor, control_id)
    await store.delete(conn, control_id)


async def listing(conn: asyncpg.Connection, actor: Actor, scope_id: uuid.UUID | None,
                  limit: int) -> list[asyncpg.Record]:
    """Live controls, oldest first: the partner's own, or every one for an administrator."""
    return await store.listing(conn, actor.partner_id, scope_id,
                               min(limit, CONTROLS_PAGE_SIZE_MAX))


async def card_controls(conn: asyncpg.Connection, actor: Actor,
                        card_id: uuid.UUID) -> list[asyncpg.Record]:
    """The controls set on the customer's own card (by anyone)."""
    await _scope_partner(conn, actor, Level.CARD, card_id)
    return await store.listing(conn, actor.partner_id, card_id, CONTROLS_PAGE_SIZE_MAX)


async def shadow_report(conn: asyncpg.Connection, actor: Actor, control_id: uuid.UUID,
                        since: datetime, until: datetime, sample_size: int) -> tuple[list, list]:
    """What the control would have declined in SHADOW over [since, until): totals, a sample."""
    await find(conn, actor, control_id)
    if not since < until <= since + timedelta(days=SHADOW_REPORT_PERIOD_DAYS_MAX):
        raise InvalidControl(
            f"a report covers since < until, at most {SHADOW_REPORT_PERIOD_DAYS_MAX} days")
    return await store.shadow_report(conn, control_id, since, until,
                                     min(sample_size, SHADOW_SAMPLE_SIZE_MAX))
