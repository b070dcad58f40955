-- The administration panel's idle timeout (antaca_api/panel): when a session was last used.
-- Sessions opened before this migration count as used now.
ALTER TABLE admin_sessions ADD COLUMN last_seen_at timestamptz NOT NULL DEFAULT now();
