-- One-time access tokens skip the write-ahead log (PostgreSQL). Keep in step with
-- ../sqlite/0013_sso_tokens_unlogged.sql.
--
-- A token lives a minute (sso_token_ttl) and is worth nothing once used or expired. An unlogged
-- table is not written to the WAL, so issuing a token commits without waiting for a WAL flush,
-- and redeeming one flushes only the session and the activity entry. What a crash of the
-- database server costs: the table is emptied on recovery, so tokens issued but not yet
-- redeemed are refused as unknown (the panel's next click gets a new one). No token ever comes
-- back: single use holds. Standbys do not get the table: after a failover the same applies.
ALTER TABLE sso_tokens SET UNLOGGED;
