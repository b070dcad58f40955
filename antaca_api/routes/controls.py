"""Spending controls: partners (their programs' products, balances and cards), administrators
(any level) and customers (tighter limits on their own cards); shadow reports; the program's
time zone that velocity periods follow (docs/controls.md)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

import msgspec
from msgspec import Meta

from antaca_api import controls as domain
from antaca_api.controls import Actor, RuleFields
from antaca_api.domain_errors import InvalidTimeZone, NotFound, ValidationFailed
from antaca_api.routes.programs import CardProgram, program_view
from antaca_api.routing import ADMIN_MANAGER, ADMIN_ONLY, Channel, Context, route
from antaca_api.schema import Body
from antaca_auth import authorization_settings
from antaca_auth.control_rules import CountedPer, Kind, Level, PaymentChannel, Period, Status

SHADOW_REPORT_DAYS_DEFAULT = 30
SHADOW_SAMPLE_SIZE_DEFAULT = 20
TIME_ZONE_NAME_LENGTH_MAX = 64

Mcc = Annotated[str, Meta(pattern=r"^[0-9]{4}(-[0-9]{4})?$", description="an MCC or a range")]
MerchantCountry = Annotated[str, Meta(pattern=r"^[A-Z]{2,3}$")]
LimitAmount = Annotated[int, Meta(gt=0, le=domain.LIMIT_MINOR_UNITS_MAX,
                                  description="minor units of the card's currency")]
LimitCount = Annotated[int, Meta(gt=0, le=domain.COUNT_MAX)]


class ControlRule(Body, kw_only=True):
    """The rule's fields; which a kind takes: MCC_* mccs, COUNTRY_* countries, CHANNEL_*
    channels, AMOUNT_MAX amountMax, VELOCITY period, per and amountMax and/or countMax."""

    mccs: Annotated[list[Mcc], Meta(max_length=domain.MCC_ENTRIES_MAX)] | None = None
    countries: Annotated[list[MerchantCountry], Meta(max_length=domain.COUNTRIES_MAX)] | None = None
    channels: list[PaymentChannel] | None = None
    amount_max: LimitAmount | None = None
    count_max: LimitCount | None = None
    period: Period | None = None
    per: CountedPer | None = None


class NewControl(ControlRule, kw_only=True):
    level: Level
    scope_id: uuid.UUID  # the program (PROGRAM, PRODUCT), the balance or the card
    kind: Kind
    status: Status = Status.ACTIVE


class NewCardControl(ControlRule, kw_only=True):
    """A customer's own limit on their card: always ACTIVE, never looser than the partner's."""

    kind: Kind


class ControlChange(ControlRule, kw_only=True):
    """The control's whole new rule (same kind), and its status: a new version."""

    status: Status | None = None


class Control(Body):
    control_id: uuid.UUID
    version: int
    level: Level
    scope_id: uuid.UUID
    kind: Kind
    status: Status
    set_by: str
    rule: ControlRule
    created_at: datetime
    updated_at: datetime


class Controls(Body):
    items: list[Control]


class ShadowTotal(Body):
    currency: str
    authorizations: int
    amount: int


class ShadowHit(Body):
    authorization_id: uuid.UUID
    control_version: int
    response_code: str
    reason: str
    amount: int
    currency: str
    created_at: datetime
    decision: str  # what the payment was actually answered
    type: str
    mcc: str | None = None
    merchant_country: str | None = None


class ShadowReport(Body):
    control_id: uuid.UUID
    since: datetime
    until: datetime
    totals: list[ShadowTotal]
    sample: list[ShadowHit]


class ProgramTimeZone(Body):
    time_zone: Annotated[str, Meta(min_length=1, max_length=TIME_ZONE_NAME_LENGTH_MAX,
                                   description="IANA name, e.g. Europe/Warsaw")]


def _view(r) -> Control:
    return Control(control_id=r["id"], version=r["version"], level=Level(r["level"]),
                   scope_id=r["scope_id"], kind=Kind(r["kind"]), status=Status(r["status"]),
                   set_by=r["set_by"], rule=msgspec.convert(r["rule"], ControlRule),
                   created_at=r["created_at"], updated_at=r["updated_at"])


def _fields(body: ControlRule) -> RuleFields:
    return RuleFields(mccs=body.mccs, countries=body.countries, channels=body.channels,
                      amount_max=body.amount_max, count_max=body.count_max, period=body.period,
                      per=body.per)


def _actor(ctx: Context) -> Actor:
    if ctx.customer is not None:
        return Actor("CUSTOMER", ctx.partner_id, ctx.customer.customer_id)
    if ctx.admin is not None:
        return Actor("ADMIN")
    return Actor("PARTNER", ctx.partner_id)


def _register(paths: list[tuple[str, Channel, frozenset | None]], method: str, **kw):
    def wrap(handler):
        for path, channel, roles in paths:
            extra = {"roles": roles} if roles is not None else {}
            route(method, path, channel=channel, **extra, **kw)(handler)
        return handler

    return wrap


SECURE, ADMIN, ME = "/secure/controls", "/admin/controls", "/customers/me"
ONE = "/{controlId}"


@_register([(SECURE, Channel.PARTNER, None), (ADMIN, Channel.ADMIN, ADMIN_MANAGER)], "POST",
           body=NewControl, response=Control, status=201, tags=("controls",),
           summary="Set a spending control on a program (administrators), a partner's card "
                   "product, a balance or a card; ACTIVE or SHADOW")
async def create_control(ctx: Context, body: NewControl) -> Control:
    async with ctx.transaction() as conn:
        row = await domain.create(conn, _actor(ctx), level=body.level, scope_id=body.scope_id,
                                  kind=body.kind, status=body.status, fields=_fields(body))
    ctx.audit_target = f"control:{row['id']}"
    return _view(row)


@_register([(SECURE, Channel.PARTNER, None), (ADMIN, Channel.ADMIN, None)], "GET",
           response=Controls, tags=("controls",),
           summary="List spending controls (query scopeId: of one program, balance or card)")
async def list_controls(ctx: Context, _body: None) -> Controls:
    scope = ctx.request.query.get("scopeId")
    try:
        scope_id = uuid.UUID(scope) if scope is not None else None
    except ValueError:
        raise ValidationFailed("query parameter scopeId must be a UUID") from None
    limit = ctx.query_int("limit", domain.CONTROLS_PAGE_SIZE_MAX, low=1,
                          high=domain.CONTROLS_PAGE_SIZE_MAX)
    async with ctx.pool.acquire() as conn:
        rows = await domain.listing(conn, _actor(ctx), scope_id, limit)
    return Controls(items=[_view(r) for r in rows])


@_register([(SECURE + ONE, Channel.PARTNER, None), (ADMIN + ONE, Channel.ADMIN, None)], "GET",
           response=Control, tags=("controls",), summary="A spending control")
async def get_control(ctx: Context, _body: None) -> Control:
    async with ctx.pool.acquire() as conn:
        return _view(await domain.find(conn, _actor(ctx), ctx.path_id("controlId")))


@_register([(SECURE + ONE, Channel.PARTNER, None), (ADMIN + ONE, Channel.ADMIN, ADMIN_MANAGER),
            (f"{ME}/controls{ONE}", Channel.CUSTOMER, None)], "PUT",
           body=ControlChange, response=Control, tags=("controls",),
           summary="Replace a spending control's rule or status: a new version")
async def update_control(ctx: Context, body: ControlChange) -> Control:
    control_id = ctx.path_id("controlId")
    ctx.audit_target = f"control:{control_id}"
    async with ctx.transaction() as conn:
        row = await domain.update(conn, _actor(ctx), control_id, status=body.status,
                                  fields=_fields(body))
    return _view(row)


@_register([(SECURE + ONE, Channel.PARTNER, None), (ADMIN + ONE, Channel.ADMIN, ADMIN_MANAGER),
            (f"{ME}/controls{ONE}", Channel.CUSTOMER, None)], "DELETE",
           tags=("controls",), status=204, summary="Delete a spending control")
async def delete_control(ctx: Context, _body: None) -> None:
    control_id = ctx.path_id("controlId")
    ctx.audit_target = f"control:{control_id}"
    async with ctx.transaction() as conn:
        await domain.delete(conn, _actor(ctx), control_id)


@_register([(SECURE + ONE + "/promote", Channel.PARTNER, None),
            (ADMIN + ONE + "/promote", Channel.ADMIN, ADMIN_MANAGER)], "POST",
           response=Control, tags=("controls",),
           summary="Promote a SHADOW control to ACTIVE (a new version)")
async def promote_control(ctx: Context, _body: None) -> Control:
    control_id = ctx.path_id("controlId")
    ctx.audit_target = f"control:{control_id}"
    async with ctx.transaction() as conn:
        return _view(await domain.promote(conn, _actor(ctx), control_id))


def _query_time(ctx: Context, name: str, default: datetime) -> datetime:
    raw = ctx.request.query.get(name)
    if raw is None:
        return default
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ValidationFailed(f"query parameter {name} must be an ISO 8601 time") from None
    if value.tzinfo is None:
        raise ValidationFailed(f"query parameter {name} needs its UTC offset")
    return value


@_register([(SECURE + ONE + "/shadow-report", Channel.PARTNER, None),
            (ADMIN + ONE + "/shadow-report", Channel.ADMIN, None)], "GET",
           response=ShadowReport, tags=("controls",),
           summary="What a control would have declined (query since, until: ISO times, default "
                   "the last 30 days; sample: how many hits to list)")
async def shadow_report(ctx: Context, _body: None) -> ShadowReport:
    control_id = ctx.path_id("controlId")
    async with ctx.pool.acquire() as conn:
        until = _query_time(ctx, "until", datetime.now(UTC))
        since = _query_time(ctx, "since", until - timedelta(days=SHADOW_REPORT_DAYS_DEFAULT))
        sample = ctx.query_int("sample", SHADOW_SAMPLE_SIZE_DEFAULT, low=0,
                               high=domain.SHADOW_SAMPLE_SIZE_MAX)
        totals, hits = await domain.shadow_report(conn, _actor(ctx), control_id, since, until,
                                                  sample)
    return ShadowReport(
        control_id=control_id, since=since, until=until,
        totals=[ShadowTotal(currency=t["currency"], authorizations=t["authorizations"],
                            amount=t["amount"]) for t in totals],
        sample=[ShadowHit(**{k: h[k] for k in (
            "authorization_id", "control_version", "response_code", "reason", "amount",
            "currency", "created_at", "decision", "type", "mcc", "merchant_country")})
            for h in hits])


@route("POST", f"{ME}/cards/{{cardId}}/controls", channel=Channel.CUSTOMER, body=NewCardControl,
       response=Control, status=201, tags=("controls",),
       summary="Set a limit on one's own card: ACTIVE, never looser than the partner's")
async def create_card_control(ctx: Context, body: NewCardControl) -> Control:
    async with ctx.transaction() as conn:
        row = await domain.create(conn, _actor(ctx), level=Level.CARD,
                                  scope_id=ctx.path_id("cardId"), kind=body.kind,
                                  status=Status.ACTIVE, fields=_fields(body))
    return _view(row)


@route("GET", f"{ME}/cards/{{cardId}}/controls", channel=Channel.CUSTOMER, response=Controls,
       tags=("controls",), summary="The controls set on one's own card")
async def list_card_controls(ctx: Context, _body: None) -> Controls:
    async with ctx.pool.acquire() as conn:
        rows = await domain.card_controls(conn, _actor(ctx), ctx.path_id("cardId"))
    return Controls(items=[_view(r) for r in rows])


@route("PUT", "/admin/programs/{programId}/time-zone", channel=Channel.ADMIN, roles=ADMIN_ONLY,
       body=ProgramTimeZone, response=CardProgram, tags=("programs", "controls"),
       summary="Set the program's time zone: where its velocity limits' days, weeks and months "
               "begin (UTC by default)")
async def set_time_zone(ctx: Context, body: ProgramTimeZone) -> CardProgram:
    program_id = ctx.path_id("programId")
    ctx.audit_target = f"program:{program_id}"
    async with ctx.transaction() as conn:
        try:
            row = await authorization_settings.set_program_time_zone(conn, program_id,
                                                                     body.time_zone)
        except ValueError:
            raise InvalidTimeZone() from None
    if row is None:
        raise NotFound("no such card program")
    return program_view(row)
