-- The ledger's set-based path for a batch that only creates transfers (the authorization engine's
-- holds): decided and written inside PostgreSQL by one call, so that no Python work sits between
-- taking the hot partner deposit's row lock and the commit (docs/benchmarks.md).
--
-- It applies only when every transfer of the batch succeeds: each account's counters after each
-- transfer (running sums in batch order) break no limit, currency or overflow rule. That is exactly
-- when the ledger's sequential decision (antaca_auth/posting.py) would accept them all, and in that
-- case the rows, counters and expiry lists written here are the ones it would write. Otherwise the
-- function writes nothing and returns no rows; the caller then decides the batch in Python
-- (Ledger.write_batch), which gives each transfer its own result and undoes failed linked chains.
-- The accounts stay locked (in id order) either way, until the caller's transaction ends.
CREATE FUNCTION ledger_create_new_transfers(
    p_ids uuid[], p_debits uuid[], p_credits uuid[], p_amounts bigint[], p_pending boolean[],
    p_codes integer[], p_timeouts integer[], p_references text[], p_currencies text[], p_now timestamptz)
RETURNS TABLE (dr_available bigint, cr_available bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz;
BEGIN
    PERFORM 1 FROM accounts WHERE id = ANY (p_debits || p_credits) ORDER BY id FOR UPDATE;
    -- Read once the locks are held, so an account's transfers have non-decreasing timestamps.
    v_now := coalesce(p_now, clock_timestamp());
    RETURN QUERY
    WITH t AS (
        SELECT * FROM unnest(p_ids, p_debits, p_credits, p_amounts, p_pending, p_codes, p_timeouts, p_references,
                             p_currencies) WITH ORDINALITY
               AS t (id, dr, cr, amount, pending, code, timeout, reference, currency, ord)
    ), legs AS (
        SELECT ord, true AS debit, dr AS account, currency,
               CASE WHEN pending THEN 0 ELSE amount END AS dp, 0::bigint AS cp,
               CASE WHEN pending THEN amount ELSE 0 END AS dpe, 0::bigint AS cpe
        FROM t
        UNION ALL
        SELECT ord, false, cr, currency, 0, CASE WHEN pending THEN 0 ELSE amount END,
               0, CASE WHEN pending THEN amount ELSE 0 END
        FROM t
    ), counters AS (
        -- sum(bigint) is numeric: a counter past 2^63 - 1 is compared, not overflowed.
        SELECT l.ord, l.debit, l.account, l.currency = a.currency AS same_currency,
               a.debits_must_not_exceed_credits AS dmnec, a.credits_must_not_exceed_debits AS cmned,
               a.debits_posted + sum(l.dp) OVER w AS dp, a.credits_posted + sum(l.cp) OVER w AS cp,
               a.debits_pending + sum(l.dpe) OVER w AS dpe, a.credits_pending + sum(l.cpe) OVER w AS cpe,
               lead(l.ord) OVER w IS NULL AS last
        FROM legs l
        JOIN (SELECT * FROM accounts WHERE id = ANY (p_debits || p_credits)) a ON a.id = l.account
        WINDOW w AS (PARTITION BY l.account ORDER BY l.ord)
    ), verdict AS (
        SELECT count(*) = 2 * cardinality(p_ids)  -- every account exists
               AND NOT EXISTS (SELECT 1 FROM t WHERE t.dr = t.cr OR t.amount <= 0 OR t.code NOT BETWEEN 1 AND 65535
                                                   OR t.timeout < 0 OR length(t.reference) > 256
                                                   OR (t.timeout > 0 AND NOT t.pending)
                                                   OR t.id IS NULL OR t.dr IS NULL OR t.cr IS NULL
                                                   OR t.amount IS NULL OR t.pending IS NULL OR t.code IS NULL
                                                   OR t.timeout IS NULL OR t.currency IS NULL)
               AND coalesce(bool_and(
                   same_currency
                   AND dp <= 9223372036854775807 AND dpe <= 9223372036854775807 AND dp + dpe <= 9223372036854775807
                   AND cp <= 9223372036854775807 AND cpe <= 9223372036854775807 AND cp + cpe <= 9223372036854775807
                   AND NOT (debit AND dmnec AND dp + dpe > cp)
                   AND NOT (NOT debit AND cmned AND cp + cpe > dp)), false) AS ok
        FROM counters
    ), pairs AS (
        SELECT t.*, d.dp AS d_dp, d.cp AS d_cp, d.dpe AS d_dpe, d.cpe AS d_cpe,
               c.dp AS c_dp, c.cp AS c_cp, c.dpe AS c_dpe, c.cpe AS c_cpe
        FROM t
        JOIN counters d ON d.ord = t.ord AND d.debit
        JOIN counters c ON c.ord = t.ord AND NOT c.debit
        WHERE (SELECT ok FROM verdict)
    ), inserted AS (
        INSERT INTO transfers (id, kind, debit_account_id, credit_account_id, amount, currency, timeout, expires_at,
                               code, reference, created_at, dr_debits_posted, dr_credits_posted, dr_debits_pending,
                               dr_credits_pending, cr_debits_posted, cr_credits_posted, cr_debits_pending,
                               cr_credits_pending)
        SELECT id, CASE WHEN pending THEN 'pending' ELSE 'single' END, dr, cr, amount, currency, timeout,
               CASE WHEN timeout > 0 THEN v_now + make_interval(secs => timeout) END, code, reference, v_now,
               d_dp, d_cp, d_dpe, d_cpe, c_dp, c_cp, c_dpe, c_cpe
        FROM pairs
        ORDER BY ord  -- `seq` follows the batch's order, as the Python path's COPY does
    ), updated AS (
        UPDATE accounts a
        SET debits_posted = b.dp, credits_posted = b.cp, debits_pending = b.dpe, credits_pending = b.cpe
        FROM counters b
        WHERE b.last AND a.id = b.account AND a.id = ANY (p_debits || p_credits) AND (SELECT ok FROM verdict)
    ), listed AS (
        -- The sweeper's lists: one row per expiry, its holds in batch order.
        INSERT INTO pending_expiry_batches (expires_at, holds, pending_ids)
        SELECT v_now + make_interval(secs => timeout), count(*), array_agg(id ORDER BY ord)
        FROM pairs
        WHERE timeout > 0
        GROUP BY timeout
    )
    SELECT (d_cp - d_dp - d_dpe)::bigint, (c_cp - c_dp - c_dpe)::bigint FROM pairs ORDER BY ord;
END $$;

-- One cached plan for every call (PL/pgSQL plans a statement afresh for its first five calls, then
-- keeps a generic plan). Planned without knowing the arrays' lengths, nested loops over the batch
-- took 250 ms instead of 40; without nested loops the generic plan hashes and sorts, and accounts
-- are still reached through their primary key (`id = ANY (...)`), never by a scan of the table.
-- Replanning every call instead cost 3-4 ms a batch: most of the call for a small batch.
ALTER FUNCTION ledger_create_new_transfers SET enable_nestloop = off;
