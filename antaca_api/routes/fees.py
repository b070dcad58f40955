"""Fee schedules per card program (versioned), exchange rates, fee runs and revenue reports (administration)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated

import asyncpg
from msgspec import Meta

from antaca_api import fee_schedules
from antaca_api.balances import check_currency
from antaca_api.domain_errors import EffectiveDateInPast, InvalidFeeSchedule, ValidationFailed
from antaca_api.fields import Currency
from antaca_api.routing import ADMIN_ONLY, Channel, Context, route
from antaca_api.schema import Body
from antaca_auth import fees as pricing
from antaca_auth.fees import FeeSchedule

# A change may not apply to the past (past charges keep their version); a little clock skew is allowed.
PAST_TOLERANCE = timedelta(minutes=5)


def effective_from(ctx: Context, asked: datetime | None) -> datetime:
    """When a change applies: the date asked (with an offset, not in the past) or now."""
    now = ctx.services.clock()
    if asked is None:
        return now
    if asked.tzinfo is None:
        raise ValidationFailed("effectiveFrom needs a time zone offset")
    if asked < now - PAST_TOLERANCE:
        raise EffectiveDateInPast()
    return asked


class NewFeeSchedule(Body):
    schedule: FeeSchedule
    effective_from: datetime | None = None  # default: now


class FeeScheduleVersion(Body):
    schedule_id: uuid.UUID
    program_id: uuid.UUID
    version: int
    effective_from: datetime
    schedule: FeeSchedule
    created_at: datetime


class FeeScheduleVersions(Body):
    items: list[FeeScheduleVersion]
    in_force: uuid.UUID | None  # the version that applies now


def version_view(r: asyncpg.Record) -> FeeScheduleVersion:
    return FeeScheduleVersion(schedule_id=r["id"], program_id=r["program_id"], version=r["version"],
                              effective_from=r["effective_from"], schedule=pricing.decode_schedule(r["schedule"]),
                              created_at=r["created_at"])


@route("POST", "/admin/programs/{programId}/fees", channel=Channel.ADMIN, roles=ADMIN_ONLY, body=NewFeeSchedule,
       response=FeeScheduleVersion, status=201,
       summary="Publish a new fee schedule version for a card program, applying from a date", tags=("fees",))
async def publish_schedule(ctx: Context, body: NewFeeSchedule) -> FeeScheduleVersion:
    program_id = ctx.path_id("programId")
    found = pricing.problems(body.schedule)
    if found:
        raise InvalidFeeSchedule("; ".join(found))
    effective = effective_from(ctx, body.effective_from)
    async with ctx.transaction() as conn:
        row = await fee_schedules.publish(conn, ctx.services.ledger, program_id, body.schedule,
                                          effective, ctx.admin.admin_id)
        ctx.audit_target = f"fee-schedule:{row['id']}"
    return version_view(row)


@route("GET", "/admin/programs/{programId}/fees", channel=Channel.ADMIN, response=FeeScheduleVersions,
       summary="A card program's fee schedule versions, oldest first, and the one in force", tags=("fees",))
async def list_schedules(ctx: Context, _: None) -> FeeScheduleVersions:
    program_id = ctx.path_id("programId")
    async with ctx.pool.acquire() as conn:
        found = await fee_schedules.versions(conn, program_id, ctx.services.clock())
    return FeeScheduleVersions(items=[version_view(r) for r in found.rows], in_force=found.in_force)


class FeeTypeRevenue(Body):
    fee_type: pricing.FeeType
    paid: int
    paid_count: int
    unpaid: int
    unpaid_count: int
    waived_count: int
    refunded: int


class FeeRevenue(Body):
    program_id: uuid.UUID
    currency: str
    by_type: list[FeeTypeRevenue]
    total_paid: int  # paid minus refunded: equals the revenue account's posted balance
    held: int  # transaction fees held with open authorizations (posted at clearing)
    revenue_account_posted: int


@route("GET", "/admin/programs/{programId}/fees/revenue", channel=Channel.ADMIN, response=FeeRevenue,
       summary="A card program's fee revenue by fee type, from its charges and its ledger account", tags=("fees",))
async def fee_revenue(ctx: Context, _: None) -> FeeRevenue:
    program_id = ctx.path_id("programId")
    async with ctx.pool.acquire() as conn:
        found = await fee_schedules.revenue(conn, program_id)
    rows, account = found.by_type, found.account
    by_type = [FeeTypeRevenue(fee_type=pricing.FeeType(r["fee_type"]), paid=int(r["paid"]), paid_count=r["paid_count"],
                              unpaid=int(r["unpaid"]), unpaid_count=r["unpaid_count"], waived_count=r["waived_count"],
                              refunded=int(r["refunded"])) for r in rows]
    return FeeRevenue(program_id=program_id, currency=found.currency, by_type=by_type,
                      total_paid=sum(t.paid - t.refunded for t in by_type),
                      held=account["held"] if account else 0,
                      revenue_account_posted=account["posted"] if account else 0)


RateText = Annotated[str, Meta(pattern=r"^[0-9]{1,18}(\.[0-9]{1,12})?$", description="decimal, e.g. 4.3125")]


class NewRate(Body):
    base: Currency
    quote: Currency
    rate: RateText  # 1 base = rate quote
    effective_from: datetime | None = None


class Rate(Body):
    base: str
    quote: str
    rate: str
    effective_from: datetime
    created_at: datetime


class Rates(Body):
    items: list[Rate]


def rate_view(r: asyncpg.Record) -> Rate:
    return Rate(base=r["base"], quote=r["quote"], rate=str(r["rate"].normalize()), effective_from=r["effective_from"],
                created_at=r["created_at"])


@route("POST", "/admin/fx-rates", channel=Channel.ADMIN, roles=ADMIN_ONLY, body=NewRate, response=Rate, status=201,
       summary="Set an exchange rate from a date (payments in another currency than the balance are converted)",
       tags=("fees",))
async def set_rate(ctx: Context, body: NewRate) -> Rate:
    try:
        rate = Decimal(body.rate)
    except InvalidOperation:
        raise ValidationFailed("rate must be a decimal number") from None
    if rate <= 0:
        raise ValidationFailed("rate must be positive")
    if body.base == body.quote:
        raise ValidationFailed("base and quote must differ")
    await check_currency(ctx.services.ledger, body.base)
    await check_currency(ctx.services.ledger, body.quote)
    effective = effective_from(ctx, body.effective_from)
    ctx.audit_target = f"fx-rate:{body.base}{body.quote}"
    async with ctx.transaction() as conn:
        row = await fee_schedules.add_rate(conn, body.base, body.quote, rate, effective,
                                           ctx.admin.admin_id)
    ctx.services.engine.forget_rates()
    return rate_view(row)


@route("GET", "/admin/fx-rates", channel=Channel.ADMIN, response=Rates,
       summary="Exchange rates, every version, newest first per pair", tags=("fees",))
async def list_rates(ctx: Context, _: None) -> Rates:
    return Rates(items=[rate_view(r) for r in await fee_schedules.rates(ctx.pool)])


class FeeRun(Body):
    charged: int
    paid: int
    unpaid: int
    waived: int
    collected: int


@route("POST", "/admin/fees/run", channel=Channel.ADMIN, roles=ADMIN_ONLY, response=FeeRun,
       idempotent=True,
       summary="Run the recurring fee job for the current period now, then collect unpaid fees (idempotent)",
       tags=("fees",))
async def run_fees(ctx: Context, _: None) -> FeeRun:
    services = ctx.services
    run = await fee_schedules.run_recurring(services.pool, services.ledger, services.clock())
    done = run.charges
    async with ctx.transaction():
        pass  # the audit record of the run
    return FeeRun(charged=len(done), paid=sum(c.state == "PAID" for c in done),
                  unpaid=sum(c.state == "UNPAID" for c in done), waived=sum(c.state == "WAIVED" for c in done),
                  collected=run.collected)
