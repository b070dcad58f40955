-- Faster ledger batches (docs/benchmarks.md: a batch of 512 authorizations writes 1,024 holds).
--
-- The expiry sweeper's list of holds becomes one row per batch instead of one row per hold:
-- writing 1,024 `pending_expiries` rows (two index entries each) and deleting one per clearing
-- cost a batch as much as its account updates. A row here names the holds of one batch that
-- share an expiry; it is written in the batch's transaction, so it is visible exactly when its
-- holds are. When the expiry passes, the sweeper expires those of its holds that nothing has
-- resolved yet (one index probe each, so each hold is looked at once, when due, and a sweep
-- never scans history), then deletes the row. Resolving a hold no longer writes here.
CREATE TABLE pending_expiry_batches (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    expires_at  timestamptz NOT NULL,
    holds       integer NOT NULL CHECK (holds = cardinality(pending_ids) AND holds > 0),
    pending_ids uuid[] NOT NULL
);

CREATE INDEX pending_expiry_batches_due ON pending_expiry_batches (expires_at, id);

-- Holds listed the old way move over; `pending_expiries` stays (empty) for `ledger verify`.
INSERT INTO pending_expiry_batches (expires_at, holds, pending_ids)
    SELECT expires_at, count(*), array_agg(pending_id ORDER BY pending_id)
    FROM pending_expiries GROUP BY expires_at ORDER BY expires_at;
DELETE FROM pending_expiries;

-- Every batch rewrites the counters of every account it touches. Free room on each page lets
-- those updates stay on the page (HOT: no new index entries); applies to pages written from now on.
ALTER TABLE accounts SET (fillfactor = 70);
