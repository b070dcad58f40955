-- Events (issue 16): what happened to a partner's objects, written in the transaction of the change,
-- and the webhook outbox that delivers them. antaca_auth/events.py owns `events`;
-- antaca_api/webhooks.py owns the webhook tables.

-- The partner's own (alert) webhook secret, sealed like the endpoints' (antaca_api/partners.py);
-- `antaca serve` seals the secrets still in clear at start and clears the old column.
ALTER TABLE partners ADD COLUMN webhook_secret_sealed bytea;

-- A UUIDv7 made in SQL (the layout of antaca_auth/ids.py): the first 48 bits are the Unix time in
-- milliseconds, then the version 7 and random bits, for rows written set-based by statements.
CREATE FUNCTION uuid_v7() RETURNS uuid LANGUAGE sql VOLATILE AS $$
    SELECT encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) PLACING
        substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
        FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid
$$;

-- No foreign key on partner_id: its check would share-lock the partner's row in every batch of
-- the authorization engine (a hot row), and every writer takes the partner from a row that has one.
CREATE TABLE events (
    id          uuid PRIMARY KEY,                 -- UUIDv7 (antaca_auth/ids.py): time-ordered
    partner_id  uuid NOT NULL,
    type        text NOT NULL,                    -- e.g. authorization.approved, card.locked
    object_id   uuid NOT NULL,                    -- the authorization, card, customer... it is about
    created_at  timestamptz NOT NULL DEFAULT now(),
    payload     jsonb NOT NULL                    -- never PAN, CVV or PIN
);

CREATE INDEX events_partner ON events (partner_id, id);
CREATE INDEX events_partner_object ON events (partner_id, object_id, id);

-- A partner's webhook endpoints. The signing secret is sealed with AES-256-GCM (antaca_auth/cardkeys.py,
-- the endpoint id as associated data); during a rotation the previous secret signs too until
-- previous_secret_until.
CREATE TABLE webhook_endpoints (
    id                     uuid PRIMARY KEY,
    partner_id             uuid NOT NULL REFERENCES partners (id),
    url                    text NOT NULL,
    event_types            text[] NOT NULL DEFAULT '{}',   -- empty: every type
    enabled                boolean NOT NULL DEFAULT true,
    secret                 bytea NOT NULL,
    previous_secret        bytea,
    previous_secret_until  timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX webhook_endpoints_partner ON webhook_endpoints (partner_id) WHERE enabled;

-- The outbox: one row per (endpoint, event) to send, drained by antaca_api/webhook_delivery.py.
CREATE TABLE webhook_deliveries (
    id               uuid PRIMARY KEY,
    endpoint_id      uuid NOT NULL REFERENCES webhook_endpoints (id),
    event_id         uuid NOT NULL REFERENCES events (id),
    state            text NOT NULL DEFAULT 'PENDING' CHECK (state IN ('PENDING', 'SENT', 'FAILED')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    last_error       text,
    sent_at          timestamptz,
    replay           boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'PENDING';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);  -- pruning events

CREATE TABLE webhook_attempts (
    delivery_id  uuid NOT NULL REFERENCES webhook_deliveries (id),
    attempt      integer NOT NULL,
    ok           boolean NOT NULL,
    status_code  integer,
    error        text,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

-- Every statement that writes events queues them, in its own transaction, for each enabled endpoint
-- of their partner that wants their type: one set-based insert per statement (a statement of the
-- engine carries a whole batch), nothing when the partner has no endpoint.
CREATE FUNCTION queue_webhook_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (id, endpoint_id, event_id, next_attempt_at, created_at)
    SELECT uuid_v7(), w.id, n.id, n.created_at, n.created_at
    FROM new_events n
    JOIN webhook_endpoints w ON w.partner_id = n.partner_id AND w.enabled
    WHERE cardinality(w.event_types) = 0 OR n.type = ANY (w.event_types);
    RETURN NULL;
END $$;

CREATE TRIGGER events_queue_webhooks AFTER INSERT ON events REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION queue_webhook_deliveries();
