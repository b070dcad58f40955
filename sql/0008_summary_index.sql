-- Summary balances by partner (GET /admin/partners/{partnerId}/summaries) start from the
-- partner's balances. Without this index every such summary reads all of `balances`, so even a
-- partner with a few accounts pays for the whole platform. With it, the partner's account ids
-- come from an index-only scan: a small partner's accounts are then fetched by primary key, a
-- large one's ids hashed against one scan of `accounts` (measured by bench/summary_bench.py).
-- Transfers never write `balances` and neither column ever changes, so the ledger's hot path
-- (the counters on `accounts`, kept out of every index so their updates stay HOT) is untouched.
CREATE INDEX balances_partner ON balances (partner_id, account_id);
