-- Card authorizations and what followed them (reversals, clearings), kept as the network sent them.

CREATE TABLE authorizations (
    seq              bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id               uuid PRIMARY KEY,
    network_id       uuid NOT NULL REFERENCES networks (id),
    message_id       text NOT NULL,
    card_id          uuid REFERENCES cards (id),         -- NULL when the PAN is unknown
    balance_id       uuid REFERENCES balances (id),
    type             text NOT NULL CHECK (type IN ('POS', 'ECOM', 'ATM', 'REFUND')),
    amount           bigint NOT NULL CHECK (amount > 0),
    currency         text NOT NULL,
    mcc              text,
    merchant_id      text,
    merchant_name    text,
    merchant_country text,
    terminal_id      text,
    decision         text NOT NULL CHECK (decision IN ('APPROVED', 'DECLINED')),
    response_code    text NOT NULL CHECK (response_code ~ '^[0-9A-Z]{2}$'),  -- ISO 8583 DE39
    action_code      text,                                                   -- the product's failure action code
    reason           text NOT NULL,
    approved_amount  bigint NOT NULL DEFAULT 0,
    available_after  bigint,
    deposit_hold_id  uuid,   -- pending transfer on the partner deposit (DEPOSIT model)
    user_hold_id     uuid,   -- pending transfer on the user's balance
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (network_id, message_id)
);

CREATE INDEX authorizations_balance ON authorizations (balance_id, seq);

-- Reversals, clearings and refunds that follow (or, for a force post, replace) an authorization.
CREATE TABLE authorization_events (
    seq              bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id               uuid PRIMARY KEY,
    network_id       uuid NOT NULL REFERENCES networks (id),
    message_id       text NOT NULL,
    authorization_id uuid REFERENCES authorizations (id),
    kind             text NOT NULL CHECK (kind IN ('REVERSAL', 'CLEARING', 'FORCE_POST')),
    amount           bigint NOT NULL CHECK (amount > 0),
    currency         text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (network_id, message_id)
);
