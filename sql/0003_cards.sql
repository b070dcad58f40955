-- Card programs, cards with protected card data, card events, physical card orders.

CREATE TABLE card_programs (
    id               uuid PRIMARY KEY,
    partner_id       uuid NOT NULL REFERENCES partners (id),
    name             text NOT NULL,
    bin_prefix       text NOT NULL CHECK (bin_prefix ~ '^[0-9]{6,11}$'),
    pan_length       smallint NOT NULL CHECK (pan_length BETWEEN 13 AND 19),
    currency         text NOT NULL REFERENCES currencies (code),
    processor        text NOT NULL,
    funding_model    text NOT NULL CHECK (funding_model IN ('DEPOSIT', 'CREDIT')),
    validity_months  smallint NOT NULL CHECK (validity_months BETWEEN 1 AND 120),
    processor_config jsonb NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (length(bin_prefix) < pan_length - 1)
);

CREATE INDEX card_programs_partner ON card_programs (partner_id);

CREATE TABLE cards (
    seq                bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id                 uuid PRIMARY KEY,
    program_id         uuid NOT NULL REFERENCES card_programs (id),
    partner_id         uuid NOT NULL REFERENCES partners (id),
    balance_id         uuid NOT NULL REFERENCES balances (id),  -- never changes
    customer_id        uuid REFERENCES customers (id),
    corporation_id     uuid REFERENCES corporations (id),
    kind               text NOT NULL CHECK (kind IN ('VIRTUAL', 'PHYSICAL')),
    state              text NOT NULL CHECK (state IN
                           ('PENDING', 'FAILED', 'ORDERED', 'INACTIVE', 'ACTIVE', 'LOCKED', 'REMOVED')),
    lock_reason        smallint,
    state_before_lock  text,
    -- Card data: the PAN only encrypted (AES-256-GCM under pan_key_id, the card id as AAD),
    -- found by its keyed fingerprint; BIN and last four are all that is kept in clear.
    pan_key_id         text,
    pan_ciphertext     bytea,
    pan_fingerprint    text UNIQUE,
    bin                text,
    last4              text,
    expiry             text CHECK (expiry ~ '^[0-9]{4}$'),  -- YYMM
    cvc_counter        integer NOT NULL DEFAULT 0,          -- CVC2 is derived, never stored
    pin_salt           bytea,
    pin_verification   bytea,                                -- keyed, salted; never the PIN
    pin_failures       smallint NOT NULL DEFAULT 0,
    name_on_card       text,
    holder_name        text,
    delivery_address   jsonb,
    processor_ref      text,
    failure_reason     text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT card_has_one_owner CHECK ((customer_id IS NULL) <> (corporation_id IS NULL)),
    CONSTRAINT card_data_complete CHECK (
        state IN ('PENDING', 'FAILED', 'ORDERED')
        OR (pan_ciphertext IS NOT NULL AND pan_fingerprint IS NOT NULL AND expiry IS NOT NULL)),
    CONSTRAINT locked_has_reason CHECK ((state = 'LOCKED') = (lock_reason IS NOT NULL))
);

CREATE INDEX cards_balance ON cards (balance_id);
CREATE INDEX cards_customer ON cards (customer_id, seq) WHERE customer_id IS NOT NULL;

-- Every state change of a card: who, when, from, to, why.
CREATE TABLE card_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    card_id     uuid NOT NULL REFERENCES cards (id),
    event       text NOT NULL,
    actor       text NOT NULL,          -- customer:<id>, partner:<id>, admin:<id>, network:<id>, system
    from_state  text,
    to_state    text NOT NULL,
    reason      smallint,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX card_events_card ON card_events (card_id, id);

-- Physical card orders at the processor, driven by the personalization job.
CREATE TABLE card_orders (
    card_id        uuid PRIMARY KEY REFERENCES cards (id),
    processor_ref  text NOT NULL,
    status         text NOT NULL CHECK (status IN ('ORDERED', 'LINKED', 'SHIPPED', 'DELIVERED', 'FAILED')),
    attempts       integer NOT NULL DEFAULT 0,
    next_check_at  timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX card_orders_due ON card_orders (next_check_at) WHERE status IN ('ORDERED', 'LINKED', 'SHIPPED');

-- Card networks and acquirers that call the network channel (/network) over mutual TLS.
CREATE TABLE networks (
    id         uuid PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    status     text NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'SUSPENDED')),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE network_certificates (
    serial      text PRIMARY KEY,
    network_id  uuid NOT NULL REFERENCES networks (id),
    fingerprint text NOT NULL UNIQUE,
    subject     text NOT NULL,
    not_before  timestamptz NOT NULL,
    not_after   timestamptz NOT NULL,
    certificate text NOT NULL,
    revoked_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
