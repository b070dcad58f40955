"""`antaca ledger verify`: recompute every account from the transfers and check the invariants."""

from __future__ import annotations

import asyncpg

from antaca_auth.query import Query

# Counters recomputed from the transfers: posted from single and post_pending transfers, pending
# from pending transfers that nothing has resolved yet.
RECOMPUTED_COUNTERS = Query(
    """WITH open_pending AS (
           SELECT p.debit_account_id, p.credit_account_id, p.amount FROM transfers p
           WHERE p.kind = 'pending'
             AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = p.id)
       ), moves AS (
           SELECT debit_account_id AS account_id, amount AS dp, 0::bigint AS cp, 0::bigint AS dpe, 0::bigint AS cpe
             FROM transfers WHERE kind IN ('single', 'post_pending')
           UNION ALL
           SELECT credit_account_id, 0, amount, 0, 0 FROM transfers WHERE kind IN ('single', 'post_pending')
           UNION ALL
           SELECT debit_account_id, 0, 0, amount, 0 FROM open_pending
           UNION ALL
           SELECT credit_account_id, 0, 0, 0, amount FROM open_pending
       ), sums AS (
           SELECT account_id, sum(dp) AS dp, sum(cp) AS cp, sum(dpe) AS dpe, sum(cpe) AS cpe
           FROM moves GROUP BY account_id
       )
       SELECT coalesce(a.id, s.account_id) AS id, a.id IS NULL AS missing,
              a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending,
              coalesce(s.dp, 0) AS dp, coalesce(s.cp, 0) AS cp,
              coalesce(s.dpe, 0) AS dpe, coalesce(s.cpe, 0) AS cpe
       FROM accounts a FULL JOIN sums s ON s.account_id = a.id
       WHERE a.id IS NULL
          OR (a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending)
             IS DISTINCT FROM (coalesce(s.dp, 0), coalesce(s.cp, 0), coalesce(s.dpe, 0), coalesce(s.cpe, 0))"""
)

CURRENCY_TOTALS = Query(
    """SELECT currency, sum(debits_posted) AS dp, sum(credits_posted) AS cp,
              sum(debits_pending) AS dpe, sum(credits_pending) AS cpe
       FROM accounts GROUP BY currency
       HAVING sum(debits_posted) <> sum(credits_posted) OR sum(debits_pending) <> sum(credits_pending)"""
)

FLAG_VIOLATIONS = Query(
    """SELECT id FROM accounts
       WHERE (debits_must_not_exceed_credits AND debits_posted + debits_pending > credits_posted)
          OR (credits_must_not_exceed_debits AND credits_posted + credits_pending > debits_posted)"""
)

CURRENCY_MISMATCHES = Query(
    """SELECT t.id FROM transfers t
       LEFT JOIN accounts d ON d.id = t.debit_account_id
       LEFT JOIN accounts c ON c.id = t.credit_account_id
       WHERE t.currency <> d.currency OR t.currency <> c.currency"""
)

BAD_RESOLUTIONS = Query(
    """SELECT r.id, r.kind FROM transfers r LEFT JOIN transfers p ON p.id = r.pending_id
       WHERE r.pending_id IS NOT NULL
         AND (p.id IS NULL OR p.kind <> 'pending'
              OR (p.debit_account_id, p.credit_account_id, p.currency)
                 IS DISTINCT FROM (r.debit_account_id, r.credit_account_id, r.currency)
              OR (r.kind = 'post_pending' AND r.amount > p.amount)
              OR (r.kind <> 'post_pending' AND r.amount <> p.amount))"""
)

# The counters stored on an account's latest transfer must be the account's counters now.
STALE_LAST_BALANCES = Query(
    """WITH last AS (
           SELECT DISTINCT ON (account_id) account_id, dp, cp, dpe, cpe FROM (
               SELECT seq, debit_account_id AS account_id, dr_debits_posted AS dp, dr_credits_posted AS cp,
                      dr_debits_pending AS dpe, dr_credits_pending AS cpe FROM transfers
               UNION ALL
               SELECT seq, credit_account_id, cr_debits_posted, cr_credits_posted,
                      cr_debits_pending, cr_credits_pending FROM transfers
           ) x ORDER BY account_id, seq DESC
       )
       SELECT a.id FROM accounts a JOIN last l ON l.account_id = a.id
       WHERE (a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending)
             <> (l.dp, l.cp, l.dpe, l.cpe)"""
)

STRAY_EXPIRIES = Query(
    """SELECT e.pending_id FROM pending_expiries e
       WHERE NOT EXISTS (SELECT 1 FROM transfers p WHERE p.id = e.pending_id AND p.kind = 'pending')
          OR EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = e.pending_id)"""
)

# The sweeper's lists (`pending_expiry_batches`) must name only holds, and every open hold with a
# timeout must be on one, or it would never expire.
LISTED = "SELECT DISTINCT unnest(pending_ids) AS id FROM pending_expiry_batches"
STRAY_LISTED = Query(
    f"""SELECT l.id FROM ({LISTED}) l
        WHERE NOT EXISTS (SELECT 1 FROM transfers p WHERE p.id = l.id AND p.kind = 'pending')"""
)
UNLISTED_HOLDS = Query(
    f"""SELECT p.id FROM transfers p
        WHERE p.kind = 'pending' AND p.expires_at IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = p.id)
          AND p.id NOT IN ({LISTED})"""
)

# Authorizations carry no foreign keys (sql/0011): each must still name a network, card and balance.
ORPHAN_AUTHORIZATIONS = Query(
    """SELECT a.id FROM authorizations a
       WHERE NOT EXISTS (SELECT 1 FROM networks n WHERE n.id = a.network_id)
          OR (a.card_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM cards c WHERE c.id = a.card_id))
          OR (a.balance_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM balances b WHERE b.id = a.balance_id))"""
)


async def verify_ledger(conn: asyncpg.Connection) -> list[str]:
    """Every difference between the accounts and their transfers, as lines; empty when clean."""
    problems: list[str] = []
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        for r in await RECOMPUTED_COUNTERS.fetch(conn):
            if r["missing"]:
                problems.append(f"account {r['id']}: has transfers but does not exist")
                continue
            stored = (r["debits_posted"], r["credits_posted"], r["debits_pending"], r["credits_pending"])
            derived = (int(r["dp"]), int(r["cp"]), int(r["dpe"]), int(r["cpe"]))
            problems.append(
                f"account {r['id']}: counters (debits_posted, credits_posted, debits_pending, "
                f"credits_pending) are {stored}, transfers give {derived}"
            )
        for r in await CURRENCY_TOTALS.fetch(conn):
            dp, cp, dpe, cpe = (int(r[k]) for k in ("dp", "cp", "dpe", "cpe"))
            problems.append(
                f"currency {r['currency']}: debits_posted {dp} vs credits_posted {cp}, "
                f"debits_pending {dpe} vs credits_pending {cpe}"
            )
        for r in await FLAG_VIOLATIONS.fetch(conn):
            problems.append(f"account {r['id']}: balance breaks its debits/credits limit flag")
        for r in await CURRENCY_MISMATCHES.fetch(conn):
            problems.append(f"transfer {r['id']}: currency differs from an account's")
        for r in await BAD_RESOLUTIONS.fetch(conn):
            problems.append(f"transfer {r['id']}: {r['kind']} does not match the pending transfer it names")
        for r in await STALE_LAST_BALANCES.fetch(conn):
            problems.append(f"account {r['id']}: counters differ from those recorded on its latest transfer")
        for r in await STRAY_EXPIRIES.fetch(conn):
            problems.append(f"pending_expiries {r['pending_id']}: not an unresolved pending transfer")
        for r in await STRAY_LISTED.fetch(conn):
            problems.append(f"pending_expiry_batches names {r['id']}: not a pending transfer")
        for r in await UNLISTED_HOLDS.fetch(conn):
            problems.append(f"pending transfer {r['id']}: open with a timeout but on no expiry list")
        for r in await ORPHAN_AUTHORIZATIONS.fetch(conn):
            problems.append(f"authorization {r['id']}: names a network, card or balance that does not exist")
    return problems
