-- Remote authorization (issue 16): programs whose partner holds the users' balances. A REMOTE
-- program's card checks run in Antaca, then the partner's remoteUrl approves (perhaps a part) or
-- declines (antaca_auth/remote.py, antaca_api/remote_partners.py; docs/partners.md).

ALTER TABLE card_programs DROP CONSTRAINT card_programs_funding_model_check;
ALTER TABLE card_programs ADD CONSTRAINT card_programs_funding_model_check
    CHECK (funding_model IN ('DEPOSIT', 'CREDIT', 'REMOTE'));

-- remote_endpoint_id: the program's advice endpoint, a webhook endpoint of the partner with the
-- program's id (its url is the remoteUrl, its secret signs the authorization calls too).
-- remote_account_id: the partner's REMOTE settlement account in the program's currency, where the
-- approved amounts and fees are held instead of a user balance (docs/ledger.md).
ALTER TABLE card_programs
    ADD COLUMN remote_deadline_ms integer CHECK (remote_deadline_ms BETWEEN 50 AND 10000),
    ADD COLUMN remote_endpoint_id uuid REFERENCES webhook_endpoints (id),
    ADD COLUMN remote_account_id uuid REFERENCES accounts (id),
    ADD CONSTRAINT card_programs_remote CHECK (
        (funding_model = 'REMOTE') = (remote_deadline_ms IS NOT NULL
                                      AND remote_endpoint_id IS NOT NULL
                                      AND remote_account_id IS NOT NULL));

-- A program's advice endpoint delivers only the events of that program's cards. Deferred: the
-- endpoint is written first, then the program that names it, in one transaction.
ALTER TABLE webhook_endpoints ADD COLUMN program_id uuid
    REFERENCES card_programs (id) DEFERRABLE INITIALLY DEFERRED;

-- What the partner's answer was: APPROVED, PARTIAL, DECLINED, or why the stand-in rule applied
-- (TIMEOUT, ERROR, MALFORMED, BUSY); the amount the network asked for (a partial approval's row
-- carries the approved amount), and the partner's decline reason.
ALTER TABLE authorizations
    ADD COLUMN remote_outcome text,
    ADD COLUMN remote_requested_amount bigint,
    ADD COLUMN remote_reason text CHECK (length(remote_reason) <= 200);

DO $$
DECLARE
    allowed text;
BEGIN
    SELECT pg_get_constraintdef(oid) INTO allowed FROM pg_constraint
    WHERE conrelid = 'accounts'::regclass AND conname = 'accounts_kind_check';
    IF allowed IS NULL OR position('ARRAY[' IN allowed) = 0 THEN
        RAISE EXCEPTION 'accounts_kind_check is not a list of kinds: %', allowed;
    END IF;
    ALTER TABLE accounts DROP CONSTRAINT accounts_kind_check;
    EXECUTE 'ALTER TABLE accounts ADD CONSTRAINT accounts_kind_check '
            || replace(allowed, 'ARRAY[', 'ARRAY[''partner_remote''::text, ');
END $$;

CREATE OR REPLACE FUNCTION queue_webhook_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (id, endpoint_id, event_id, next_attempt_at, created_at)
    SELECT uuid_v7(), w.id, n.id, n.created_at, n.created_at
    FROM new_events n
    JOIN webhook_endpoints w ON w.partner_id = n.partner_id AND w.enabled
    WHERE (cardinality(w.event_types) = 0 OR n.type = ANY (w.event_types))
      AND (w.program_id IS NULL
           OR EXISTS (SELECT 1 FROM cards c
                      WHERE c.id = (n.payload ->> 'cardId')::uuid AND c.program_id = w.program_id));
    RETURN NULL;
END $$;
