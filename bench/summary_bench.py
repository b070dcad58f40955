"""Summary balances: latency of the global and per-partner summary queries over many accounts.

    python -m bench.summary_bench [--accounts 1000000] [--partners 10] [--runs 15] [--explain]

Runs on ANTACA_DATABASE_URL or an embedded PostgreSQL. Builds a fresh database with N user and
corporate balances under partners of very different sizes, plus each partner's deposit, credit
and funding accounts, all with counters that balance per currency; then times the summary
queries. The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid

import asyncpg
import uvloop

from antaca_api import summaries
from antaca_auth.query import Query
from antaca_auth.verify import CURRENCY_TOTALS, FLAG_VIOLATIONS
from bench.database import bench_database
from bench.stats import percentile

CURRENCIES = ["EUR", "USD", "PLN", "JPY"]

# One staging row per balance: who owns it, its currency and its counters (flag rule kept:
# debits_posted + debits_pending <= credits_posted). Partner sizes are skewed as on a real
# platform: partner 0 holds half the balances, partner 1 one in a hundred, the others share the
# rest; the per-partner query is timed on each size. One balance in ten is corporate.
STAGE = """
CREATE TEMP TABLE stage AS
SELECT id, partner_idx, corporate, currency, c AS credits_posted, d AS debits_posted,
       floor(random() * (c - d) / 2)::bigint AS debits_pending
FROM (
    SELECT md5('balance' || g)::uuid AS id,
           CASE WHEN g % 100 < 50 THEN 0 WHEN g % 100 = 50 THEN 1 ELSE 2 + (g / 100) % ($2 - 2) END AS partner_idx,
           random() < 0.1 AS corporate,
           ($3::text[])[1 + floor(random() * cardinality($3::text[]))::int] AS currency,
           c, floor(random() * c / 2)::bigint AS d
    FROM (SELECT g, 1000 + floor(random() * 1000000)::bigint AS c FROM generate_series(1, $1) g) x
) y
"""

# Each partner's deposit and credit account per currency, spent and held like the balances.
PARTNER_STAGE = """CREATE TEMP TABLE partner_stage AS
    SELECT id, partner_id, idx, currency, kind, c AS credits_posted, d AS debits_posted,
           floor(random() * (c - d) / 2)::bigint AS debits_pending
    FROM (SELECT *, floor(random() * c / 2)::bigint AS d
          FROM (SELECT gen_random_uuid() AS id, p.id AS partner_id, p.idx, cur.code AS currency, k.kind,
                       10000000 + floor(random() * 100000000)::bigint AS c
                FROM bench_partners p CROSS JOIN unnest($1::text[]) cur(code)
                CROSS JOIN (VALUES ('partner_deposit'), ('partner_credit')) k(kind)) x) y"""

LOAD = [
    # The partners' users and corporations (balances must have an owner).
    """INSERT INTO customers (id, partner_id, external_id, first_name, last_name, email, phone, birth_date,
                              address, country, kyc_status)
       SELECT s.id, p.id, s.id::text, 'Bench', 'User', 'bench@example.com', '+48123456789', date '1990-01-01',
              '{"line1": "Main 1", "city": "Warsaw", "postalCode": "00-001", "country": "PL"}', 'PL', 'VERIFIED'
       FROM stage s JOIN bench_partners p ON p.idx = s.partner_idx WHERE NOT s.corporate""",
    """INSERT INTO corporations (id, partner_id, name, registration_number, country, address, kyb_status)
       SELECT s.id, p.id, 'Bench Corp', s.id::text, 'PL', '{"line1": "Main 1", "city": "Warsaw"}', 'APPROVED'
       FROM stage s JOIN bench_partners p ON p.idx = s.partner_idx WHERE s.corporate""",
    # Balance accounts; the balance, its account and its owner share the id, as the bench needs no more.
    """INSERT INTO accounts (id, currency, kind, owner_ref, debits_must_not_exceed_credits,
                             debits_posted, credits_posted, debits_pending)
       SELECT id, currency, CASE WHEN corporate THEN 'corporate_balance' ELSE 'user_balance' END,
              CASE WHEN corporate THEN 'corporation:' ELSE 'customer:' END || id, true,
              debits_posted, credits_posted, debits_pending
       FROM stage""",
    """INSERT INTO balances (id, partner_id, customer_id, corporation_id, account_id, currency)
       SELECT s.id, p.id, CASE WHEN NOT s.corporate THEN s.id END, CASE WHEN s.corporate THEN s.id END,
              s.id, s.currency
       FROM stage s JOIN bench_partners p ON p.idx = s.partner_idx""",
    """INSERT INTO accounts (id, currency, kind, owner_ref, debits_must_not_exceed_credits,
                             debits_posted, credits_posted, debits_pending)
       SELECT id, currency, kind, 'partner:' || partner_id, true, debits_posted, credits_posted, debits_pending
       FROM partner_stage""",
    """INSERT INTO partner_accounts (partner_id, currency, kind, account_id)
       SELECT partner_id, currency, kind, id FROM partner_stage""",
    # The other side of every movement: what the balances received came from the partner's
    # funding account (debit-normal), what they spent or hold went to the network, so each
    # currency's debits equal its credits, posted and pending, as `ledger verify` demands.
    """CREATE TEMP TABLE moved AS
       SELECT partner_idx, currency, sum(credits_posted) AS received, sum(debits_posted) AS spent,
              sum(debits_pending) AS held
       FROM (SELECT partner_idx, currency, credits_posted, debits_posted, debits_pending FROM stage
             UNION ALL
             SELECT idx, currency, credits_posted, debits_posted, debits_pending FROM partner_stage) m
       GROUP BY partner_idx, currency""",
    """CREATE TEMP TABLE funding AS
       SELECT gen_random_uuid() AS id, p.id AS partner_id, m.currency, m.received
       FROM moved m JOIN bench_partners p ON p.idx = m.partner_idx""",
    """INSERT INTO accounts (id, currency, kind, owner_ref, debits_posted)
       SELECT id, currency, 'external_funding', 'partner:' || partner_id, received FROM funding""",
    """INSERT INTO partner_accounts (partner_id, currency, kind, account_id)
       SELECT partner_id, currency, 'external_funding', id FROM funding""",
    """INSERT INTO accounts (id, currency, kind, owner_ref, credits_posted, credits_pending)
       SELECT gen_random_uuid(), currency, 'network_settlement', 'network:bench', sum(spent), sum(held)
       FROM moved GROUP BY currency""",
]


async def build(conn: asyncpg.Connection, accounts: int, partners: int) -> list[uuid.UUID]:
    """Fill the database; return the partners' ids (0 is the large partner, 1 the small one)."""
    partner_ids = [uuid.uuid4() for _ in range(partners)]
    async with conn.transaction():
        await conn.execute("CREATE TEMP TABLE bench_partners (idx int PRIMARY KEY, id uuid NOT NULL)")
        await conn.executemany("INSERT INTO bench_partners VALUES ($1, $2)", list(enumerate(partner_ids)))
        await conn.execute("INSERT INTO partners (id, name) SELECT id, 'Bench ' || idx FROM bench_partners")
        await conn.execute(STAGE, accounts, partners, CURRENCIES)
        await conn.execute(PARTNER_STAGE, CURRENCIES)
        for statement in LOAD:
            await conn.execute(statement)
        # The data must be a ledger `verify` would accept (balanced currencies, flags kept).
        assert await CURRENCY_TOTALS.fetch(conn) == []
        assert await FLAG_VIOLATIONS.fetch(conn) == []
    await conn.execute("VACUUM ANALYZE")
    return partner_ids


async def timed(runs: int, call) -> tuple[dict, object]:
    latencies, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = await call()
        latencies.append((time.perf_counter() - start) * 1000)
    latencies.sort()
    return {"p50_ms": round(percentile(latencies, 50), 2), "max_ms": round(latencies[-1], 2)}, result


async def explain(conn: asyncpg.Connection, query: Query, **params) -> None:
    rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + query.sql, *query.args(**params))
    print("\n".join(r[0] for r in rows), flush=True)


async def main(accounts: int, partners: int, runs: int, show_plans: bool) -> dict:
    assert accounts >= 1 and partners >= 3
    kinds = [str(k) for k in summaries.SUMMARY_KINDS]
    async with bench_database() as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            start = time.perf_counter()
            partner_ids = await build(conn, accounts, partners)
            setup_s = round(time.perf_counter() - start, 1)
            print(f"setup: {accounts} balances, {partners} partners in {setup_s} s", flush=True)
            large, small, medium = partner_ids[:3]
            if show_plans:
                await explain(conn, summaries.GLOBAL_TOTALS, kinds=kinds)
                for pid in (large, medium, small):
                    await explain(conn, summaries.PARTNER_TOTALS, partner_id=pid, kinds=kinds)

            figures: dict = {"accounts": accounts, "partners": partners, "runs": runs, "setup_s": setup_s}
            figures["global"], whole = await timed(runs, lambda: _summary(conn, None))
            print("global", json.dumps(figures["global"]), flush=True)
            for name, pid in (("partner_large", large), ("partner_medium", medium), ("partner_small", small)):
                figures[name], part = await timed(runs, lambda pid=pid: _summary(conn, pid))
                figures[name]["accounts"] = sum(i.users.count for i in part.items)
                print(name, json.dumps(figures[name]), flush=True)

            # Every balance has a partner, so the partners' summaries add up to the global one.
            assert sum(i.users.count for i in whole.items) == accounts
            added = summaries.assemble([t for pid in partner_ids for t in await summaries.partner_totals(conn, pid)])
            assert added == whole, "the partners' summaries do not add up to the global one"
            return figures
        finally:
            await conn.close()


async def _summary(conn: asyncpg.Connection, partner_id: uuid.UUID | None) -> summaries.BalanceSummaries:
    if partner_id is None:
        return summaries.assemble(await summaries.global_totals(conn))
    return summaries.assemble(await summaries.partner_totals(conn, partner_id))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1_000_000, help="user and corporate balances (default 1e6)")
    parser.add_argument("--partners", type=int, default=10, help="partners, at least 3 (default 10)")
    parser.add_argument("--runs", type=int, default=15, help="timed runs of each query (default 15)")
    parser.add_argument("--explain", action="store_true", help="print the query plans (EXPLAIN ANALYZE)")
    args = parser.parse_args()
    print(json.dumps(uvloop.run(main(args.accounts, args.partners, args.runs, args.explain))))
