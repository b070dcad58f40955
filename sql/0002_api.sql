-- The API's data: partners and their certificates, administrators, customers with KYC,
-- devices and sessions, corporations with KYB, balances over ledger accounts.

CREATE TABLE partners (
    id            uuid PRIMARY KEY,
    name          text NOT NULL,
    contact_email text,
    webhook_url   text,
    status        text NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'SUSPENDED')),
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Ledger accounts that belong to a partner, one per (partner, currency, kind).
CREATE TABLE partner_accounts (
    partner_id uuid NOT NULL REFERENCES partners (id),
    currency   text NOT NULL REFERENCES currencies (code),
    kind       text NOT NULL,
    account_id uuid NOT NULL UNIQUE REFERENCES accounts (id),
    PRIMARY KEY (partner_id, currency, kind)
);

-- Client certificates issued by Antaca's CA to partners (mutual TLS).
CREATE TABLE partner_certificates (
    serial      text PRIMARY KEY,           -- hex serial number
    partner_id  uuid NOT NULL REFERENCES partners (id),
    fingerprint text NOT NULL UNIQUE,       -- SHA-256 of the DER certificate, hex
    subject     text NOT NULL,
    not_before  timestamptz NOT NULL,
    not_after   timestamptz NOT NULL,
    certificate text NOT NULL,              -- PEM
    revoked_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX partner_certificates_partner ON partner_certificates (partner_id);

CREATE TABLE admin_users (
    id            uuid PRIMARY KEY,
    email         text NOT NULL UNIQUE,
    password_hash text NOT NULL,            -- scrypt, see antaca_api/passwords.py
    role          text NOT NULL CHECK (role IN ('ADMIN', 'MANAGER', 'EMPLOYEE')),
    active        boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE admin_sessions (
    token_hash  bytea PRIMARY KEY,          -- SHA-256 of the bearer token
    admin_id    uuid NOT NULL REFERENCES admin_users (id),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    admin_id    uuid NOT NULL REFERENCES admin_users (id),
    action      text NOT NULL,              -- e.g. "POST /admin/partners"
    target      text,                       -- what it acted on, e.g. "partner:<id>"
    details     jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX audit_log_admin ON audit_log (admin_id, created_at);

CREATE TABLE customers (
    seq          bigint GENERATED ALWAYS AS IDENTITY UNIQUE,  -- list order and cursor
    id           uuid PRIMARY KEY,
    partner_id   uuid NOT NULL REFERENCES partners (id),
    external_id  text NOT NULL,
    first_name   text NOT NULL,
    last_name    text NOT NULL,
    email        text NOT NULL,
    phone        text NOT NULL,
    birth_date   date NOT NULL,
    address      jsonb NOT NULL,
    country      text NOT NULL,
    kyc_status   text NOT NULL DEFAULT 'NOT_VERIFIED'
                 CHECK (kyc_status IN ('NOT_VERIFIED', 'PENDING', 'VERIFIED', 'REJECTED')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (partner_id, external_id)
);

CREATE INDEX customers_partner ON customers (partner_id, seq);

CREATE TABLE kyc_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id uuid NOT NULL REFERENCES customers (id),
    status      text NOT NULL,
    source      text NOT NULL,              -- ANTACA_KYC (provider) or PARTNER
    reason      text,
    details     jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX kyc_events_customer ON kyc_events (customer_id, id);

CREATE TABLE pairing_codes (
    code_hash   bytea PRIMARY KEY,          -- SHA-256 of the one-time code
    customer_id uuid NOT NULL REFERENCES customers (id),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE installations (
    id          uuid PRIMARY KEY,
    customer_id uuid NOT NULL REFERENCES customers (id),
    device_id   text NOT NULL,
    secret_hash bytea NOT NULL,             -- SHA-256 of the installation secret
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    deactivated_at timestamptz
);

-- One active installation per device per user.
CREATE UNIQUE INDEX installations_one_active ON installations (customer_id, device_id) WHERE active;

CREATE TABLE customer_sessions (
    token_hash      bytea PRIMARY KEY,      -- SHA-256 of the bearer token
    installation_id uuid NOT NULL REFERENCES installations (id),
    customer_id     uuid NOT NULL REFERENCES customers (id),
    expires_at      timestamptz NOT NULL,
    revoked_at      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX customer_sessions_installation ON customer_sessions (installation_id);

CREATE TABLE corporations (
    seq              bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id               uuid PRIMARY KEY,      -- dcCorporationId
    partner_id       uuid NOT NULL REFERENCES partners (id),
    name             text NOT NULL,
    registration_number text NOT NULL,
    country          text NOT NULL,
    address          jsonb NOT NULL,
    kyb_status       text NOT NULL DEFAULT 'SUBMITTED'
                     CHECK (kyb_status IN ('SUBMITTED', 'APPROVED', 'REJECTED', 'ON_HOLD')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX corporations_partner ON corporations (partner_id, seq);

CREATE TABLE corporation_documents (
    id             uuid PRIMARY KEY,
    corporation_id uuid NOT NULL REFERENCES corporations (id),
    kind           text NOT NULL,           -- what the document is (e.g. REGISTRY_EXTRACT)
    filename       text NOT NULL,
    content_type   text NOT NULL,
    size           integer NOT NULL CHECK (size > 0),
    sha256         text NOT NULL,
    content        bytea NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX corporation_documents_corporation ON corporation_documents (corporation_id);

CREATE TABLE kyb_events (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    corporation_id uuid NOT NULL REFERENCES corporations (id),
    status         text NOT NULL,
    reason         text,
    admin_id       uuid REFERENCES admin_users (id),
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- A balance (the product's "account") is a ledger account plus who owns it and its state.
CREATE TABLE balances (
    seq            bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id             uuid PRIMARY KEY,
    partner_id     uuid NOT NULL REFERENCES partners (id),
    customer_id    uuid REFERENCES customers (id),
    corporation_id uuid REFERENCES corporations (id),
    account_id     uuid NOT NULL UNIQUE REFERENCES accounts (id),
    currency       text NOT NULL REFERENCES currencies (code),
    state          text NOT NULL DEFAULT 'ACTIVE' CHECK (state IN ('ACTIVE', 'BLOCKED', 'CLOSED')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT one_owner CHECK ((customer_id IS NULL) <> (corporation_id IS NULL))
);

CREATE INDEX balances_customer ON balances (customer_id) WHERE customer_id IS NOT NULL;
CREATE INDEX balances_corporation ON balances (corporation_id) WHERE corporation_id IS NOT NULL;
