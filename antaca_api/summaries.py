"""Summary balances: per-currency totals of user, corporate and partner balances, from the ledger.

The figures are plain aggregates over the ledger's `accounts` counters, read in one statement so
they are one consistent snapshot (a batch of transfers is either wholly in it or not at all).
Nothing is maintained incrementally: a summary row updated by every transfer would be a hot row
that serializes the authorization engine.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg

from antaca_api.partners import check_exists as check_partner_exists
from antaca_api.schema import Body
from antaca_auth.accounts import AccountKind, Counters, available_balance, posted_balance
from antaca_auth.query import Query

USER_KINDS = (AccountKind.USER_BALANCE, AccountKind.CORPORATE_BALANCE)
PARTNER_KINDS = (AccountKind.PARTNER_DEPOSIT, AccountKind.PARTNER_CREDIT)
SUMMARY_KINDS = USER_KINDS + PARTNER_KINDS

# The raw counters are summed (as numeric, so no total can overflow bigint) and the derived
# balances are taken from the sums: posted and available are linear in the counters, so the sum
# of the balances is the balance of the sums, with the same definitions as the accounts'.
GLOBAL_TOTALS = Query(
    """SELECT currency, kind, count(*) AS accounts,
              sum(debits_posted) AS debits_posted, sum(credits_posted) AS credits_posted,
              sum(debits_pending) AS debits_pending, sum(credits_pending) AS credits_pending
       FROM accounts
       WHERE kind = ANY(:kinds::text[])
       GROUP BY currency, kind"""
)

# One statement, so the partner's user and partner balances come from the same snapshot. User and
# corporate balances are found through `balances.partner_id` (index balances_partner), the
# partner's own money through `partner_accounts`; the ledger's kind decides what each account
# counts as. Each source is joined and aggregated on its own: over one UNION ALL of both, the
# planner hashed all of `accounts` rather than the partner's ids (about 1.5x slower for a partner
# with 6% of 1e6 accounts).
PARTNER_TOTALS = Query(
    """SELECT a.currency, a.kind, count(*) AS accounts,
              sum(a.debits_posted) AS debits_posted, sum(a.credits_posted) AS credits_posted,
              sum(a.debits_pending) AS debits_pending, sum(a.credits_pending) AS credits_pending
       FROM balances b JOIN accounts a ON a.id = b.account_id
       WHERE b.partner_id = :partner_id AND a.kind = ANY(:kinds::text[])
       GROUP BY a.currency, a.kind
       UNION ALL
       SELECT a.currency, a.kind, count(*),
              sum(a.debits_posted), sum(a.credits_posted), sum(a.debits_pending), sum(a.credits_pending)
       FROM partner_accounts p JOIN accounts a ON a.id = p.account_id
       WHERE p.partner_id = :partner_id AND a.kind = ANY(:kinds::text[])
       GROUP BY a.currency, a.kind"""
)


@dataclass(frozen=True)
class KindTotals:
    """Summed counters of every account of one kind in one currency."""

    currency: str
    kind: AccountKind
    accounts: int
    balance: Counters


class PostedAvailable(Body):
    posted: int  # minor units
    available: int  # posted less the holds against it


class UsersSummary(Body):
    posted: int
    available: int
    customers: int  # posted, user balances
    corporations: int  # posted, corporate balances
    count: int  # user and corporate balances


class PartnersSummary(Body):
    deposit: PostedAvailable
    credit: PostedAvailable


class CurrencySummary(Body):
    currency: str
    users: UsersSummary
    partners: PartnersSummary
    wallet: PostedAvailable  # users + partner deposit + partner credit


class BalanceSummaries(Body):
    items: list[CurrencySummary]  # one per currency that has any such account, by currency code


def _totals(rows: Iterable[asyncpg.Record]) -> list[KindTotals]:
    # sum() of bigint is numeric (Decimal); int() of it is exact.
    return [
        KindTotals(
            currency=r["currency"], kind=AccountKind(r["kind"]), accounts=int(r["accounts"]),
            balance=Counters(int(r["debits_posted"]), int(r["credits_posted"]), int(r["debits_pending"]),
                            int(r["credits_pending"])),
        )
        for r in rows
    ]


async def global_totals(conn: asyncpg.Connection) -> list[KindTotals]:
    """Counter sums per (currency, kind) over the whole ledger."""
    return _totals(await GLOBAL_TOTALS.fetch(conn, kinds=[str(k) for k in SUMMARY_KINDS]))


async def partner_totals(conn: asyncpg.Connection, partner_id: uuid.UUID) -> list[KindTotals]:
    """Counter sums per (currency, kind) over one partner's balances and partner accounts."""
    async with conn.transaction(readonly=True):
        # Partners differ in size by orders of magnitude: a small one's accounts are best fetched
        # one by one (primary key), a large one's by hashing its ids against a scan of all
        # accounts. A cached generic plan would give every partner one shape (a nested loop over
        # half the ledger takes seconds), so each call is planned for its partner.
        await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        # With more than the 4 MB default, a large partner's ids (500,000 make a ~30 MB hash) stay
        # in memory instead of going through temporary files in batches (~15% faster for it).
        await conn.execute("SET LOCAL work_mem = '32MB'")
        rows = await PARTNER_TOTALS.fetch(conn, partner_id=partner_id, kinds=[str(k) for k in SUMMARY_KINDS])
    return _totals(rows)


def assemble(totals: Iterable[KindTotals]) -> BalanceSummaries:
    """The per-currency summaries of these totals (any order, repeats add up), sorted by currency."""
    by_currency: dict[str, dict[AccountKind, KindTotals]] = {}
    for t in totals:
        if t.kind not in SUMMARY_KINDS:
            continue
        kinds = by_currency.setdefault(t.currency, {})
        # Totals of the same currency and kind add up (e.g. several partners' totals together).
        kinds[t.kind] = _add(kinds[t.kind], t) if t.kind in kinds else t
    return BalanceSummaries(items=[_currency(c, by_currency[c]) for c in sorted(by_currency)])


def _add(a: KindTotals, b: KindTotals) -> KindTotals:
    x, y = a.balance, b.balance
    return KindTotals(a.currency, a.kind, a.accounts + b.accounts, Counters(
        x.debits_posted + y.debits_posted, x.credits_posted + y.credits_posted,
        x.debits_pending + y.debits_pending, x.credits_pending + y.credits_pending))


def _amounts(kind: AccountKind, t: KindTotals | None) -> tuple[int, int]:
    if t is None:
        return 0, 0
    return posted_balance(kind, t.balance), available_balance(kind, t.balance)


def _currency(currency: str, kinds: dict[AccountKind, KindTotals]) -> CurrencySummary:
    (cust_posted, cust_avail), (corp_posted, corp_avail), deposit, credit = (
        _amounts(k, kinds.get(k)) for k in SUMMARY_KINDS
    )
    count = sum(kinds[k].accounts for k in USER_KINDS if k in kinds)
    users = UsersSummary(posted=cust_posted + corp_posted, available=cust_avail + corp_avail,
                         customers=cust_posted, corporations=corp_posted, count=count)
    return CurrencySummary(
        currency=currency,
        users=users,
        partners=PartnersSummary(deposit=PostedAvailable(posted=deposit[0], available=deposit[1]),
                                 credit=PostedAvailable(posted=credit[0], available=credit[1])),
        wallet=PostedAvailable(posted=users.posted + deposit[0] + credit[0],
                               available=users.available + deposit[1] + credit[1]),
    )


async def global_summaries(conn: asyncpg.Connection) -> BalanceSummaries:
    """Every balance's totals per currency."""
    return assemble(await global_totals(conn))


async def partner_summaries(conn: asyncpg.Connection, partner_id: uuid.UUID) -> BalanceSummaries:
    """The existing partner's totals per currency: its users' balances and its own."""
    await check_partner_exists(conn, partner_id)
    return assemble(await partner_totals(conn, partner_id))
