-- Lockouts of the rate limits (antaca_api/rate_limits.py, the owning module): which policy,
-- which account (an administrator's e-mail, an installation, a customer, a partner, a caller),
-- from which caller address, until when. Written once per lockout; never updated.
CREATE TABLE security_events (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('LOCKOUT')),
    policy        text NOT NULL,
    account       text NOT NULL,
    caller        text,
    locked_until  timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX security_events_account ON security_events (account, id);
