-- Fees: versioned schedules per card program, exchange rates, and every fee charged.

-- A schedule version is immutable: a change is a new version applying from its date, so a
-- charge always keeps the version that applied when it was made.
CREATE TABLE fee_schedules (
    id              uuid PRIMARY KEY,
    program_id      uuid NOT NULL REFERENCES card_programs (id),
    version         integer NOT NULL CHECK (version > 0),
    effective_from  timestamptz NOT NULL,
    schedule        jsonb NOT NULL,             -- antaca_auth.fees.FeeSchedule
    created_by      uuid REFERENCES admin_users (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (program_id, version),
    UNIQUE (program_id, effective_from)
);

-- Exchange rates, admin-managed: 1 unit of base = rate units of quote, from effective_from on.
CREATE TABLE fx_rates (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    base            text NOT NULL REFERENCES currencies (code),
    quote           text NOT NULL REFERENCES currencies (code),
    rate            numeric(30, 12) NOT NULL CHECK (rate > 0),
    effective_from  timestamptz NOT NULL,
    created_by      uuid REFERENCES admin_users (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (base <> quote),
    UNIQUE (base, quote, effective_from)
);

-- Every fee charged to a balance. `cause` names what caused it and is unique per fee type, which
-- makes each charge exactly-once (a recurring fee's cause is its card and period).
CREATE TABLE fee_charges (
    seq            bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id             uuid PRIMARY KEY,
    program_id     uuid NOT NULL REFERENCES card_programs (id),
    schedule_id    uuid NOT NULL REFERENCES fee_schedules (id),
    fee_type       text NOT NULL,
    cause          text NOT NULL,
    balance_id     uuid NOT NULL REFERENCES balances (id),
    card_id        uuid REFERENCES cards (id),
    amount         bigint NOT NULL CHECK (amount >= 0),
    currency       text NOT NULL REFERENCES currencies (code),
    state          text NOT NULL CHECK (state IN ('PAID', 'UNPAID', 'WAIVED', 'REFUNDED')),
    waiver         text,                       -- the rule that waived it
    transfer_id    uuid,                       -- the ledger transfer that paid it
    created_at     timestamptz NOT NULL DEFAULT now(),
    paid_at        timestamptz,
    UNIQUE (fee_type, cause),
    CHECK ((state IN ('PAID', 'REFUNDED')) = (transfer_id IS NOT NULL)),
    CHECK (state = 'WAIVED' OR amount > 0)
);

CREATE INDEX fee_charges_unpaid ON fee_charges (balance_id, seq) WHERE state = 'UNPAID';
CREATE INDEX fee_charges_program ON fee_charges (program_id, created_at);

-- What an authorization converted and the fee it holds (posted with the clearing).
ALTER TABLE authorizations
    ADD COLUMN billing_amount   bigint,       -- the amount in the balance's currency
    ADD COLUMN fx_rate          numeric(30, 12),
    ADD COLUMN fee_schedule_id  uuid,
    ADD COLUMN transaction_fee  bigint NOT NULL DEFAULT 0,
    ADD COLUMN conversion_fee   bigint NOT NULL DEFAULT 0,
    ADD COLUMN fee_hold_id      uuid;

CREATE INDEX authorizations_card ON authorizations (card_id, created_at) WHERE decision = 'APPROVED';

-- Outgoing money transfers (to an IBAN) from a balance; the ledger transfer carries the money.
CREATE TABLE money_transfers (
    id                uuid PRIMARY KEY,           -- the ledger transfer's id
    balance_id        uuid NOT NULL REFERENCES balances (id),
    iban              text NOT NULL,
    beneficiary_name  text NOT NULL,
    amount            bigint NOT NULL CHECK (amount > 0),
    fee               bigint NOT NULL CHECK (fee >= 0),
    currency          text NOT NULL,
    reference         text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (balance_id, reference)
);
