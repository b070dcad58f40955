"""Summary balances for the admin panel: users, partners and wallet totals per currency."""

from __future__ import annotations

from antaca_api import summaries as repo
from antaca_api.routing import Channel, Context, route
from antaca_api.summaries import BalanceSummaries


@route("GET", "/admin/summaries", channel=Channel.ADMIN, response=BalanceSummaries,
       summary="Summary balances per currency: users, partner deposit and credit, wallet (from the ledger)",
       tags=("summaries",))
async def global_summaries(ctx: Context, _: None) -> BalanceSummaries:
    async with ctx.pool.acquire() as conn:
        return await repo.global_summaries(conn)


@route("GET", "/admin/partners/{partnerId}/summaries", channel=Channel.ADMIN, response=BalanceSummaries,
       summary="One partner's summary balances per currency (its users' balances and its own)",
       tags=("summaries",))
async def partner_summaries(ctx: Context, _: None) -> BalanceSummaries:
    partner_id = ctx.path_id("partnerId")
    async with ctx.pool.acquire() as conn:
        return await repo.partner_summaries(conn, partner_id)
