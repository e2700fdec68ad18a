-- Admin console sessions (SQLite). Keep in step with ../postgres/0011_console_sessions.sql.
-- A session is opened by signing in with an admin API token and lasts at most
-- console_session_ttl and never beyond that token: revoking, rotating or deleting the token (or
-- its admin) ends the session with it. Only the SHA-256 of the session cookie is stored.
CREATE TABLE console_sessions (
    token_hash  TEXT   NOT NULL PRIMARY KEY,
    admin_id    BIGINT NOT NULL REFERENCES admins (id) ON DELETE CASCADE,
    token_id    BIGINT NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX console_sessions_token ON console_sessions (token_id);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);
