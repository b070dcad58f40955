-- The authorization path fit for a card network (docs/authorization.md): deadlines and stand-in,
-- card-testing defence, duplicate transmissions.

-- Each network's time budget for an answer, measured from arrival; past it the engine stands in.
ALTER TABLE networks
    ADD COLUMN authorization_deadline_ms integer NOT NULL DEFAULT 1500
        CHECK (authorization_deadline_ms BETWEEN 50 AND 10000);

-- A program's stand-in rule (DECLINE: 91; APPROVE: approve what the checks pass up to a per-card,
-- per-day allowance) and whether e-commerce payments without CVC2 are accepted.
ALTER TABLE card_programs
    ADD COLUMN stand_in_mode text NOT NULL DEFAULT 'DECLINE' CHECK (stand_in_mode IN ('DECLINE', 'APPROVE')),
    ADD COLUMN stand_in_limit bigint NOT NULL DEFAULT 0 CHECK (stand_in_limit >= 0),
    ADD COLUMN ecommerce_without_cvc2 boolean NOT NULL DEFAULT false;

-- Card testing: wrong CVC2 or expiry counted per card in a window that starts at the first failure;
-- stand-in approvals counted per card and UTC day against the program's allowance.
ALTER TABLE cards
    ADD COLUMN verification_failures integer NOT NULL DEFAULT 0 CHECK (verification_failures >= 0),
    ADD COLUMN verification_window_start timestamptz,
    ADD COLUMN stand_in_day date,
    ADD COLUMN stand_in_amount bigint NOT NULL DEFAULT 0 CHECK (stand_in_amount >= 0);

-- A stand-in answer is marked; `request_digest` (card fingerprint, amount, currency, type hashed)
-- tells a retransmission (same digest: the same answer again) from a duplicate transmission (a
-- message id reused for another payment: answered 94). Rows from before have none.
ALTER TABLE authorizations
    ADD COLUMN stand_in boolean NOT NULL DEFAULT false,
    ADD COLUMN request_digest bytea;
