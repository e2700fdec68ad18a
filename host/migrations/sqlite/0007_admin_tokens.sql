-- Admins that can be deactivated, admin API tokens that expire and show when they were last used
-- (SQLite). Keep in step with ../postgres/0007_admin_tokens.sql.

-- A deactivated admin's tokens do not authenticate (they work again on reactivation).
ALTER TABLE admins ADD COLUMN active INTEGER NOT NULL DEFAULT 1;

-- expires_at: NULL when the token was issued with admin_token_ttl = 0 (no expiry).
-- last_used_at: written at most once a minute per token.
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;
ALTER TABLE api_tokens ADD COLUMN last_used_at BIGINT;
CREATE INDEX api_tokens_admin ON api_tokens (admin_id);

-- Tokens issued before tokens expired get the default lifetime (admin_token_ttl, 90 days) from
-- this migration on, not from their issue (which would shut every older token out at once).
-- The one timestamp a migration writes itself.
UPDATE api_tokens SET expires_at = CAST(strftime('%s', 'now') AS BIGINT) * 1000 + 7776000000;
