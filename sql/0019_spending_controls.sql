-- Spending controls (issue 18): rules a payment must pass before money is held, set on a card
-- program (by an administrator), on a partner's card product (all cards of the partner's program),
-- on a balance or on a card; ACTIVE ones decline, SHADOW ones only record what they would have
-- declined. Owned by antaca_auth/controls.py; the velocity counters by antaca_auth/velocity.py.

-- The program's time zone: the day, week and month of a velocity limit begin at its midnight.
ALTER TABLE card_programs ADD COLUMN time_zone text NOT NULL DEFAULT 'UTC';

CREATE SEQUENCE spending_controls_version;

CREATE TABLE spending_controls (
    id           uuid PRIMARY KEY,
    version      integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    level        text NOT NULL CHECK (level IN ('PROGRAM', 'PRODUCT', 'BALANCE', 'CARD')),
    -- The program (PROGRAM, PRODUCT), the balance or the card the control is set on.
    scope_id     uuid NOT NULL,
    partner_id   uuid NOT NULL REFERENCES partners (id),  -- whose cards it applies to
    customer_id  uuid REFERENCES customers (id),          -- set by this customer (CARD level)
    set_by       text NOT NULL CHECK (set_by IN ('ADMIN', 'PARTNER', 'CUSTOMER')),
    status       text NOT NULL CHECK (status IN ('ACTIVE', 'SHADOW')),
    kind         text NOT NULL,
    rule         jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz
);

CREATE INDEX spending_controls_scope ON spending_controls (scope_id) WHERE deleted_at IS NULL;
CREATE INDEX spending_controls_partner ON spending_controls (partner_id, created_at, id);

-- A scope's controls version: 0 while it never had a control, else a value of the sequence taken
-- at each change of one of its controls. The engine reads it with the card and reloads a scope's
-- controls only when it changed (constant default: no table rewrite).
ALTER TABLE card_programs ADD COLUMN controls_version bigint NOT NULL DEFAULT 0;
ALTER TABLE balances ADD COLUMN controls_version bigint NOT NULL DEFAULT 0;
ALTER TABLE cards ADD COLUMN controls_version bigint NOT NULL DEFAULT 0;

-- Velocity counters: what a card or a balance spent in a period (approved authorizations net of
-- reversals, in the card's currency), kept for the scopes a velocity control counts.
-- period_start: the first local day of the period (DAY, WEEK from Monday, MONTH), 1970-01-01
-- for LIFETIME.
CREATE TABLE velocity_counters (
    scope_id     uuid NOT NULL,
    period       text NOT NULL CHECK (period IN ('DAY', 'WEEK', 'MONTH', 'LIFETIME')),
    period_start date NOT NULL,
    amount       bigint NOT NULL DEFAULT 0,
    count        integer NOT NULL DEFAULT 0,
    PRIMARY KEY (scope_id, period, period_start)
) WITH (fillfactor = 50);  -- room on each page for HOT updates: a counter changes with every payment

-- The control that declined (and its version), and which counters the approval was counted in:
-- velocity_periods a bit set (antaca_auth/velocity.py), velocity_day the program's local day.
ALTER TABLE authorizations
    ADD COLUMN control_id uuid,
    ADD COLUMN control_version integer,
    ADD COLUMN velocity_periods smallint,
    ADD COLUMN velocity_day date;

-- What shadow controls would have declined: one row per (control, authorization).
CREATE TABLE control_shadow_hits (
    control_id       uuid NOT NULL,
    authorization_id uuid NOT NULL,
    control_version  integer NOT NULL,
    response_code    text NOT NULL,
    reason           text NOT NULL,
    amount           bigint NOT NULL,  -- in the card's currency
    currency         text NOT NULL,
    created_at       timestamptz NOT NULL,
    PRIMARY KEY (control_id, authorization_id)
);

CREATE INDEX control_shadow_hits_time ON control_shadow_hits (control_id, created_at);
