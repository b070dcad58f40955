-- Partner self-service and customer service on the admin channel (issue 15).

-- A partner's own deposit or credit balance may wait for an administrator's approval (the
-- service setting ANTACA_PARTNER_BALANCE_APPROVAL); a PENDING balance takes no reload.
-- alert_emails: where the balance's low-balance alert goes (NULL: the partner's contact e-mail).
ALTER TABLE partner_accounts
    ADD COLUMN approval text NOT NULL DEFAULT 'APPROVED' CHECK (approval IN ('PENDING', 'APPROVED')),
    ADD COLUMN alert_emails text[];

-- A partner's low-balance alert may go to several e-mail addresses: one delivery per target.
ALTER TABLE alert_deliveries DROP CONSTRAINT alert_deliveries_alert_id_channel_key;
ALTER TABLE alert_deliveries ADD CONSTRAINT alert_deliveries_one_per_target
    UNIQUE (alert_id, channel, target);

-- Partner-scoped staff: an administrator of one partner sees and changes only its objects
-- (NULL: the platform's own staff). A reset password must be changed at the next sign-in.
ALTER TABLE admin_users
    ADD COLUMN partner_id uuid REFERENCES partners (id),
    ADD COLUMN password_change_required boolean NOT NULL DEFAULT false;

-- KYB documents encrypted at rest (AES-256-GCM under a key derived from the named card data
-- key, the document id as associated data). Rows written before this migration have no key id
-- until the service encrypts them at start-up (antaca_api/corporations.py seal_clear_documents).
ALTER TABLE corporation_documents ADD COLUMN key_id text;

-- Who decided a manual KYC review on the admin channel.
ALTER TABLE kyc_events ADD COLUMN admin_id uuid REFERENCES admin_users (id);

-- The admin channel's customer search.
CREATE INDEX customers_email ON customers (lower(email));
CREATE INDEX customers_phone ON customers (phone);
