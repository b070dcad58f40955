-- Partners' money: deposit and credit balances with low-balance thresholds, the alert outbox
-- and its delivery log, and the balance a user account's fees are charged under.

-- The HMAC-SHA256 key that signs the partner's webhooks (shown to the admin who sets it).
ALTER TABLE partners ADD COLUMN webhook_secret text;

-- A partner deposit or credit balance is a partner_accounts row of kind 'partner_deposit' or
-- 'partner_credit'. below_threshold is the alert's latch: set when a movement takes the
-- available amount under the threshold (one alert per crossing), cleared when a reload lifts it.
ALTER TABLE partner_accounts
    ADD COLUMN low_balance_threshold bigint CHECK (low_balance_threshold >= 0),
    ADD COLUMN below_threshold boolean NOT NULL DEFAULT false,
    ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();

-- The transactional outbox: one row per threshold crossing, written in the transaction that
-- moved the money; alert_deliveries says what must be sent, and a worker sends it.
CREATE TABLE partner_alerts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partner_id  uuid NOT NULL REFERENCES partners (id),
    account_id  uuid NOT NULL REFERENCES partner_accounts (account_id),
    kind        text NOT NULL,              -- partner_deposit or partner_credit
    currency    text NOT NULL,
    threshold   bigint NOT NULL,
    available   bigint NOT NULL,            -- the available amount just after the crossing
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX partner_alerts_partner ON partner_alerts (partner_id, id);

CREATE TABLE alert_deliveries (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id         bigint NOT NULL REFERENCES partner_alerts (id),
    channel          text NOT NULL CHECK (channel IN ('EMAIL', 'WEBHOOK')),
    target           text NOT NULL,         -- e-mail address or webhook URL, as at the crossing
    state            text NOT NULL DEFAULT 'PENDING' CHECK (state IN ('PENDING', 'SENT', 'FAILED')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    sent_at          timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (alert_id, channel)
);

CREATE INDEX alert_deliveries_due ON alert_deliveries (next_attempt_at) WHERE state = 'PENDING';

-- Every attempt to deliver, successful or not (the delivery log).
CREATE TABLE alert_delivery_attempts (
    delivery_id  bigint NOT NULL REFERENCES alert_deliveries (id),
    attempt      integer NOT NULL,
    ok           boolean NOT NULL,
    status_code  integer,                   -- HTTP status of a webhook, SMTP reply code of an e-mail
    error        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (delivery_id, attempt)
);

-- The card program whose fee schedule applies to a balance's own fees (opening, transfers).
ALTER TABLE balances ADD COLUMN program_id uuid REFERENCES card_programs (id);
