-- Idempotency keys (issue 16): a partner's or an administrator's POST sent with an
-- `Idempotency-Key` header runs once; its first successful answer is kept for 24 hours and
-- replayed to retries of the same request. Owner: antaca_api/idempotency.py.
--
-- A row is claimed (inserted, status NULL, `locked_until` set) before the handler runs: the
-- primary key makes a concurrent retry of the same key find the claim and wait for nothing (409
-- IDEMPOTENCY_KEY_IN_PROGRESS). The answer is stored once the handler succeeded; a failed
-- handler deletes its claim (a refused request changed nothing, so it may be retried).
-- `request_hash`: SHA-256 of the method, the path and query, the decoded body (keys sorted) and
-- the Public-Key the answer is encrypted to. `response`: the answer's bytes as sent (a JWE answer
-- stays encrypted to the client's key), sealed at rest with AES-256-GCM.
CREATE TABLE idempotency_keys (
    caller_kind text NOT NULL CHECK (caller_kind IN ('partner', 'admin')),
    caller_id uuid NOT NULL,
    key text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_hash bytea NOT NULL CHECK (length(request_hash) = 32),
    status smallint CHECK (status BETWEEN 200 AND 299),
    response bytea,
    created_at timestamptz NOT NULL,
    locked_until timestamptz,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (caller_kind, caller_id, key),
    CHECK ((status IS NULL) = (response IS NULL)),
    CHECK (status IS NOT NULL OR locked_until IS NOT NULL)
);

-- The sweeper deletes expired rows oldest first.
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
