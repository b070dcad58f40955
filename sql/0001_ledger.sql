-- The double-entry ledger: currencies, accounts with balance counters, immutable transfers.
-- See docs/ledger.md for the model, the result codes and the locking scheme.

CREATE TABLE currencies (
    code     text PRIMARY KEY CHECK (code ~ '^[A-Z]{3}$'),
    numeric  smallint NOT NULL UNIQUE,
    exponent smallint NOT NULL CHECK (exponent BETWEEN 0 AND 4),
    name     text NOT NULL
);

-- ISO 4217 (active codes); the exponent is the number of minor-unit digits.
INSERT INTO currencies (code, numeric, exponent, name) VALUES
    ('AED', 784, 2, 'UAE Dirham'), ('ARS', 32, 2, 'Argentine Peso'),
    ('AUD', 36, 2, 'Australian Dollar'), ('BGN', 975, 2, 'Bulgarian Lev'),
    ('BHD', 48, 3, 'Bahraini Dinar'), ('BIF', 108, 0, 'Burundi Franc'),
    ('BRL', 986, 2, 'Brazilian Real'), ('CAD', 124, 2, 'Canadian Dollar'),
    ('CHF', 756, 2, 'Swiss Franc'), ('CLF', 990, 4, 'Unidad de Fomento'),
    ('CLP', 152, 0, 'Chilean Peso'), ('CNY', 156, 2, 'Yuan Renminbi'),
    ('COP', 170, 2, 'Colombian Peso'), ('CZK', 203, 2, 'Czech Koruna'),
    ('DJF', 262, 0, 'Djibouti Franc'), ('DKK', 208, 2, 'Danish Krone'),
    ('EGP', 818, 2, 'Egyptian Pound'), ('EUR', 978, 2, 'Euro'),
    ('GBP', 826, 2, 'Pound Sterling'), ('GEL', 981, 2, 'Lari'),
    ('GNF', 324, 0, 'Guinean Franc'), ('HKD', 344, 2, 'Hong Kong Dollar'),
    ('HUF', 348, 2, 'Forint'), ('IDR', 360, 2, 'Rupiah'),
    ('ILS', 376, 2, 'New Israeli Sheqel'), ('INR', 356, 2, 'Indian Rupee'),
    ('IQD', 368, 3, 'Iraqi Dinar'), ('ISK', 352, 0, 'Iceland Krona'),
    ('JOD', 400, 3, 'Jordanian Dinar'), ('JPY', 392, 0, 'Yen'),
    ('KES', 404, 2, 'Kenyan Shilling'), ('KMF', 174, 0, 'Comorian Franc'),
    ('KRW', 410, 0, 'Won'), ('KWD', 414, 3, 'Kuwaiti Dinar'),
    ('KZT', 398, 2, 'Tenge'), ('LYD', 434, 3, 'Libyan Dinar'),
    ('MAD', 504, 2, 'Moroccan Dirham'), ('MDL', 498, 2, 'Moldovan Leu'),
    ('MXN', 484, 2, 'Mexican Peso'), ('MYR', 458, 2, 'Malaysian Ringgit'),
    ('NGN', 566, 2, 'Naira'), ('NOK', 578, 2, 'Norwegian Krone'),
    ('NZD', 554, 2, 'New Zealand Dollar'), ('OMR', 512, 3, 'Rial Omani'),
    ('PEN', 604, 2, 'Sol'), ('PHP', 608, 2, 'Philippine Peso'),
    ('PKR', 586, 2, 'Pakistan Rupee'), ('PLN', 985, 2, 'Zloty'),
    ('PYG', 600, 0, 'Guarani'), ('QAR', 634, 2, 'Qatari Rial'),
    ('RON', 946, 2, 'Romanian Leu'), ('RSD', 941, 2, 'Serbian Dinar'),
    ('RWF', 646, 0, 'Rwanda Franc'), ('SAR', 682, 2, 'Saudi Riyal'),
    ('SEK', 752, 2, 'Swedish Krona'), ('SGD', 702, 2, 'Singapore Dollar'),
    ('THB', 764, 2, 'Baht'), ('TND', 788, 3, 'Tunisian Dinar'),
    ('TRY', 949, 2, 'Turkish Lira'), ('TWD', 901, 2, 'New Taiwan Dollar'),
    ('UAH', 980, 2, 'Hryvnia'), ('UGX', 800, 0, 'Uganda Shilling'),
    ('USD', 840, 2, 'US Dollar'), ('UYU', 858, 2, 'Peso Uruguayo'),
    ('UYW', 927, 4, 'Unidad Previsional'), ('VND', 704, 0, 'Dong'),
    ('VUV', 548, 0, 'Vatu'), ('XAF', 950, 0, 'CFA Franc BEAC'),
    ('XOF', 952, 0, 'CFA Franc BCEAO'), ('XPF', 953, 0, 'CFP Franc'),
    ('ZAR', 710, 2, 'Rand');

CREATE TABLE accounts (
    id              uuid PRIMARY KEY,
    currency        text NOT NULL REFERENCES currencies (code),
    kind            text NOT NULL CHECK (kind IN (
                        'user_balance', 'corporate_balance', 'partner_deposit', 'partner_credit',
                        'fee_revenue', 'network_settlement', 'external_funding')),
    owner_ref       text,
    debits_must_not_exceed_credits boolean NOT NULL DEFAULT false,
    credits_must_not_exceed_debits boolean NOT NULL DEFAULT false,
    debits_posted   bigint NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
    credits_posted  bigint NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
    debits_pending  bigint NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
    credits_pending bigint NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
    metadata        jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT flags_are_mutually_exclusive
        CHECK (NOT (debits_must_not_exceed_credits AND credits_must_not_exceed_debits)),
    -- The same rules the ledger code enforces, kept here so no bug can break them.
    CONSTRAINT debits_within_credits
        CHECK (NOT debits_must_not_exceed_credits OR debits_posted + debits_pending <= credits_posted),
    CONSTRAINT credits_within_debits
        CHECK (NOT credits_must_not_exceed_debits OR credits_posted + credits_pending <= debits_posted)
);

CREATE INDEX accounts_owner ON accounts (owner_ref) WHERE owner_ref IS NOT NULL;

-- Transfers are immutable. Post, void and expire are new rows naming the pending transfer they
-- resolve. No foreign keys to accounts: the ledger locks both accounts before it writes a
-- transfer (accounts are never deleted), and `antaca ledger verify` checks the reference.
CREATE TABLE transfers (
    seq               bigint GENERATED ALWAYS AS IDENTITY,
    id                uuid PRIMARY KEY,
    kind              text NOT NULL CHECK (kind IN (
                          'single', 'pending', 'post_pending', 'void_pending', 'expire_pending')),
    debit_account_id  uuid NOT NULL,
    credit_account_id uuid NOT NULL,
    amount            bigint NOT NULL CHECK (amount > 0),
    currency          text NOT NULL,
    pending_id        uuid,
    timeout           integer NOT NULL DEFAULT 0 CHECK (timeout >= 0),
    expires_at        timestamptz,
    code              integer NOT NULL CHECK (code BETWEEN 1 AND 65535),
    reference         text,
    metadata          jsonb,
    created_at        timestamptz NOT NULL,
    -- Both accounts' counters right after this transfer (a statement needs no recomputation).
    dr_debits_posted   bigint NOT NULL,
    dr_credits_posted  bigint NOT NULL,
    dr_debits_pending  bigint NOT NULL,
    dr_credits_pending bigint NOT NULL,
    cr_debits_posted   bigint NOT NULL,
    cr_credits_posted  bigint NOT NULL,
    cr_debits_pending  bigint NOT NULL,
    cr_credits_pending bigint NOT NULL,
    CONSTRAINT accounts_must_differ CHECK (debit_account_id <> credit_account_id),
    CONSTRAINT resolution_names_pending CHECK ((kind IN ('single', 'pending')) = (pending_id IS NULL)),
    CONSTRAINT timeout_only_on_pending CHECK (kind = 'pending' OR (timeout = 0 AND expires_at IS NULL))
);

-- A pending transfer is resolved (posted, voided or expired) at most once.
CREATE UNIQUE INDEX transfers_resolve_once ON transfers (pending_id) WHERE pending_id IS NOT NULL;
CREATE INDEX transfers_debit_account ON transfers (debit_account_id, seq);
CREATE INDEX transfers_credit_account ON transfers (credit_account_id, seq);

CREATE FUNCTION transfers_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'transfers are immutable: % refused', TG_OP;
END $$;

CREATE TRIGGER transfers_are_immutable BEFORE UPDATE OR DELETE OR TRUNCATE ON transfers
    FOR EACH STATEMENT EXECUTE FUNCTION transfers_are_immutable();

-- Unresolved pending transfers that have a timeout, for the expiry sweeper. A row leaves when
-- its pending transfer is posted, voided or expired.
CREATE TABLE pending_expiries (
    pending_id uuid PRIMARY KEY,
    expires_at timestamptz NOT NULL
);

CREATE INDEX pending_expiries_due ON pending_expiries (expires_at);
