-- Message ids and PAN fingerprints are opaque tokens: compared byte by byte, never sorted for people.
-- The database's default collation (C.UTF-8 on the embedded server, often a language's elsewhere)
-- made every B-tree comparison on them a strcoll() call, on the hot path of every authorization:
-- its idempotency probe and row insert, and its card lookup. "C" compares bytes.
ALTER TABLE authorizations ALTER COLUMN message_id TYPE text COLLATE "C";
ALTER TABLE authorization_events ALTER COLUMN message_id TYPE text COLLATE "C";
ALTER TABLE cards ALTER COLUMN pan_fingerprint TYPE text COLLATE "C";
