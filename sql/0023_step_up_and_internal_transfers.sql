-- Step-up before sensitive data (antaca_api/step_up.py): a customer's application PIN, kept as a
-- slow keyed hash (scrypt, then HMAC under a key derived from the card keys' PIN key), with its
-- wrong-try count and the end of the lock that 5 wrong tries set; and the short-lived step-up
-- proofs it buys, one per installation (a new proof replaces the previous), stored as hashes.
CREATE TABLE customer_app_pins (
    customer_id   uuid PRIMARY KEY REFERENCES customers (id),
    salt          bytea NOT NULL,
    verification  bytea NOT NULL,
    failures      smallint NOT NULL DEFAULT 0 CHECK (failures >= 0),
    locked_until  timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE step_up_proofs (
    token_hash      bytea PRIMARY KEY,
    customer_id     uuid NOT NULL REFERENCES customers (id),
    installation_id uuid NOT NULL REFERENCES installations (id),
    expires_at      timestamptz NOT NULL,
    UNIQUE (customer_id, installation_id)
);

-- Money between users (antaca_api/internal_transfers.py): a transfer from one of a partner's
-- balances to another of the same partner's, booked as one linked ledger batch with its fee. In
-- another currency it goes through the partner's FX position accounts (one per currency), at the
-- rate recorded here.
-- The kind is added to the check as it stands (whatever kinds earlier migrations allowed), not
-- by restating the list, so that a kind another migration added is kept.
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
            || replace(allowed, 'ARRAY[', 'ARRAY[''fx_position''::text, ');
END $$;

CREATE TABLE internal_transfers (
    seq                 bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id                  uuid PRIMARY KEY,           -- the ledger transfer debiting the sender
    partner_id          uuid NOT NULL REFERENCES partners (id),
    sender_balance_id   uuid NOT NULL REFERENCES balances (id),
    receiver_balance_id uuid NOT NULL REFERENCES balances (id),
    amount              bigint NOT NULL CHECK (amount > 0),        -- in the sender's currency
    currency            text NOT NULL,
    received_amount     bigint NOT NULL CHECK (received_amount > 0), -- in the receiver's currency
    received_currency   text NOT NULL,
    rate                numeric(30, 12) CHECK (rate > 0),          -- NULL: same currency
    fee                 bigint NOT NULL CHECK (fee >= 0),          -- in the sender's currency
    reference           text NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (sender_balance_id, reference),
    CHECK (sender_balance_id <> receiver_balance_id),
    CHECK ((rate IS NULL) = (currency = received_currency))
);

CREATE INDEX internal_transfers_receiver ON internal_transfers (receiver_balance_id);
